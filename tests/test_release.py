"""Publishing releases: versions, tags, rollback on failure, manifest verification."""

import json

import pytest

from gene_assets.release.dvc_repository import DvcReleaseRepository, ReleaseError, verify_release

from .conftest import git


def repository(release_repo, tmp_path, **kwargs):
    return DvcReleaseRepository(repo_dir=str(release_repo), remote_url=str(tmp_path / "remote"), **kwargs)


@pytest.mark.slow
def test_each_new_content_is_a_new_tagged_version(release_repo, tmp_path):
    repo = repository(release_repo, tmp_path)
    first = repo.publish({"embeddings/a.parquet": b"one", "leaderboard.csv": b"x,y\n"}, {"models": []})
    second = repo.publish({"embeddings/a.parquet": b"two", "leaderboard.csv": b"x,y\n"}, {"models": []})
    assert (first.version, second.version) == ("embeddings-v1", "embeddings-v2")
    assert repo.versions() == ["embeddings-v1", "embeddings-v2"]
    assert git(release_repo, "rev-parse", "embeddings-v2^{commit}").strip() == second.revision
    assert json.loads((release_repo / "data" / "MANIFEST.json").read_text())["version"] == "embeddings-v2"
    assert git(release_repo, "status", "--porcelain", "data.dvc").strip() == ""


@pytest.mark.slow
def test_same_content_reuses_the_version(release_repo, tmp_path):
    repo = repository(release_repo, tmp_path)
    first = repo.publish({"a.csv": b"1"}, {})
    again = repo.publish({"a.csv": b"1"}, {})
    assert again.version == first.version and not again.created
    assert repo.versions() == ["embeddings-v1"]


@pytest.mark.slow
def test_failed_push_restores_data_pointer_and_tags(release_repo, tmp_path, monkeypatch):
    repo = repository(release_repo, tmp_path)
    repo.publish({"a.csv": b"1"}, {})
    pointer = (release_repo / "data.dvc").read_bytes()
    head = git(release_repo, "rev-parse", "HEAD")
    original = DvcReleaseRepository.dvc

    def failing_push(self, *args):
        if args[0] == "push":
            raise ReleaseError("dvc push failed: remote went away")
        return original(self, *args)

    monkeypatch.setattr(DvcReleaseRepository, "dvc", failing_push)
    with pytest.raises(ReleaseError, match="remote went away"):
        repo.publish({"a.csv": b"2"}, {})
    assert (release_repo / "data" / "a.csv").read_bytes() == b"1"
    assert (release_repo / "data.dvc").read_bytes() == pointer
    assert git(release_repo, "rev-parse", "HEAD") == head
    assert repo.versions() == ["embeddings-v1"]
    assert not [p for p in release_repo.iterdir() if p.name.startswith(".data.")]


def test_unwritable_remote_is_refused_before_anything_changes(release_repo, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    repo = DvcReleaseRepository(repo_dir=str(release_repo), remote_url=str(blocker / "remote"))
    with pytest.raises(ReleaseError, match="not writable"):
        repo.publish({"a.csv": b"1"}, {})
    assert not (release_repo / "data").exists() and not (release_repo / "data.dvc").exists()


def test_not_a_git_repository(tmp_path):
    with pytest.raises(ReleaseError, match="not a git repository"):
        DvcReleaseRepository(repo_dir=str(tmp_path), remote_url=str(tmp_path / "r")).publish({"a": b"1"}, {})


def test_verify_detects_corrupted_files(release_repo, tmp_path):
    repository(release_repo, tmp_path).publish({"a.csv": b"1", "b.csv": b"2"}, {})
    assert verify_release(release_repo / "data", str(release_repo))["version"] == "embeddings-v1"
    (release_repo / "data" / "b.csv").write_bytes(b"tampered")
    with pytest.raises(ReleaseError, match="1 files missing or corrupted \\(b.csv\\)"):
        verify_release(release_repo / "data", str(release_repo))


def state(release_repo):
    """What a failed release must leave as it was: data/, data.dvc, HEAD and the tags."""
    data = (
        {
            p.relative_to(release_repo).as_posix(): p.read_bytes()
            for p in (release_repo / "data").rglob("*")
            if p.is_file()
        }
        if (release_repo / "data").exists()
        else {}
    )
    pointer = (release_repo / "data.dvc").read_bytes() if (release_repo / "data.dvc").exists() else None
    return data, pointer, git(release_repo, "rev-parse", "HEAD"), git(release_repo, "tag", "--list")


def test_missing_configured_remote_is_an_error_not_a_new_local_directory(release_repo, tmp_path):
    repo = repository(release_repo, tmp_path)
    repo.publish({"a.csv": b"1"}, {})
    before = state(release_repo)
    unmounted = tmp_path / "nas" / "gene_assets"
    with pytest.raises(ReleaseError, match=f"DVC remote {unmounted} does not exist .*GENE_ASSETS_DVC_REMOTE"):
        repository(release_repo, tmp_path, create_remote=False).model_copy(
            update={"remote_url": str(unmounted)}
        ).publish({"a.csv": b"2"}, {})
    assert not unmounted.exists() and state(release_repo) == before


@pytest.mark.parametrize("dirt", ["modified pointer", "staged dvc config", "merge in progress"])
def test_release_refuses_a_tree_whose_release_files_are_dirty(release_repo, tmp_path, dirt):
    repo = repository(release_repo, tmp_path)
    repo.publish({"a.csv": b"1"}, {})
    if dirt == "modified pointer":
        (release_repo / "data.dvc").write_text((release_repo / "data.dvc").read_text() + "# a hand edit\n")
        expected = "uncommitted changes in data.dvc.*commit or `git restore`"
    elif dirt == "staged dvc config":
        (release_repo / ".dvc" / "config").write_text("[core]\n    remote = elsewhere\n")
        git(release_repo, "add", ".dvc/config")
        expected = "uncommitted changes in .dvc/config"
    else:
        (release_repo / ".git" / "MERGE_HEAD").write_text(git(release_repo, "rev-parse", "HEAD"))
        expected = "in the middle of a merge: finish or abort it"
    before = state(release_repo)
    with pytest.raises(ReleaseError, match=expected):
        repo.publish({"a.csv": b"2"}, {})
    assert state(release_repo) == before and repo.versions() == ["embeddings-v1"]


def test_disk_full_while_writing_a_release_changes_nothing(release_repo, tmp_path, monkeypatch):
    import errno

    from gene_assets.release import dvc_repository

    repo = repository(release_repo, tmp_path)
    repo.publish({"a.csv": b"1", "b.csv": b"2"}, {})
    before = state(release_repo)
    real_write = dvc_repository.write_bytes_atomic

    def fills_the_disk(path, content):
        if path.name == "b.csv":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_write(path, content)

    monkeypatch.setattr(dvc_repository, "write_bytes_atomic", fills_the_disk)
    with pytest.raises(ReleaseError, match="Writing b.csv .*No space left on device.*free some space.*unchanged"):
        repo.publish({"a.csv": b"3", "b.csv": b"4"}, {})
    assert state(release_repo) == before
    assert not [p for p in release_repo.iterdir() if p.name.startswith(".data.")]


@pytest.mark.slow
def test_pull_fetches_a_version_verifies_it_and_refuses_a_corrupted_remote(release_repo, tmp_path):
    from gene_assets.release.dvc_repository import ReleaseHistory, pull_release

    repo = repository(release_repo, tmp_path)
    repo.publish({"embeddings/a.parquet": b"one", "leaderboard.csv": b"x\n"}, {})
    repo.publish({"embeddings/a.parquet": b"two", "leaderboard.csv": b"x\n"}, {})
    with ReleaseHistory.of(str(release_repo)) as history:
        assert [r.version for r in history.records()] == ["embeddings-v1", "embeddings-v2"]
    _, first, record = pull_release(str(release_repo), "embeddings-v1", tmp_path / "v1")
    assert record.revision == git(release_repo, "rev-parse", "embeddings-v1^{commit}").strip()
    assert first["version"] == "embeddings-v1" and (tmp_path / "v1" / "embeddings" / "a.parquet").read_bytes() == b"one"
    assert pull_release(str(release_repo), None, tmp_path / "latest")[:2] == (
        tmp_path / "latest",
        verify_release(tmp_path / "latest", str(release_repo)),
    )
    assert verify_release(tmp_path / "latest", str(release_repo))["version"] == "embeddings-v2"
    with pytest.raises(ReleaseError, match="has no release 'embeddings-v9'; it has embeddings-v1, embeddings-v2"):
        pull_release(str(release_repo), "embeddings-v9", tmp_path / "v9")
    with pytest.raises(ReleaseError, match="already exists"):
        pull_release(str(release_repo), "embeddings-v1", tmp_path / "v1")
    stores = [*(tmp_path / "remote").rglob("*"), *(release_repo / ".dvc" / "cache").rglob("*")]
    for blob in stores:  # every stored copy of one file is damaged
        if blob.is_file() and blob.read_bytes() == b"one":
            blob.chmod(0o644)
            blob.write_bytes(b"bad")
    with pytest.raises(ReleaseError, match="embeddings/a.parquet"):
        pull_release(str(release_repo), "embeddings-v1", tmp_path / "v1_again")
    assert not (tmp_path / "v1_again").exists() and not [p for p in tmp_path.iterdir() if ".pulling-" in p.name]


def committed_team_remote(repo, url="s3://gene-assets-releases/gene_assets"):
    """Commit a .dvc/config naming the team's release remote, as this project's own repository does."""
    from .conftest import dvc

    dvc(repo, "init", "--quiet")
    dvc(repo, "remote", "add", "--default", "releases", url)
    dvc(repo, "config", "core.analytics", "false")
    git(repo, "add", ".dvc/config", ".dvcignore", ".dvc/.gitignore")
    git(repo, "commit", "-qm", "DVC with the team's release remote")


@pytest.mark.slow
def test_a_fresh_clone_releases_to_the_embedded_local_remote_and_commits_no_path(release_repo, tmp_path, monkeypatch):
    """No override and an unreachable team remote (as in a fresh clone of this repository): the release goes to
    $XDG_DATA_HOME/gene_assets/dvc-remote, named only in the untracked .dvc/config.local."""
    from gene_assets.release.dvc_repository import dvc_remotes, pull_release

    committed_team_remote(release_repo)
    committed = (release_repo / ".dvc" / "config").read_text()
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("GENE_ASSETS_DVC_REMOTE", raising=False)
    release = DvcReleaseRepository(repo_dir=str(release_repo)).publish({"a.csv": b"1"}, {})
    embedded = tmp_path / "xdg" / "gene_assets" / "dvc-remote"
    assert release.version == "embeddings-v1" and release.remote_url == str(embedded)
    assert [p for p in embedded.rglob("*") if p.is_file()]  # pushed there
    assert git(release_repo, "show", "HEAD:.dvc/config") == committed == (release_repo / ".dvc" / "config").read_text()
    assert dvc_remotes((release_repo / ".dvc" / "config.local").read_text()) == ("storage", {"storage": str(embedded)})
    assert git(release_repo, "status", "--porcelain").strip() == ""  # config.local is not tracked
    _, manifest, _ = pull_release(str(release_repo), "embeddings-v1", tmp_path / "pulled")  # this clone's remote
    assert manifest["files"] == release.manifest["files"]


def test_a_committed_local_remote_is_refused(release_repo, tmp_path):
    committed_team_remote(release_repo, url=str(tmp_path / "nas"))
    with pytest.raises(ReleaseError, match=r"names the local directory .*nas as DVC remote 'releases'.*config.local"):
        repository(release_repo, tmp_path).publish({"a.csv": b"1"}, {})
    assert not (release_repo / "data.dvc").exists() and repository(release_repo, tmp_path).versions() == []


@pytest.mark.slow
def test_versions_resolve_from_the_branch_without_tags(release_repo, tmp_path, capsys):
    """A mirror holding the branch only: `gene-assets releases` and `pull` find every version in releases.json, and a
    producer's clone without tags numbers its next release after them."""
    from gene_assets.cli import main
    from gene_assets.release.dvc_repository import pull_release

    repo = repository(release_repo, tmp_path)
    first = repo.publish({"a.csv": b"1"}, {"models": [{"backbone": "bag-of-words"}]})
    second = repo.publish({"a.csv": b"2"}, {"models": [{"backbone": "bag-of-words"}, {"backbone": "random-gaussian"}]})
    index = json.loads((release_repo / "releases.json").read_text())
    assert index["embeddings-v2"]["backbones"] == ["bag-of-words", "random-gaussian"]
    assert index["embeddings-v2"]["data_md5"] in (release_repo / "data.dvc").read_text()
    mirror = tmp_path / "mirror.git"
    git(tmp_path, "init", "--bare", "--quiet", "--initial-branch=main", str(mirror))
    git(release_repo, "push", "--quiet", str(mirror), "main")
    assert git(mirror, "tag", "--list").strip() == ""

    assert main(["releases", "--repo", str(mirror)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in listed] == [
        ["embeddings-v1", first.revision[:12], index["embeddings-v1"]["created_at"]],
        ["embeddings-v2", second.revision[:12], index["embeddings-v2"]["created_at"]],
    ]
    assert "no tag" in listed[0] and listed[1].endswith("bag-of-words, random-gaussian")
    _, manifest, record = pull_release(str(mirror), "embeddings-v1", tmp_path / "v1", remote=str(tmp_path / "remote"))
    assert manifest["files"] == first.manifest["files"] and record.revision == first.revision and not record.tagged

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "--quiet", "--no-tags", str(mirror), str(clone))
    git(clone, "config", "user.email", "test@example.org")
    assert repository(clone, tmp_path).publish({"a.csv": b"3"}, {}).version == "embeddings-v3"


def test_manifest_entry_records_what_each_table_holds(tmp_path):
    """A materialized gene_embeddings partition's release entry: its attrs, the step's device and precision, digests
    of its texts and gene universe that change with them (and not with row order), and its gene mapping."""
    from dagster import DagsterInstance, materialize

    from gene_assets.definitions import all_asset_checks, all_assets
    from gene_assets.embeddings.partitions import backbone_partitions, backbone_view_key
    from gene_assets.embeddings.table import GeneEmbeddings
    from gene_assets.release.assets import embedding_provenance
    from gene_assets.release.dvc_repository import describe_release
    from gene_assets.resources import local_resources
    from gene_assets.storage import ParquetIOManager

    from .conftest import planted_inputs

    planted_inputs(tmp_path / "storage")
    resources = {**local_resources(), "io_manager": ParquetIOManager(base_dir=str(tmp_path / "storage"))}
    key = backbone_view_key("bag-of-words", "summary")
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(backbone_partitions.name, ["bag-of-words"])
        run = materialize(
            [*all_assets, *all_asset_checks],
            selection=["gene_embeddings"],
            instance=instance,
            resources=resources,
            partition_key=key,
        )
        table = run.output_for_node("gene_embeddings")
        entry = embedding_provenance(instance, key, table)
        shuffled = GeneEmbeddings(genes=table.genes.iloc[::-1], matrix=table.matrix[::-1], attrs=table.attrs)
        assert embedding_provenance(instance, key, shuffled) == entry
        edited = table.genes.assign(
            text_sha256=table.genes["text_sha256"].where(table.genes["entrez_id"] != 1, "0" * 64)
        )
        changed = embedding_provenance(
            instance, key, GeneEmbeddings(genes=edited, matrix=table.matrix, attrs=table.attrs)
        )
        fewer = embedding_provenance(
            instance, key, GeneEmbeddings(genes=table.genes[1:], matrix=table.matrix[1:], attrs=table.attrs)
        )
    assert entry["backbone"] == "bag-of-words" and entry["view"] == "summary" and entry["device"] == "cpu"
    assert entry["dtype"] and entry["n_genes"] == 240 and "seconds" not in entry
    assert entry["mapping"] == {"view_genes_covered": 240, "view_genes_without_vector": 0}
    assert changed["text_view_sha256"] != entry["text_view_sha256"]
    assert changed["gene_universe_sha256"] == entry["gene_universe_sha256"] != fewer["gene_universe_sha256"]
    json.dumps(entry)  # MANIFEST.json can hold it
    lines = describe_release(
        {
            "code": {"commit": "a" * 40, "uncommitted_changes": True, "diff_sha256": "b" * 64},
            "models": [{**entry, "file": "embeddings/bag-of-words__summary.parquet"}],
        }
    )
    assert lines[0] == f"computed with code {'a' * 12} (plus uncommitted changes, diff sha256 {'b' * 12})"
    assert lines[1].startswith("  embeddings/bag-of-words__summary.parquet: ") and "device cpu" in lines[1]
    assert f"text_view_sha256 {entry['text_view_sha256'][:12]}" in lines[1]


def test_code_revision_records_uncommitted_package_changes(tmp_path, monkeypatch):
    from gene_assets import runs

    from .conftest import make_release_repo

    checkout = make_release_repo(tmp_path / "checkout")
    (checkout / "gene_assets").mkdir()
    (checkout / "gene_assets" / "step.py").write_text("x = 1\n")
    git(checkout, "add", "gene_assets")
    git(checkout, "commit", "-qm", "package")
    monkeypatch.setattr(runs, "PROJECT_ROOT", checkout)
    clean = runs.code_revision()
    assert clean["commit"] == git(checkout, "rev-parse", "HEAD").strip() and clean["uncommitted_changes"] is False
    (checkout / "notes.txt").write_text("outside the package\n")
    assert runs.code_revision()["uncommitted_changes"] is False
    (checkout / "gene_assets" / "step.py").write_text("x = 2\n")
    edited = runs.code_revision()
    (checkout / "gene_assets" / "new_step.py").write_text("y = 1\n")
    added = runs.code_revision()
    assert edited["uncommitted_changes"] and added["uncommitted_changes"]
    assert len({edited["diff_sha256"], added["diff_sha256"]}) == 2 and edited["commit"] == clean["commit"]

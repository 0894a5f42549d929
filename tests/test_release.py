"""Publishing releases: versions, tags, rollback on failure, manifest verification."""

import json

import pytest

from gene_assets.release.dvc_repository import DvcReleaseRepository, ReleaseError, verify_release

from .conftest import git


def repository(release_repo, tmp_path, **kwargs):
    return DvcReleaseRepository(repo_dir=str(release_repo), remote_url=str(tmp_path / "remote"), **kwargs)


def test_each_new_content_is_a_new_tagged_version(release_repo, tmp_path):
    repo = repository(release_repo, tmp_path)
    first = repo.publish({"embeddings/a.parquet": b"one", "leaderboard.csv": b"x,y\n"}, {"models": []})
    second = repo.publish({"embeddings/a.parquet": b"two", "leaderboard.csv": b"x,y\n"}, {"models": []})
    assert (first.version, second.version) == ("embeddings-v1", "embeddings-v2")
    assert repo.versions() == ["embeddings-v1", "embeddings-v2"]
    assert git(release_repo, "rev-parse", "embeddings-v2^{commit}").strip() == second.revision
    assert json.loads((release_repo / "data" / "MANIFEST.json").read_text())["version"] == "embeddings-v2"
    assert git(release_repo, "status", "--porcelain", "data.dvc").strip() == ""


def test_same_content_reuses_the_version(release_repo, tmp_path):
    repo = repository(release_repo, tmp_path)
    first = repo.publish({"a.csv": b"1"}, {})
    again = repo.publish({"a.csv": b"1"}, {})
    assert again.version == first.version and not again.created
    assert repo.versions() == ["embeddings-v1"]


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
    assert verify_release(release_repo / "data")["version"] == "embeddings-v1"
    (release_repo / "data" / "b.csv").write_bytes(b"tampered")
    with pytest.raises(ReleaseError, match="1 files missing or corrupted \\(b.csv\\)"):
        verify_release(release_repo / "data")

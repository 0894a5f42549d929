"""Misuse of the release repository loses nothing: concurrent releases, files a release does not own, and `verify`
against the release's DVC-tracked identity rather than the manifest it checks."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gene_assets.release.dvc_repository import DvcReleaseRepository, ReleaseError, pull_release

from .conftest import git

PUBLISH = """
import sys
from gene_assets.release.dvc_repository import DvcReleaseRepository
release = DvcReleaseRepository(repo_dir=sys.argv[1], remote_url=sys.argv[2]).publish({"a.csv": sys.argv[3].encode()}, {})
print(release.version, release.revision)
"""


def start_publish(release_repo: Path, remote: Path, content: str, log: Path) -> subprocess.Popen:
    """A release of {"a.csv": content} in its own process; stdout and stderr go to `log`."""
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-c", PUBLISH, str(release_repo), str(remote), content],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def finish(process: subprocess.Popen, log: Path) -> list[str]:
    try:
        process.wait(timeout=180)
    except subprocess.TimeoutExpired:
        from .conftest import stop_process_tree

        stop_process_tree(process)
        raise
    assert process.returncode == 0, log.read_text()[-2000:]
    return log.read_text().split()[-2:]


@pytest.mark.slow
def test_two_concurrent_releases_in_separate_processes_both_land(release_repo, tmp_path):
    """Both processes release at once: each gets its own version, both tags and index entries stay, data/ holds the
    later one, and each version pulls back with the content its process published."""
    remote = tmp_path / "remote"
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    processes = [start_publish(release_repo, remote, content, log) for content, log in zip(["one", "two"], logs)]
    (version_a, revision_a), (version_b, revision_b) = [finish(p, log) for p, log in zip(processes, logs)]
    assert {version_a, version_b} == {"embeddings-v1", "embeddings-v2"}
    assert git(release_repo, "tag", "--list").split() == ["embeddings-v1", "embeddings-v2"]
    index = json.loads((release_repo / "releases.json").read_text())
    assert list(index) == ["embeddings-v1", "embeddings-v2"]
    later = "embeddings-v2"
    assert json.loads((release_repo / "data" / "MANIFEST.json").read_text())["version"] == later
    assert (
        git(release_repo, "rev-parse", "HEAD").strip() == git(release_repo, "rev-parse", f"{later}^{{commit}}").strip()
    )
    published = {version_a: ("one", revision_a), version_b: ("two", revision_b)}
    for version, (content, revision) in published.items():
        assert git(release_repo, "rev-parse", f"{version}^{{commit}}").strip() == revision
        out, manifest, _ = pull_release(str(release_repo), version, tmp_path / version, remote=str(remote))
        assert manifest["version"] == version and (out / "a.csv").read_text() == content
    assert git(release_repo, "status", "--porcelain").strip() == ""


@pytest.mark.slow
def test_a_release_waits_for_the_lock_another_process_holds(release_repo, tmp_path):
    """While the lock is held, a release in another process says whom it waits for and changes nothing; it releases
    once the lock is freed. A release that cannot get the lock in its timeout fails naming the holder."""
    repo = DvcReleaseRepository(repo_dir=str(release_repo), remote_url=str(tmp_path / "remote"))
    log = tmp_path / "waiting.log"
    with repo.lock():
        process = start_publish(release_repo, tmp_path / "remote", "one", log)
        deadline = time.time() + 120
        while "Waiting for the release" not in log.read_text():
            assert process.poll() is None and time.time() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        assert f"by pid {os.getpid()}" in log.read_text()
        assert git(release_repo, "tag", "--list").strip() == "" and not (release_repo / "data").exists()
        impatient = repo.model_copy(update={"lock_timeout_s": 0.5})
        with pytest.raises(
            ReleaseError,
            match=rf"Another release of .* \(pid {os.getpid()}\) still holds .*"
            "gene_assets-release.lock.*Nothing was changed",
        ):
            impatient.publish({"a.csv": b"two"}, {})
    assert finish(process, log)[0] == "embeddings-v1"
    assert (release_repo / "data" / "a.csv").read_text() == "one"


@pytest.mark.slow
def test_a_failed_release_undoes_only_its_own_work(release_repo, tmp_path, monkeypatch):
    """Someone commits to the repository while a release pushes, then the push fails: the rollback restores the
    release's files but leaves their commit (and their tag) in place."""
    repo = DvcReleaseRepository(repo_dir=str(release_repo), remote_url=str(tmp_path / "remote"))
    repo.publish({"a.csv": b"1"}, {})
    original = DvcReleaseRepository.dvc

    def push_fails_after_a_foreign_commit(self, *args):
        if args[0] == "push":
            (release_repo / "NOTES.md").write_text("a colleague's notes\n")
            git(release_repo, "add", "NOTES.md")
            git(release_repo, "commit", "-qm", "notes")
            git(release_repo, "tag", "notes-v1")
            raise ReleaseError("dvc push failed: remote went away")
        return original(self, *args)

    monkeypatch.setattr(DvcReleaseRepository, "dvc", push_fails_after_a_foreign_commit)
    with pytest.raises(ReleaseError, match="remote went away"):
        repo.publish({"a.csv": b"2"}, {})
    assert git(release_repo, "log", "-1", "--format=%s").strip() == "notes"
    assert git(release_repo, "tag", "--list").split() == ["embeddings-v1", "notes-v1"]
    assert (release_repo / "data" / "a.csv").read_bytes() == b"1"
    assert git(release_repo, "status", "--porcelain").strip() == ""


def release_state(release_repo: Path):
    """Everything a refused release must leave as it was: every file under data/, data.dvc, HEAD and the tags."""
    data = {
        p.relative_to(release_repo).as_posix(): p.read_bytes()
        for p in (release_repo / "data").rglob("*")
        if p.is_file()
    }
    return (
        data,
        (release_repo / "data.dvc").read_bytes(),
        git(release_repo, "rev-parse", "HEAD"),
        git(release_repo, "tag"),
    )


def test_a_release_refuses_to_delete_or_overwrite_files_it_does_not_own(release_repo, tmp_path):
    """Files a user put in data/, or released files edited there, are named and kept; nothing else changes, even when
    the release would publish the same content again."""
    repo = DvcReleaseRepository(repo_dir=str(release_repo), remote_url=str(tmp_path / "remote"))
    repo.publish({"a.csv": b"1", "embeddings/x.parquet": b"x"}, {})
    data = release_repo / "data"
    (data / "my_notes.txt").write_text("mine\n")
    (data / "embeddings" / "extra.parquet").write_bytes(b"mine too")
    foreign = (
        r"holds 2 files that are not part of release embeddings-v1: embeddings/extra.parquet, my_notes.txt\. "
        r".*would delete them: move them out of data/, then release\. Nothing was changed\."
    )
    before = release_state(release_repo)
    for files in ({"a.csv": b"2", "embeddings/x.parquet": b"x"}, {"a.csv": b"1", "embeddings/x.parquet": b"x"}):
        with pytest.raises(ReleaseError, match=foreign):
            repo.publish(files, {})
        assert release_state(release_repo) == before and repo.versions() == ["embeddings-v1"]
    (data / "my_notes.txt").unlink()
    (data / "embeddings" / "extra.parquet").unlink()
    (data / "a.csv").chmod(0o644)
    (data / "a.csv").write_bytes(b"edited by hand")
    before = release_state(release_repo)
    with pytest.raises(
        ReleaseError,
        match=r"holds 1 files changed since release embeddings-v1: a.csv\. A release would "
        r"overwrite them: .*`dvc checkout data`",
    ):
        repo.publish({"a.csv": b"2", "embeddings/x.parquet": b"x"}, {})
    assert release_state(release_repo) == before and repo.versions() == ["embeddings-v1"]


def test_a_first_release_refuses_a_data_directory_it_did_not_make(release_repo, tmp_path):
    (release_repo / "data").mkdir()
    (release_repo / "data" / "survey.csv").write_text("kept\n")
    repo = DvcReleaseRepository(repo_dir=str(release_repo), remote_url=str(tmp_path / "remote"))
    with pytest.raises(ReleaseError, match=r"not part of any release \(no MANIFEST.json\): survey.csv"):
        repo.publish({"a.csv": b"1"}, {})
    assert (release_repo / "data" / "survey.csv").read_text() == "kept\n" and repo.versions() == []


def tamper(copy: Path, case: str, outside: Path) -> str:
    """Damage a copy of a release as the case says; returns the message `verify` must give."""
    manifest = json.loads((copy / "MANIFEST.json").read_text())
    if case == "unlisted file":
        (copy / "embeddings" / "extra.parquet").write_bytes(b"not released")
        return r"1 files are not in its MANIFEST.json \(embeddings/extra.parquet\): they are not part of the release"
    if case == "manifest edited to match a tampered file":
        (copy / "a.csv").write_bytes(b"tampered")
        manifest["files"]["a.csv"] = hashlib.sha256(b"tampered").hexdigest()
        expected = (
            r"is not release embeddings-v1 as DVC tracks it in .*data.dvc has md5 \w+.dir.*MANIFEST.json was edited"
        )
    elif case == "empty file list":
        shutil.rmtree(copy / "embeddings")
        (copy / "a.csv").unlink()
        manifest["files"] = {}
        expected = r"MANIFEST.json lists no files: .* emptied"
    elif case == "path leaving the release":
        outside.write_bytes(b"x")
        manifest["files"][os.path.relpath(outside, copy)] = hashlib.sha256(b"x").hexdigest()
        expected = r"lists 1 paths outside the release directory \(\.\./.*outside.bin\): refused"
    else:
        (copy / "MANIFEST.json").write_text(json.dumps(manifest)[:-20])
        return r"MANIFEST.json is not valid JSON \(.*\): it was damaged or edited"
    (copy / "MANIFEST.json").write_text(json.dumps(manifest))
    return expected


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> Path:
    """One release, shared by the verify tests (which change nothing in it): its repository; the remote beside it."""
    from .conftest import make_release_repo

    root = tmp_path_factory.mktemp("released")
    repo = make_release_repo(root / "release_repo")
    DvcReleaseRepository(repo_dir=str(repo), remote_url=str(root / "remote")).publish(
        {"a.csv": b"1", "embeddings/x.parquet": b"x"}, {}
    )
    return repo


def test_verify_checks_a_release_against_its_data_dvc_md5(released, tmp_path, capsys):
    from gene_assets.cli import main

    assert main(["verify", str(released / "data")]) == 0
    assert capsys.readouterr().out.strip() == f"{released / 'data'}: release embeddings-v1, 2 files verified"
    pulled, _, _ = pull_release(
        str(released), "embeddings-v1", tmp_path / "pulled", remote=str(released.parent / "remote")
    )
    assert main(["verify", str(pulled), "--repo", str(released)]) == 0


@pytest.mark.parametrize(
    "case",
    [
        "unlisted file",
        "manifest edited to match a tampered file",
        "empty file list",
        "path leaving the release",
        "malformed manifest",
    ],
)
def test_verify_refuses_what_the_manifest_alone_would_pass(released, tmp_path, capsys, case):
    """Each damaged copy exits 2 with one line naming what is wrong, and verify changes nothing in it."""
    from gene_assets.cli import main

    copy = tmp_path / "copy"
    shutil.copytree(released / "data", copy)
    expected = tamper(copy, case, tmp_path / "outside.bin")
    before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    assert main(["verify", str(copy), "--repo", str(released)]) == 2
    error = capsys.readouterr().err
    assert re.search(expected, error) and error.startswith("gene-assets: ") and error.count("\n") == 1, error
    assert {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()} == before


def test_a_release_over_a_malformed_manifest_says_so_and_changes_nothing(release_repo, tmp_path):
    (release_repo / "data").mkdir()
    (release_repo / "data" / "MANIFEST.json").write_text('{"version": "embeddings-v1", "files": {')
    repo = DvcReleaseRepository(repo_dir=str(release_repo), remote_url=str(tmp_path / "remote"))
    with pytest.raises(ReleaseError, match=r"data/MANIFEST.json is not valid JSON \(.*\): it was damaged or edited"):
        repo.publish({"a.csv": b"1"}, {})
    assert [p.name for p in (release_repo / "data").iterdir()] == ["MANIFEST.json"] and not (
        release_repo / "data.dvc"
    ).exists()

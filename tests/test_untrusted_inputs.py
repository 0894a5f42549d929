"""Everything the project did not write in this run is checked where it crosses in: settings, precomputed files,
local state files, stored outputs, git history, names, consumers' directories and re-read input files. Each case
asserts the one-line message, the exit status (or the project's error type) and that nothing was lost or changed."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gene_assets.release.dvc_repository import DvcReleaseRepository
from gene_assets.settings import DISCOVERED_REGISTRY_ENV, DVC_REMOTE_ENV, resolve_settings

from .conftest import git

BIN = Path(sys.executable).parent


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_relative_dvc_remote_is_taken_from_the_starting_directory(release_repo, tmp_path, monkeypatch):
    """GENE_ASSETS_DVC_REMOTE=remote, started in `work`: the release checks and pushes to work/remote, never to a
    `remote` inside the release repository."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv(DVC_REMOTE_ENV, "remote")
    (work / "remote").mkdir()
    resolve_settings()
    assert os.environ[DVC_REMOTE_ENV] == str(work / "remote")
    from gene_assets.resources import local_resources

    repository = local_resources()["release_repository"].model_copy(update={"repo_dir": str(release_repo)})
    release = repository.publish({"a.csv": b"1"}, {})
    assert release.remote_url == str(work / "remote") and list((work / "remote").rglob("*"))
    assert not (release_repo / "remote").exists()
    assert DvcReleaseRepository(repo_dir=str(release_repo)).push_remote()[1] == str(work / "remote")
    assert git(release_repo, "status", "--porcelain").strip() == ""

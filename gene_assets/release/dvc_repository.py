"""A git + DVC repository that publishes `data/` as numbered, tagged releases."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from dagster import ConfigurableResource

from ..storage import sha256_file, write_bytes_atomic

MANIFEST = "MANIFEST.json"
FALLBACK_GIT_IDENTITY = ["-c", "user.name=gene_assets", "-c", "user.email=gene_assets@localhost"]


class ReleaseError(RuntimeError):
    """A release could not be made; the repository and data/ are as they were before it."""


@dataclass
class Release:
    version: str
    revision: str
    manifest: dict
    created: bool


class DvcReleaseRepository(ConfigurableResource):
    """Where releases go: `repo_dir` (a git repository) tracks `data/` with DVC and pushes to `remote_url`."""

    repo_dir: str
    remote_url: str
    remote_name: str = "storage"
    data_dir_name: str = "data"
    tag_prefix: str = "embeddings-v"
    create_remote: bool = True
    """Create a missing local remote directory (with its parents); off for a configured remote, which must exist
    (a missing mount point is an error, not a new directory on the local disk)."""

    # --- commands -----------------------------------------------------------------------------
    def _run(self, args: list[str], what: str) -> str:
        env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
        result = subprocess.run(args, cwd=self.repo_dir, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            detail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-3:]
            raise ReleaseError(f"{what} failed in {self.repo_dir}: {' / '.join(detail)}")
        return result.stdout

    def git(self, *args: str) -> str:
        identity = [] if self._has_git_identity() else FALLBACK_GIT_IDENTITY
        return self._run(["git", *identity, *args], f"git {args[0]}")

    def dvc(self, *args: str) -> str:
        return self._run([sys.executable, "-m", "dvc", *args], f"dvc {' '.join(args)}")

    def _has_git_identity(self) -> bool:
        result = subprocess.run(["git", "config", "user.email"], cwd=self.repo_dir, capture_output=True, text=True)
        return bool(result.stdout.strip())

    # --- state --------------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        return Path(self.repo_dir)

    @property
    def data_path(self) -> Path:
        return self.root / self.data_dir_name

    def versions(self) -> list[str]:
        tags = self.git("tag", "--list", f"{self.tag_prefix}*").split()
        pattern = re.compile(rf"^{re.escape(self.tag_prefix)}(\d+)$")
        return sorted((t for t in tags if pattern.match(t)), key=lambda t: int(pattern.match(t).group(1)))

    def current_manifest(self) -> dict | None:
        path = self.data_path / MANIFEST
        return json.loads(path.read_text()) if path.exists() else None

    def prepare(self) -> None:
        """Check the repository and remote, initializing DVC on first use."""
        if not (self.root / ".git").exists():
            raise ReleaseError(f"{self.repo_dir} is not a git repository: releases are git commits tagged "
                               f"{self.tag_prefix}N. Run `git init` there or set the release repository.")
        self.refuse_dirty_tree()
        if not (self.root / ".dvc").is_dir():
            self.dvc("init", "--quiet")
        self.dvc("config", "core.analytics", "false")
        self.dvc("config", "core.site_cache_dir", ".dvc/tmp/site_cache")
        if "://" not in self.remote_url:
            remote = Path(self.remote_url)
            if not self.create_remote and not remote.is_dir():
                raise ReleaseError(f"DVC remote {self.remote_url} does not exist (is its disk mounted?). Create the "
                                   "directory, or set GENE_ASSETS_DVC_REMOTE to an existing directory or a DVC remote URL.")
            try:
                remote.mkdir(parents=True, exist_ok=True)
                probe = remote / f".write-probe-{uuid.uuid4().hex}"
                probe.write_bytes(b"")
                probe.unlink()
            except OSError as exc:
                raise ReleaseError(f"DVC remote {self.remote_url} is not writable ({exc.strerror}). "
                                   "Set GENE_ASSETS_DVC_REMOTE to a writable directory or a DVC remote URL.") from exc
        self.dvc("remote", "add", "--default", "--force", self.remote_name, self.remote_url)

    def release_paths(self) -> list[str]:
        """What a release commits: the data pointer and DVC's own files."""
        return [f"{self.data_dir_name}.dvc", ".gitignore", ".dvc/config", ".dvc/.gitignore", ".dvcignore"]

    def refuse_dirty_tree(self) -> None:
        """A release commits only its own files; refuse when those carry someone's uncommitted changes or git is in
        the middle of a merge, rebase or cherry-pick (a release commit would mix into it)."""
        git_dir = Path(self.git("rev-parse", "--absolute-git-dir").strip())
        for marker, what in (("MERGE_HEAD", "a merge"), ("rebase-merge", "a rebase"), ("rebase-apply", "a rebase"),
                             ("CHERRY_PICK_HEAD", "a cherry-pick")):
            if (git_dir / marker).exists():
                raise ReleaseError(f"{self.repo_dir} is in the middle of {what}: finish or abort it, then release.")
        status = self.git("status", "--porcelain", "--untracked-files=no", "--", *self.release_paths())
        changed = [line[3:] for line in status.splitlines() if line.strip()]
        if changed:
            raise ReleaseError(f"{self.repo_dir} has uncommitted changes in {', '.join(changed)}, which a release "
                               "commits: commit or `git restore` them first.")

    # --- publishing ---------------------------------------------------------------------------
    def publish(self, files: dict[str, bytes], describe: dict) -> Release:
        """Write `files` as data/, version it with DVC, push it and tag the commit.

        Identical content to the current release makes no new version. On any failure data/, data.dvc
        and the tags are restored.
        """
        self.prepare()
        digests = {name: _sha256_bytes(content) for name, content in sorted(files.items())}
        current = self.current_manifest()
        versions = self.versions()
        if current and current.get("files") == digests and current.get("version") in versions:
            revision = self.git("rev-list", "-n", "1", current["version"]).strip()
            return Release(current["version"], revision, current, created=False)
        last = int(versions[-1].removeprefix(self.tag_prefix)) if versions else 0
        version = f"{self.tag_prefix}{last + 1}"
        manifest = {
            "version": version,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **describe,
            "files": digests,
        }
        staging = self.root / f".{self.data_dir_name}.staging-{uuid.uuid4().hex[:8]}"
        previous = self.root / f".{self.data_dir_name}.previous-{uuid.uuid4().hex[:8]}"
        pointer = self.root / f"{self.data_dir_name}.dvc"
        pointer_before = pointer.read_bytes() if pointer.exists() else None
        head_before = self.git("rev-parse", "HEAD").strip() if self._has_commits() else None
        try:
            self._write(staging, {**files, MANIFEST: (json.dumps(manifest, indent=2) + "\n").encode()})
            self._verify(staging, digests)
            if self.data_path.exists():
                self.data_path.rename(previous)
            staging.rename(self.data_path)
            self.dvc("add", self.data_dir_name, "--quiet")
            self.dvc("push", "--remote", self.remote_name, "--quiet")
            paths = [p for p in self.release_paths() if (self.root / p).exists()]
            self.git("add", "--", *paths)
            self.git("commit", "--quiet", "-m", f"Release gene embeddings {version}", "--", *paths)
            self.git("tag", "-a", version, "-m", f"gene embeddings {version}")
        except BaseException:
            self._roll_back(staging, previous, pointer, pointer_before, head_before, version)
            raise
        shutil.rmtree(previous, ignore_errors=True)
        revision = self.git("rev-parse", "HEAD").strip()
        return Release(version, revision, manifest, created=True)

    @staticmethod
    def _write(directory: Path, files: dict[str, bytes]) -> None:
        for name, content in files.items():
            try:
                write_bytes_atomic(directory / name, content)
            except OSError as exc:
                hint = "free some space" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "check the directory"
                raise ReleaseError(f"Writing {name} of the release to {directory} failed ({exc.strerror}): {hint} and "
                                   "release again. data/, data.dvc and the tags are unchanged.") from exc

    def _has_commits(self) -> bool:
        return subprocess.run(["git", "rev-parse", "--verify", "HEAD"], cwd=self.repo_dir, capture_output=True).returncode == 0

    @staticmethod
    def _verify(directory: Path, digests: dict[str, str]) -> None:
        for name, digest in digests.items():
            actual = sha256_file(directory / name)
            if actual != digest:
                raise ReleaseError(f"{directory / name} was written with sha256 {actual}, expected {digest}.")

    def _roll_back(self, staging: Path, previous: Path, pointer: Path, pointer_before, head_before, version) -> None:
        shutil.rmtree(staging, ignore_errors=True)
        if previous.exists():
            shutil.rmtree(self.data_path, ignore_errors=True)
            previous.rename(self.data_path)
        if pointer_before is None:
            pointer.unlink(missing_ok=True)
        else:
            write_bytes_atomic(pointer, pointer_before)
        subprocess.run(["git", "tag", "-d", version], cwd=self.repo_dir, capture_output=True)
        head_now = subprocess.run(["git", "rev-parse", "HEAD"], cwd=self.repo_dir, capture_output=True, text=True).stdout.strip()
        if head_before and head_now and head_now != head_before:
            subprocess.run(["git", "reset", "--soft", head_before], cwd=self.repo_dir, capture_output=True)
        subprocess.run(["git", "reset", "--quiet", "--", pointer.name], cwd=self.repo_dir, capture_output=True)


def _sha256_bytes(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def verify_release(data_dir: Path) -> dict:
    """Check every file listed in data_dir/MANIFEST.json against its sha256; raise on a mismatch."""
    manifest_path = Path(data_dir) / MANIFEST
    if not manifest_path.exists():
        raise ReleaseError(f"{manifest_path} is missing: this is not a gene_assets release (or `dvc pull` did not finish).")
    manifest = json.loads(manifest_path.read_text())
    bad = []
    for name, digest in manifest["files"].items():
        path = Path(data_dir) / name
        if not path.exists() or sha256_file(path) != digest:
            bad.append(name)
    if bad:
        raise ReleaseError(f"Release {manifest.get('version')} in {data_dir}: {len(bad)} files missing or corrupted "
                           f"({', '.join(bad[:5])}). Run `dvc pull --force` to restore them.")
    return manifest


def release_versions(repo: str, tag_prefix: str = "embeddings-v") -> list[str]:
    """The release tags of a git repository (a path or a URL), oldest first."""
    result = subprocess.run(["git", "ls-remote", "--tags", repo], capture_output=True, text=True)
    if result.returncode != 0:
        raise ReleaseError(f"Cannot list the releases of {repo}: {result.stderr.strip() or 'git ls-remote failed'}.")
    pattern = re.compile(rf"refs/tags/({re.escape(tag_prefix)}(\d+))$")
    found = [m for m in map(pattern.search, result.stdout.splitlines()) if m]
    return [m.group(1) for m in sorted(found, key=lambda m: int(m.group(2)))]


def pull_release(repo: str, version: str | None, out: Path | None = None, data_dir_name: str = "data") -> tuple[Path, dict]:
    """`dvc get` the release's data/ at `version` (the latest when None) into `out` (default
    ./gene-embeddings-<version>), then verify every file against MANIFEST.json; returns `out` and the manifest.
    Nothing appears at `out` unless the whole release arrived intact."""
    versions = release_versions(repo)
    if not versions:
        raise ReleaseError(f"{repo} has no release tags: make one with `gene-assets release`.")
    version = version or versions[-1]
    if version not in versions:
        raise ReleaseError(f"{repo} has no release {version!r}; it has {', '.join(versions)}.")
    out = Path(out or f"gene-embeddings-{version}").resolve()
    if out.exists():
        raise ReleaseError(f"{out} already exists: choose another --out or remove it.")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.pulling-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(out.parent / f"{staging.name}.dvc-site")}
    try:
        result = subprocess.run([sys.executable, "-m", "dvc", "get", repo, data_dir_name, "--rev", version,
                                 "-o", str(staging)], cwd=out.parent, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            detail = " / ".join((result.stderr.strip() or result.stdout.strip()).splitlines()[-3:])
            raise ReleaseError(f"dvc get of {version} from {repo} failed: {detail}. Check that its DVC remote is "
                               "reachable from here.")
        manifest = verify_release(staging)
        if manifest.get("version") != version:
            raise ReleaseError(f"{repo} at {version} holds a MANIFEST.json of {manifest.get('version')!r}: the tag "
                               "points at the wrong data.dvc.")
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(env["DVC_SITE_CACHE_DIR"], ignore_errors=True)
    return out, manifest

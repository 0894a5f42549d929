"""A git + DVC repository that publishes `data/` as numbered, tagged releases listed in a tracked release index."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from configobj import ConfigObj
from dagster import ConfigurableResource
from pydantic import Field

from ..errors import GeneAssetsError
from ..settings import DVC_REMOTE_ENV, default_dvc_remote_dir
from ..storage import is_url, sha256_file, write_bytes_atomic

MANIFEST = "MANIFEST.json"
RELEASE_INDEX = "releases.json"
"""Tracked beside data.dvc: version → data.dvc md5, date, backbones; each release adds its entry in its own commit."""
FALLBACK_GIT_IDENTITY = ["-c", "user.name=gene_assets", "-c", "user.email=gene_assets@localhost"]
DVC_SUPPORT_LINES = ("Having any troubles?", "Hit us up at", "https://dvc.org/support")
"""DVC's closing lines after an error: not the cause, left out of the message."""
PUBLISHED_LOG = "gene_assets-published"
RELEASE_LOCK = "gene_assets-release.lock"
"""In the repository's git directory: held (flock) by the one process that writes data/, commits, tags or pushes."""


class ReleaseError(GeneAssetsError, RuntimeError):
    """A release could not be made; the repository and data/ are as they were before it."""


class ReleaseRepositoryUnreachable(ReleaseError):
    """The release repository's git history could not be read (a wrong path or URL, or no network)."""


@dataclass
class Release:
    version: str
    revision: str
    manifest: dict
    created: bool
    remote_url: str


@dataclass
class ReleaseRecord:
    """One version as a consumer finds it: from the release index on the branch, or only from its tag."""

    version: str
    revision: str
    """The commit that added the version to the release index (or the tag, for a version the index lacks)."""
    created_at: str | None
    data_md5: str | None
    backbones: list[str] | None
    tagged: bool


def dvc_remotes(config_text: str) -> tuple[str | None, dict[str, str]]:
    """The default remote name and {name: url} of one DVC config file's text."""
    config = ConfigObj(config_text.splitlines())
    remotes = {
        m.group(1): section.get("url", "")
        for key, section in config.items()
        if (m := re.fullmatch(r'remote\s+"(.+)"', key))
    }
    return config.get("core", {}).get("remote"), remotes


class DvcReleaseRepository(ConfigurableResource):
    """Where releases go: `repo_dir` (a git repository) tracks `data/` with DVC and pushes to this clone's remote.

    The committed .dvc/config names the team's release remote (a URL) for consumers and never a local path; where
    this clone pushes lives in its untracked .dvc/config.local."""

    repo_dir: str = Field(description="The git repository that holds data/, data.dvc and the release tags.")
    remote_url: str | None = Field(
        default=None,
        description=(
            "Where releases push: a directory or DVC remote URL, written to .dvc/config.local as `remote_name`. "
            "None: the default remote .dvc/config.local already names (`dvc remote add --local -d …`), else the "
            "embedded local directory $XDG_DATA_HOME/gene_assets/dvc-remote (created when missing)."
        ),
    )
    remote_name: str = Field(default="storage", description="Name of the DVC remote releases push to.")
    data_dir_name: str = Field(
        default="data", description="Directory in repo_dir that a release writes and DVC tracks."
    )
    tag_prefix: str = Field(
        default="embeddings-v", description="Git tag of each release: this prefix and the release number."
    )
    create_remote: bool = Field(
        default=True,
        description=(
            "Create a missing local `remote_url` directory (with its parents); off for a configured remote, which "
            "must exist (a missing mount point is an error, not a new directory on the local disk)."
        ),
    )
    lock_timeout_s: float = Field(
        default=900.0,
        description="How long a release waits for another process's release of the same repository to finish.",
    )

    # --- commands -----------------------------------------------------------------------------
    def _run(self, args: list[str], what: str) -> str:
        env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
        result = subprocess.run(args, cwd=self.repo_dir, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            lines = [line.strip() for line in (result.stderr or result.stdout).splitlines()]
            lines = [line for line in lines if line and not line.startswith(DVC_SUPPORT_LINES)]
            errors = [line.removeprefix("ERROR:").strip() for line in lines if line.startswith("ERROR:")]
            detail = errors or lines[-3:] or [f"exit status {result.returncode} and no message"]
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

    @property
    def index_path(self) -> Path:
        return self.root / RELEASE_INDEX

    def release_index(self) -> dict[str, dict]:
        return parse_index(self.index_path.read_text(), str(self.index_path)) if self.index_path.exists() else {}

    def versions(self) -> list[str]:
        """Every version ever published here, oldest first: the tags, the release index, every version the index's
        history ever held (a reverted or reset release keeps its number) and the ones this clone pushed (a release
        whose commit and tag were both removed), so no number is handed out twice."""
        tags = self.git("tag", "--list", f"{self.tag_prefix}*").split()
        history = self.git("log", "-p", "--format=", "HEAD", "--", RELEASE_INDEX) if self._has_commits() else ""
        ever = re.findall(rf'^[+-]\s*"({re.escape(self.tag_prefix)}\d+)":', history, re.MULTILINE)
        pushed = self._published_log().read_text().split() if self._published_log().exists() else []
        return sort_versions({*tags, *self.release_index(), *ever, *pushed}, self.tag_prefix)

    def _published_log(self) -> Path:
        """In the git directory: every version this clone published, one a line (never committed, never pruned)."""
        path = Path(self.git("rev-parse", "--git-common-dir").strip())
        return (path if path.is_absolute() else self.root / path) / PUBLISHED_LOG

    def revision_of(self, version: str) -> str:
        """The commit of a version: the latest one that added it to the release index with its data.dvc, else its
        tag's."""
        history = ReleaseHistory(self.root, self.repo_dir, self.tag_prefix, self.data_dir_name)
        entry = self.release_index().get(version)
        revision = history.index_commit(version, entry) if entry else None
        return revision or self.git("rev-list", "-n", "1", version).strip()

    def current_manifest(self) -> dict | None:
        return read_manifest(self.data_path) if (self.data_path / MANIFEST).exists() else None

    def _dvc_config(self, name: str) -> str:
        path = self.root / ".dvc" / name
        return path.read_text() if path.exists() else ""

    def push_remote(self) -> tuple[str, str]:
        """(name, url) of the remote a release pushes to: `remote_url`; else the default remote of
        .dvc/config.local; else the embedded local directory."""
        if self.remote_url:
            return self.remote_name, self.remote_url
        local_default, local_remotes = dvc_remotes(self._dvc_config("config.local"))
        if local_default:
            url = {**dvc_remotes(self._dvc_config("config"))[1], **local_remotes}.get(local_default)
            if not url:
                raise ReleaseError(
                    f"{self.root / '.dvc' / 'config.local'} makes {local_default!r} the default DVC "
                    "remote, but no DVC config gives its url: `dvc remote add --local -d NAME URL`."
                )
            if not is_url(url) and not Path(url).is_absolute():
                url = str((self.root / ".dvc" / url).resolve())
            return local_default, url
        return self.remote_name, default_dvc_remote_dir()

    def require_git(self) -> None:
        if not (self.root / ".git").exists():
            raise ReleaseError(
                f"{self.repo_dir} is not a git repository: releases are git commits tagged "
                f"{self.tag_prefix}N. Run `git init` there or set the release repository."
            )

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the repository's release lock: one writer at a time picks a version, writes data/, commits, tags and
        pushes. The lock is an flock, so it is freed when its holder exits, however it exits."""
        self.require_git()
        path = Path(self.git("rev-parse", "--git-common-dir").strip())
        path = (path if path.is_absolute() else self.root / path) / RELEASE_LOCK
        with open(path, "a+") as handle:
            deadline, announced = time.monotonic() + self.lock_timeout_s, False
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    handle.seek(0)
                    holder = handle.read().strip() or "unknown"
                    if time.monotonic() > deadline:
                        raise ReleaseError(
                            f"Another release of {self.repo_dir} (pid {holder}) still holds {path} after "
                            f"{self.lock_timeout_s:.0f} s: wait for it to finish, or stop that process (its lock "
                            "is freed when it exits), then release again. Nothing was changed."
                        ) from None
                    if not announced:
                        print(
                            f"Waiting for the release of {self.repo_dir} by pid {holder} to finish ({path}) …",
                            file=sys.stderr,
                            flush=True,
                        )
                        announced = True
                    time.sleep(0.2)
            try:
                handle.seek(0)
                handle.truncate()
                handle.write(f"{os.getpid()}\n")
                handle.flush()
                yield
            finally:
                handle.truncate(0)
                fcntl.flock(handle, fcntl.LOCK_UN)

    def prepare(self) -> tuple[str, str]:
        """Check the repository and the remote, initializing DVC on first use; returns the push remote's name and url,
        which .dvc/config.local then names as the default."""
        self.require_git()
        self.refuse_dirty_tree()
        if not (self.root / ".dvc").is_dir():
            self.dvc("init", "--quiet")
        self.refuse_committed_local_remote()
        self.dvc("config", "core.analytics", "false")
        self.dvc("config", "--local", "core.site_cache_dir", str((self.root / ".dvc" / "tmp" / "site_cache").resolve()))
        name, url = self.push_remote()
        configured = self.remote_url is None and url != default_dvc_remote_dir()
        if not is_url(url):
            remote = Path(url)
            if (configured or not self.create_remote) and not remote.is_dir():
                raise ReleaseError(
                    f"DVC remote {url} does not exist (is its disk mounted?). Create the directory, or "
                    f"set {DVC_REMOTE_ENV} to an existing directory or a DVC remote URL."
                )
            try:
                remote.mkdir(parents=True, exist_ok=True)
                probe = remote / f".write-probe-{uuid.uuid4().hex}"
                probe.write_bytes(b"")
                probe.unlink()
            except OSError as exc:
                raise ReleaseError(
                    f"DVC remote {url} is not writable ({exc.strerror}). Set {DVC_REMOTE_ENV} to a "
                    "writable directory or a DVC remote URL."
                ) from exc
        if not configured:
            self.dvc("remote", "add", "--local", "--default", "--force", name, url)
        return name, url

    def refuse_committed_local_remote(self) -> None:
        """The committed .dvc/config travels with every clone: a local directory there is a path on one machine."""
        _, remotes = dvc_remotes(self._dvc_config("config"))
        for name, url in remotes.items():
            if not is_url(url):
                raise ReleaseError(
                    f"{self.root / '.dvc' / 'config'} names the local directory {url} as DVC remote {name!r}; a clone "
                    f"on another machine cannot reach it and a release would commit it. Move it to this clone's "
                    f"untracked .dvc/config.local: `dvc remote remove {name} && dvc remote add --local -d {name} {url}`, "
                    "commit .dvc/config, then release."
                )

    def release_paths(self) -> list[str]:
        """What a release commits: the data pointer, the release index and DVC's own files."""
        return [
            f"{self.data_dir_name}.dvc",
            RELEASE_INDEX,
            ".gitignore",
            ".dvc/config",
            ".dvc/.gitignore",
            ".dvcignore",
        ]

    def refuse_dirty_tree(self) -> None:
        """A release commits only its own files; refuse when those carry someone's uncommitted changes or git is in
        the middle of a merge, rebase or cherry-pick (a release commit would mix into it)."""
        git_dir = Path(self.git("rev-parse", "--absolute-git-dir").strip())
        for marker, what in (
            ("MERGE_HEAD", "a merge"),
            ("rebase-merge", "a rebase"),
            ("rebase-apply", "a rebase"),
            ("CHERRY_PICK_HEAD", "a cherry-pick"),
        ):
            if (git_dir / marker).exists():
                raise ReleaseError(f"{self.repo_dir} is in the middle of {what}: finish or abort it, then release.")
        status = self.git("status", "--porcelain", "--untracked-files=no", "--", *self.release_paths())
        changed = [line[3:] for line in status.splitlines() if line.strip()]
        if changed:
            raise ReleaseError(
                f"{self.repo_dir} has uncommitted changes in {', '.join(changed)}, which a release "
                "commits: commit or `git restore` them first."
            )

    def refuse_unowned_files(self, current: dict | None) -> None:
        """A release replaces data/ whole: refuse while data/ holds a file the current release does not list, or a
        listed file that changed since it was released (the release would delete or overwrite it)."""
        if not self.data_path.is_dir():
            return
        listed = (current or {}).get("files", {})
        foreign, changed = [], []
        for path in sorted(entries_under(self.data_path)):
            name = path.relative_to(self.data_path).as_posix()
            if path.is_symlink() or (path.is_dir() and not any(path.iterdir())):
                foreign.append(name + ("@" if path.is_symlink() else "/"))
                continue
            if path.is_dir() or name == MANIFEST:
                continue
            if name not in listed:
                foreign.append(name)
            elif not path.is_file() or sha256_file(path) != listed[name]:
                changed.append(name)
        release = f"release {current.get('version')}" if current else f"any release (no {MANIFEST})"
        if foreign:
            raise ReleaseError(
                f"{self.data_path} holds {len(foreign)} files that are not part of {release}: "
                f"{_listing(foreign)}. A release replaces {self.data_dir_name}/ with what it publishes "
                f"and would delete them: move them out of {self.data_dir_name}/, then release. "
                "Nothing was changed."
            )
        if changed:
            raise ReleaseError(
                f"{self.data_path} holds {len(changed)} files changed since {release}: "
                f"{_listing(changed)}. A release would overwrite them: move your copies out of "
                f"{self.data_dir_name}/ and `dvc checkout {self.data_dir_name}` to restore the released "
                "ones, then release. Nothing was changed."
            )

    # --- publishing ---------------------------------------------------------------------------
    def publish(self, files: dict[str, bytes], describe: dict, drop: tuple[str, ...] = ()) -> Release:
        """Write `files` as data/, version it with DVC, push it, add it to the release index, commit and tag.

        Identical content to the current release makes no new version; a file of the current release that `files`
        lacks is refused unless `drop` names it. The whole release holds the repository's release lock (a concurrent
        release waits, then numbers its version after this one). On any failure data/, data.dvc and the release
        index are restored, and the commit and tag this release made (only those) removed.
        """
        with self.lock():
            return self._publish(files, describe, drop)

    def _publish(self, files: dict[str, bytes], describe: dict, drop: tuple[str, ...] = ()) -> Release:
        self.recover_interrupted_release()
        current = self.current_manifest()
        self.refuse_unowned_files(current)
        refuse_dropped_files(current, files, drop)
        self.refuse_unreconciled_index()
        remote_name, remote_url = self.prepare()
        digests = {name: _sha256_bytes(content) for name, content in sorted(files.items())}
        versions = self.versions()
        if current and current.get("files") == digests and current.get("version") in versions:
            revision = self.revision_of(current["version"])
            return Release(current["version"], revision, current, created=False, remote_url=remote_url)
        last = int(versions[-1].removeprefix(self.tag_prefix)) if versions else 0
        version = f"{self.tag_prefix}{last + 1}"
        manifest = {"version": version, **describe, "files": digests}
        created_at = datetime.now(UTC).isoformat(timespec="seconds")
        staging = self.root / f".{self.data_dir_name}.staging-{uuid.uuid4().hex[:8]}"
        previous = self.root / f".{self.data_dir_name}.previous-{uuid.uuid4().hex[:8]}"
        pointer = self.root / f"{self.data_dir_name}.dvc"
        config = self.root / ".dvc" / "config"
        tracked_before = {
            path: path.read_bytes() if path.exists() else None for path in (pointer, self.index_path, config)
        }
        head_before = self.git("rev-parse", "HEAD").strip() if self._has_commits() else None
        made: dict[str, str] = {}  # the commit and tag this release made: a rollback undoes those and no others
        try:
            self._write(staging, {**files, MANIFEST: (json.dumps(manifest, indent=2) + "\n").encode()})
            self._verify(staging, digests)
            if self.data_path.exists():
                self.data_path.rename(previous)
            staging.rename(self.data_path)
            self.dvc("add", self.data_dir_name, "--quiet")
            self.dvc("push", "--remote", remote_name, "--quiet")
            self._add_to_index(version, manifest, created_at)
            if "site_cache_dir" in ConfigObj(config.read_text().splitlines()).get("core", {}):
                # relative, it resolves in whatever directory a consumer runs dvc: kept in config.local only
                self.dvc("config", "--unset", "core.site_cache_dir")
            paths = [p for p in self.release_paths() if (self.root / p).exists()]
            self.git("add", "--", *paths)
            self.git("commit", "--quiet", "-m", f"Release gene embeddings {version}", "--", *paths)
            made["commit"] = self.git("rev-parse", "HEAD").strip()
            self.git("tag", "-a", version, "-m", f"gene embeddings {version}")
            made["tag"] = version
        except BaseException:
            self._roll_back(staging, previous, tracked_before, head_before, made)
            raise
        shutil.rmtree(previous, ignore_errors=True)
        with open(self._published_log(), "a") as log:
            log.write(f"{version}\n")
        return Release(version, made["commit"], manifest, created=True, remote_url=remote_url)

    def recover_interrupted_release(self) -> None:
        """Undo what a release killed midway (SIGKILL, power loss; it had no chance to roll back) left: its
        staging directory, its uncommitted data.dvc, release index and DVC config, and data/ set aside as
        .data.previous-*. Called with the release lock held, so the process that left them is gone."""
        prefix = f".{self.data_dir_name}."
        staging = sorted(self.root.glob(f"{prefix}staging-*"))
        previous = sorted(self.root.glob(f"{prefix}previous-*"))
        if not staging and not previous:
            return
        self.require_git()
        left = ", ".join(p.name for p in staging + previous)
        status = self.git("status", "--porcelain", "--untracked-files=no", "--", *self.release_paths())
        dirty = [line[3:] for line in status.splitlines() if line.strip()]
        if dirty:
            self.git("reset", "--quiet", "--", *dirty)
            committed = set(self.git("ls-tree", "--name-only", "HEAD", "--", *dirty).split())
            if committed:
                self.git("checkout", "HEAD", "--", *committed)
            for path in set(dirty) - committed:
                (self.root / path).unlink(missing_ok=True)
        if previous and (dirty or not self.data_path.exists()):
            shutil.rmtree(self.data_path, ignore_errors=True)
            previous.pop().rename(self.data_path)
        for leftover in staging + previous:
            shutil.rmtree(leftover, ignore_errors=True)
        print(
            f"{self.repo_dir}: an interrupted release left {left}"
            + (f" and uncommitted {', '.join(dirty)}" if dirty else "")
            + "; restored data/ and those files to the last commit before releasing.",
            file=sys.stderr,
        )

    def refuse_unreconciled_index(self) -> None:
        """Every version of the release index must be found in the branch history with the data.dvc it lists (what
        `releases`, `pull` and `verify` rely on); a release on top of an index that is not is refused."""
        if self._has_commits():
            try:
                ReleaseHistory(self.root, self.repo_dir, self.tag_prefix, self.data_dir_name).records()
            except ReleaseError as exc:
                raise ReleaseError(
                    f"{exc} Nothing was changed: restore {RELEASE_INDEX} from the last release commit "
                    f"(`git log -- {RELEASE_INDEX}`, then `git checkout COMMIT -- {RELEASE_INDEX}` and commit) and "
                    "release again."
                ) from None

    def _add_to_index(self, version: str, manifest: dict, created_at: str) -> None:
        """The version's entry in the release index: its data.dvc md5, when it was made (kept out of data/, whose
        files depend only on the inputs and the code), its backbones and file count."""
        backbones = sorted({m["backbone"] for m in manifest.get("models", []) if "backbone" in m})
        entry = {
            "data_md5": data_md5((self.root / f"{self.data_dir_name}.dvc").read_text()),
            "created_at": created_at,
            "backbones": backbones,
            "files": len(manifest["files"]),
        }
        index = {**self.release_index(), version: entry}
        write_bytes_atomic(self.index_path, (json.dumps(index, indent=2) + "\n").encode())

    @staticmethod
    def _write(directory: Path, files: dict[str, bytes]) -> None:
        for name, content in files.items():
            try:
                write_bytes_atomic(directory / name, content)
            except OSError as exc:
                hint = "free some space" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "check the directory"
                raise ReleaseError(
                    f"Writing {name} of the release to {directory} failed ({exc.strerror}): {hint} and "
                    "release again. data/, data.dvc and the tags are unchanged."
                ) from exc

    def _has_commits(self) -> bool:
        return (
            subprocess.run(["git", "rev-parse", "--verify", "HEAD"], cwd=self.repo_dir, capture_output=True).returncode
            == 0
        )

    @staticmethod
    def _verify(directory: Path, digests: dict[str, str]) -> None:
        for name, digest in digests.items():
            actual = sha256_file(directory / name)
            if actual != digest:
                raise ReleaseError(f"{directory / name} was written with sha256 {actual}, expected {digest}.")

    def _roll_back(
        self,
        staging: Path,
        previous: Path,
        tracked_before: dict[Path, bytes | None],
        head_before: str | None,
        made: dict[str, str],
    ) -> None:
        """Undo this release's own work: its data/, pointer and index writes, and its tag and commit only while they
        still are what it made (a commit someone added on top, or a tag of theirs, stays)."""
        shutil.rmtree(staging, ignore_errors=True)
        if previous.exists():
            shutil.rmtree(self.data_path, ignore_errors=True)
            previous.rename(self.data_path)
        for path, content in tracked_before.items():
            if content is None:
                path.unlink(missing_ok=True)
            else:
                write_bytes_atomic(path, content)

        def resolve(revision: str) -> str:
            return subprocess.run(
                ["git", "rev-parse", "--verify", "--quiet", revision], cwd=self.repo_dir, capture_output=True, text=True
            ).stdout.strip()

        if "tag" in made and resolve(f"{made['tag']}^{{commit}}") == made.get("commit"):
            subprocess.run(["git", "tag", "-d", made["tag"]], cwd=self.repo_dir, capture_output=True)
        if "commit" in made and head_before and resolve("HEAD") == made["commit"]:
            subprocess.run(["git", "reset", "--soft", head_before], cwd=self.repo_dir, capture_output=True)
        subprocess.run(
            ["git", "reset", "--quiet", "--", *(str(p.relative_to(self.root)) for p in tracked_before)],
            cwd=self.repo_dir,
            capture_output=True,
        )


def entries_under(directory: Path) -> list[Path]:
    """Every file, directory and symlink below `directory`, without following symlinks."""
    found = []
    for root, dirs, files in os.walk(directory):
        found += [Path(root) / name for name in [*dirs, *files]]
    return found


def refuse_dropped_files(current: dict | None, files: dict[str, bytes], drop: tuple[str, ...]) -> None:
    """A release publishes at least what the current one did: a file it would leave out must be named in `drop`
    (`gene-assets release --drop NAME`), and every name in `drop` must be such a file."""
    released = set((current or {}).get("files", {}))
    missing = sorted(released - set(files) - set(drop))
    version = (current or {}).get("version")
    if missing:
        raise ReleaseError(
            f"This release would drop {len(missing)} files of {version} ({_listing(missing)}): their stored "
            "outputs are gone or no longer materialized. Materialize them again (e.g. `gene-assets materialize "
            "gene_embeddings --backbone B --view V` for embeddings/B__V.parquet), or leave them out on purpose "
            f"with `gene-assets release{''.join(f' --drop {name}' for name in missing[:3])}`. Nothing was changed."
        )
    unknown = sorted(set(drop) - (released - set(files)))
    if unknown:
        raise ReleaseError(
            f"--drop {', '.join(unknown)}: not a file {version or 'the current release'} has that this release "
            "leaves out; nothing to drop. Nothing was changed."
        )


def parse_index(text: str, where: str) -> dict[str, dict]:
    """A release index's {version: entry}; anything else is a ReleaseError naming it and how to restore it."""
    try:
        index = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        index, problem = None, f"is not valid JSON ({exc})"
    else:
        problem = f"holds a JSON {type(index).__name__}, not an object of version → entry"
    if isinstance(index, dict) and all(isinstance(entry, dict) for entry in index.values()):
        return index
    if isinstance(index, dict):
        problem = "has entries that are not objects"
    raise ReleaseError(
        f"{where} {problem}: it was damaged or edited. Restore it from the last release commit (`git log -- "
        f"{RELEASE_INDEX}`, then `git checkout COMMIT -- {RELEASE_INDEX}`)."
    )


def _listing(names: list[str], shown: int = 10) -> str:
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _sha256_bytes(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def sort_versions(versions, tag_prefix: str = "embeddings-v") -> list[str]:
    pattern = re.compile(rf"^{re.escape(tag_prefix)}(\d+)$")
    return sorted((v for v in versions if pattern.match(v)), key=lambda v: int(pattern.match(v).group(1)))


def index_log_args(version: str) -> list[str]:
    """git log arguments listing the commits that added or removed `version` in the release index, oldest first."""
    return ["log", "--reverse", "--format=%H", "-S", f'"{version}":', "HEAD", "--", RELEASE_INDEX]


def data_md5(pointer_text: str) -> str | None:
    """The md5 of the first output of a .dvc file's text."""
    match = re.search(r"^- md5: (\S+)", pointer_text, re.MULTILINE)
    return match.group(1) if match else None


def read_manifest(data_dir: Path) -> dict:
    """data_dir/MANIFEST.json, refused when it is missing, not JSON, or lists no files."""
    path = Path(data_dir) / MANIFEST
    if not path.is_file():
        raise ReleaseError(f"{path} is missing: this is not a gene_assets release (or `dvc pull` did not finish).")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReleaseError(
            f"{path} is not valid JSON ({exc}): it was damaged or edited. `dvc pull --force` or "
            "`gene-assets pull` restores the release."
        ) from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not all(isinstance(d, str) for d in files.values()):
        raise ReleaseError(f'{path} has no "files" mapping of file → sha256: it is not a gene_assets release manifest.')
    if not files:
        raise ReleaseError(
            f"{path} lists no files: every release holds its tables and leaderboard, so this manifest was "
            "emptied. `dvc pull --force` or `gene-assets pull` restores the release."
        )
    if not isinstance(manifest.get("version"), str):
        raise ReleaseError(f"{path} names no release version: it is not a gene_assets release manifest.")
    return manifest


def dvc_dir_md5(directory: Path, names: list[str]) -> str:
    """The md5 DVC tracks a directory holding `names` by (data.dvc's `md5: ….dir`): the md5 of its sorted listing of
    (relative path, file md5), computed with DVC's own tree object."""
    from dvc_data.hashfile.hash_info import HashInfo
    from dvc_data.hashfile.tree import Tree

    tree = Tree()
    for name in names:
        tree.add(tuple(name.split("/")), None, HashInfo("md5", sha256_file(directory / name, algorithm="md5")))
    tree.digest()
    return tree.hash_info.value


def check_release(data_dir: Path, expected_md5: str | None, source: str) -> dict:
    """Check data_dir against the release it claims to be: MANIFEST.json lists every file there (and only paths
    inside data_dir), each file has its listed sha256, and the whole directory has the md5 `expected_md5` that DVC
    tracks for the release (the data.dvc of its commit in `source`), so an edited manifest does not pass either."""
    data_dir = Path(data_dir)
    manifest = read_manifest(data_dir)
    version, listed = manifest["version"], manifest["files"]
    links = sorted(p.relative_to(data_dir).as_posix() for p in entries_under(data_dir) if p.is_symlink())
    if links:
        raise ReleaseError(
            f"Release {version} in {data_dir}: {len(links)} entries are symlinks ({_listing(links)}); a release holds "
            f"only regular files, so they are refused whatever they point to. Pull the release again with "
            "`gene-assets pull`."
        )
    root = data_dir.resolve()
    outside = [
        name
        for name in listed
        if PurePosixPath(name).is_absolute()
        or not PurePosixPath(name).parts
        or {"..", "."} & set(PurePosixPath(name).parts)
        or name != PurePosixPath(name).as_posix()
        or not (data_dir / name).resolve().is_relative_to(root)
    ]
    if outside:
        raise ReleaseError(
            f"{data_dir / MANIFEST} lists {len(outside)} paths outside the release directory "
            f"({_listing(outside)}): refused. Pull the release again with `gene-assets pull`."
        )
    present = sorted(p.relative_to(data_dir).as_posix() for p in entries_under(data_dir) if not p.is_dir())
    unlisted = [name for name in present if name != MANIFEST and name not in listed]
    if unlisted:
        raise ReleaseError(
            f"Release {version} in {data_dir}: {len(unlisted)} files are not in its MANIFEST.json "
            f"({_listing(unlisted)}): they are not part of the release. Move them out of {data_dir}."
        )
    bad = [
        name
        for name, digest in listed.items()
        if not (data_dir / name).is_file() or sha256_file(data_dir / name) != digest
    ]
    if bad:
        raise ReleaseError(
            f"Release {version} in {data_dir}: {len(bad)} files missing or corrupted "
            f"({_listing(bad, 5)}). Run `dvc pull --force` to restore them."
        )
    actual = dvc_dir_md5(data_dir, sorted([*listed, MANIFEST]))
    if actual != expected_md5:
        raise ReleaseError(
            f"{data_dir} is not release {version} as DVC tracks it in {source}: that release's data.dvc "
            f"has md5 {expected_md5 or 'none'}, this directory {actual}, although every file matches "
            "MANIFEST.json, so MANIFEST.json was edited. Run `dvc pull --force` or `gene-assets pull` "
            "to restore the release."
        )
    return manifest


def verify_release(data_dir: Path, repo: str, data_dir_name: str = "data") -> dict:
    """Check a pulled or checked-out release (data_dir) against the release repository `repo` (a path or git URL): the
    version its MANIFEST.json names must be a release there, and data_dir must be exactly that release's data."""
    version = read_manifest(data_dir)["version"]
    with ReleaseHistory.of(repo, data_dir_name=data_dir_name) as history:
        record = history.find(version)
        expected = history.data_md5_at(record)
    return check_release(data_dir, expected, f"{repo} (commit {record.revision[:12]})")


PROVENANCE_FIELDS = (
    "model_id",
    "revision",
    "weights_sha256",
    "precision",
    "dtype",
    "device",
    "text_view_sha256",
    "gene_universe_sha256",
)


def describe_release(manifest: dict) -> list[str]:
    """What a release says it holds: the code it was computed with and each file's provenance (digests shortened;
    MANIFEST.json has them whole)."""

    def short(value) -> str:
        return value[:12] if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{40,64}", value) else str(value)

    code = manifest.get("code") or {}
    lines = []
    if code:
        state = (
            f"plus uncommitted changes, diff sha256 {short(code.get('diff_sha256'))}"
            if code.get("uncommitted_changes")
            else "no uncommitted changes"
            if code.get("uncommitted_changes") is False
            else "not a git checkout"
        )
        lines.append(f"computed with code {short(code.get('commit'))} ({state})")
    if manifest.get("protocol"):
        lines.append(f"gene tasks scored under the {manifest['protocol']} evaluation protocol")
    for model in manifest.get("models", []):
        fields = [f"{key} {short(model[key])}" for key in PROVENANCE_FIELDS if model.get(key) is not None]
        mapping = model.get("mapping")
        if mapping:
            fields.append("mapping " + ", ".join(f"{k} {v}" for k, v in mapping.items()))
        lines.append(f"  {model.get('file')}: " + "; ".join(fields))
    return lines


class ReleaseHistory:
    """The releases of a git repository (a path or URL), read from a bare clone of it: the release index at the tip
    of its default branch, each version's commit found in the branch history, and tags as a convenience."""

    def __init__(self, clone: Path, repo: str, tag_prefix: str = "embeddings-v", data_dir_name: str = "data"):
        self.clone, self.repo, self.tag_prefix, self.data_dir_name = clone, repo, tag_prefix, data_dir_name

    @classmethod
    @contextmanager
    def of(cls, repo: str, **kwargs) -> Iterator[ReleaseHistory]:
        with tempfile.TemporaryDirectory(prefix="gene-assets-history-") as tmp:
            clone = Path(tmp) / "repo.git"
            result = subprocess.run(
                ["git", "clone", "--bare", "--quiet", repo, str(clone)], capture_output=True, text=True
            )
            if result.returncode != 0:
                reason = " / ".join(line.strip() for line in result.stderr.splitlines() if line.strip())
                raise ReleaseRepositoryUnreachable(
                    f"Cannot read the releases of {repo}: {reason.rstrip('.') or 'git clone failed'}."
                )
            yield cls(clone, repo, **kwargs)

    def git(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=self.clone, capture_output=True, text=True)

    def show(self, revision: str, path: str) -> str | None:
        result = self.git("show", f"{revision}:{path}")
        return result.stdout if result.returncode == 0 else None

    def records(self) -> list[ReleaseRecord]:
        index = parse_index(self.show("HEAD", RELEASE_INDEX) or "{}", f"{RELEASE_INDEX} of {self.repo}")
        tags = set(self.git("tag", "--list", f"{self.tag_prefix}*").stdout.split())
        records = []
        for version in sort_versions({*index, *tags}, self.tag_prefix):
            entry = index.get(version)
            if entry is None:
                records.append(ReleaseRecord(version, version, None, None, None, tagged=True))
                continue
            revision = self.index_commit(version, entry)
            if revision is None:
                raise ReleaseError(
                    f"{self.repo}: the release index lists {version} with data.dvc md5 {entry.get('data_md5')}, "
                    "but no commit that added it to the index holds that data.dvc; the index was edited by hand."
                )
            records.append(
                ReleaseRecord(
                    version,
                    revision,
                    entry.get("created_at"),
                    entry.get("data_md5"),
                    entry.get("backbones"),
                    tagged=version in tags,
                )
            )
        return records

    def index_commit(self, version: str, entry: dict) -> str | None:
        """The latest commit that added `version` to the release index with the data.dvc md5 its entry lists (a
        revert, amend or rebase leaves other commits that touched it)."""
        touched = self.git(*index_log_args(version)).stdout.split()
        for revision in reversed(touched):
            pointer = self.show(revision, f"{self.data_dir_name}.dvc")
            if pointer is not None and data_md5(pointer) == entry.get("data_md5"):
                return revision
        return None

    def find(self, version: str | None) -> ReleaseRecord:
        records = self.records()
        if not records:
            raise ReleaseError(
                f"{self.repo} has no releases (no {RELEASE_INDEX} on its default branch and no "
                f"{self.tag_prefix}N tags): make one with `gene-assets release`."
            )
        if version is None:
            return records[-1]
        for record in records:
            if record.version == version:
                return record
        raise ReleaseError(f"{self.repo} has no release {version!r}; it has {', '.join(r.version for r in records)}.")

    def data_md5_at(self, record: ReleaseRecord) -> str | None:
        """The md5 DVC tracks the release's data by: its data.dvc at the release's commit."""
        pointer = self.show(record.revision, f"{self.data_dir_name}.dvc")
        return data_md5(pointer) if pointer else None

    def remote_at(self, revision: str) -> tuple[str | None, str | None]:
        """The default DVC remote (name, url) the committed .dvc/config names at `revision`."""
        name, remotes = dvc_remotes(self.show(revision, ".dvc/config") or "")
        return name, remotes.get(name) if name else None


def local_default_remote(repo: str) -> str | None:
    """The url of the default remote a local clone's .dvc/config.local names (where that clone pushes), if any."""
    config_local = Path(repo) / ".dvc" / "config.local"
    if not config_local.exists() or not dvc_remotes(config_local.read_text())[0]:
        return None
    return DvcReleaseRepository(repo_dir=str(Path(repo).resolve())).push_remote()[1]


def pull_release(
    repo: str, version: str | None, out: Path | None = None, data_dir_name: str = "data", remote: str | None = None
) -> tuple[Path, dict, ReleaseRecord]:
    """`dvc get` the release's data/ at `version` (the latest when None) into `out` (default
    ./gene-embeddings-<version>), then verify it (check_release: MANIFEST.json and data.dvc's md5); returns `out`, the manifest and the
    release's record. The version is found in the release index on the branch (tags are not needed). The data comes
    from `remote` (a directory or DVC remote URL) when given, else $GENE_ASSETS_DVC_REMOTE, else the remote a local
    `repo`'s .dvc/config.local names, else the remote its committed .dvc/config names.
    Nothing appears at `out` unless the whole release arrived intact."""
    remote = release_remote(repo, remote)
    with ReleaseHistory.of(repo, data_dir_name=data_dir_name) as history:
        record = history.find(version)
        committed_name, committed_url = history.remote_at(record.revision)
        expected_md5 = history.data_md5_at(record)
    version = record.version
    out = Path(out or f"gene-embeddings-{version}").resolve()
    if out.exists():
        raise ReleaseError(f"{out} already exists: choose another --out or remove it.")
    blocking = next((parent for parent in out.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        raise ReleaseError(f"--out {out}: {blocking} is a file, not a directory; choose an --out below a directory.")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.pulling-{uuid.uuid4().hex[:8]}"
    try:
        dvc_get(repo, record, data_dir_name, staging, remote, (committed_name, committed_url))
        manifest = check_release(staging, expected_md5, f"{repo} (commit {record.revision[:12]})")
        if manifest.get("version") != version:
            raise ReleaseError(
                f"{repo} at {version} holds a MANIFEST.json of {manifest.get('version')!r}: the "
                "release index or tag points at the wrong data.dvc."
            )
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out, manifest, record


def release_remote(repo: str, remote: str | None) -> str | None:
    """Where a consumer fetches a release's data from: `remote`, else $GENE_ASSETS_DVC_REMOTE, else the remote a local
    `repo`'s .dvc/config.local names; None: the remote the release's committed .dvc/config names."""
    return remote or os.environ.get(DVC_REMOTE_ENV) or local_default_remote(repo)


def dvc_get(
    repo: str,
    record: ReleaseRecord,
    path: str,
    out: Path,
    remote: str | None,
    committed_remote: tuple[str | None, str | None],
) -> None:
    """`dvc get` `path` (data/ or one file in it) of the release `record` into `out`, from `remote` when given, else
    from the (name, url) `committed_remote` the release's .dvc/config names; a failure raises the one-line
    unreachable_message."""
    scratch = out.parent / f".{out.name}.dvc-site-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(scratch)}
    args = [sys.executable, "-m", "dvc", "get", repo, path, "--rev", record.revision, "-o", str(out)]
    try:
        if remote:
            scratch.mkdir(parents=True)
            override = ConfigObj()
            override["core"] = {"remote": "release"}
            override['remote "release"'] = {"url": str(Path(remote).resolve()) if not is_url(remote) else remote}
            override.filename = str(scratch / "remote.config")
            override.write()
            args += ["--config", override.filename]
        result = subprocess.run(args, cwd=out.parent, capture_output=True, text=True, env=env)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if result.returncode != 0:
        url, name = (remote, "release") if remote else committed_remote[::-1]
        raise ReleaseError(unreachable_message(repo, record.version, result, url, name))


def unreachable_message(
    repo: str, version: str, result: subprocess.CompletedProcess, url: str | None, name: str | None
) -> str:
    """One message for a failed `dvc get`: which remote, DVC's reason, and how to point at another copy."""
    reasons = [
        line.removeprefix("ERROR: ").strip()
        for line in (result.stderr or result.stdout).splitlines()
        if line.startswith("ERROR:")
    ]
    reason = reasons[0] if reasons else (result.stderr.strip().splitlines() or ["dvc get failed"])[-1]
    where = f"DVC remote {name!r} ({url})" if url else "no DVC remote (its .dvc/config names none)"
    return (
        f"Release {version} of {repo} could not be fetched from {where}: {reason}. Point at a copy you can "
        f"reach with `gene-assets pull {version} --remote URL` or {DVC_REMOTE_ENV}=URL (for an S3-compatible "
        "endpoint, AWS_ENDPOINT_URL=...); in a clone, `dvc remote add --local -d mirror URL` or "
        f"`dvc remote modify --local {name or 'NAME'} endpointurl URL`, then `dvc pull`."
    )

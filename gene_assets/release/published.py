"""Released gene embeddings from Python: what a release holds, and one table fetched through DVC, verified against
the release's MANIFEST.json and kept in a local copy (keyed by version and sha256) that later calls read offline."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..settings import PROJECT_ROOT, RELEASE_REPO_ENV, release_cache_dir

GENE_IDENTIFIERS = "gene_identifiers.parquet"
"""The catalog's identifiers in a release (entrez_id, symbol, aliases, ensembl_ids): what a user's genes resolve by."""
IDENTIFIER_COLUMNS = ["entrez_id", "symbol", "aliases", "ensembl_ids"]
META_COLUMNS = ("entrez_id", "text_sha256")
"""Columns of a loaded embedding table beside its dimensions (0 … dims-1)."""


def embedding_file_name(attrs: dict) -> str:
    return f"embeddings/{attrs['backbone']}__{attrs['view']}.parquet"


def gene_identifiers(catalog: pd.DataFrame):
    """The catalog's identifier columns as an arrow table, one row per gene in Entrez order."""
    import pyarrow as pa

    table = catalog[IDENTIFIER_COLUMNS].sort_values("entrez_id", ignore_index=True)
    return pa.Table.from_pandas(table.astype({"entrez_id": "int64"}), preserve_index=False)


def default_release_repo() -> str:
    """$GENE_ASSETS_RELEASE_REPO, else this project's checkout (where `gene-assets release` commits)."""
    return os.environ.get(RELEASE_REPO_ENV, str(PROJECT_ROOT))


@dataclass
class PublishedRelease:
    """One version of a release repository as a consumer reads it: its MANIFEST.json, and its files fetched one at a
    time into the local copy `cache` (release_cache_dir()/<repository digest>/<version>/<sha256>)."""

    repo: str
    version: str
    manifest: dict
    remote: str | None
    cache: Path
    source: tuple | None = field(default=None, repr=False)
    """(ReleaseRecord, committed remote (name, url)) once the repository was read: where `dvc get` fetches from."""

    @classmethod
    def open(cls, version: str | None, repo: str | None, remote: str | None) -> PublishedRelease:
        """The release `version` (None: the latest in the release index) of `repo`. A version whose MANIFEST.json is
        in the local copy is opened without the network; when the repository cannot be read, version None opens
        the newest version in the local copy (with a warning)."""
        repo = str(repo or default_release_repo())
        root = release_cache_dir() / hashlib.sha256(repo.encode()).hexdigest()[:16]
        if version is not None and (root / version / "MANIFEST.json").is_file():
            return cls(repo, version, _read_json(root / version / "MANIFEST.json"), remote, root)
        from .dvc_repository import ReleaseHistory, ReleaseRepositoryUnreachable

        try:
            with ReleaseHistory.of(repo) as history:
                record = history.find(version)
                source = (record, history.remote_at(record.revision))
        except ReleaseRepositoryUnreachable as exc:
            cached = _cached_versions(root)
            if version is not None or not cached:
                raise
            warnings.warn(f"{exc} Using {cached[-1]}, the newest version in the local copy {root}.", stacklevel=3)
            return cls(repo, cached[-1], _read_json(root / cached[-1] / "MANIFEST.json"), remote, root)
        path = root / record.version / "MANIFEST.json"
        release = cls(repo, record.version, {}, remote, root, source)
        if not path.is_file():
            fetched = release.fetch("MANIFEST.json")
            manifest = _read_json(fetched)
            if manifest.get("version") != record.version:
                fetched.unlink()
                raise _error(
                    f"{repo} at {record.version} holds a MANIFEST.json of {manifest.get('version')!r}: the release "
                    "index or tag points at the wrong data.dvc."
                )
            fetched.rename(path)
        release.manifest = _read_json(path)
        return release

    @property
    def files(self) -> dict[str, str]:
        return self.manifest["files"]

    def tables(self) -> pd.DataFrame:
        """Backbone, view, dims, genes, precision, file and sha256 of every gene embedding table the release holds."""
        rows = [
            {
                "backbone": model.get("backbone"),
                "view": model.get("view"),
                "dims": model.get("dims"),
                "genes": model.get("n_genes"),
                "precision": model.get("precision"),
                "file": model["file"],
                "sha256": self.files.get(model["file"]),
            }
            for model in self.manifest.get("models", [])
            if str(model.get("file", "")).startswith("embeddings/")
        ]
        columns = ["backbone", "view", "dims", "genes", "precision", "file", "sha256"]
        return pd.DataFrame(rows, columns=columns).sort_values(["backbone", "view"], ignore_index=True)

    def receipt(self, name: str) -> dict:
        """What the release records of one file: its MANIFEST.json entry, version, repository and sha256."""
        model = next((m for m in self.manifest.get("models", []) if m.get("file") == name), {})
        return {**model, "version": self.version, "repo": self.repo, "file": name, "sha256": self.files[name]}

    def path(self, name: str) -> Path:
        """The local copy of the release's file `name`, fetched through DVC when the copy is missing or damaged, and
        checked against the sha256 MANIFEST.json lists for it."""
        digest = self.files[name]
        local = self.cache / self.version / f"{digest}{Path(name).suffix}"
        if local.is_file() and _sha256(local) == digest:
            return local
        fetched = self.fetch(name)
        actual = _sha256(fetched)
        if actual != digest:
            fetched.unlink()
            raise _error(
                f"{name} of release {self.version} ({self.repo}) arrived with sha256 {actual}, but its MANIFEST.json "
                f"lists {digest}: the copy on the DVC remote is damaged, and nothing was kept. Push the release "
                "again from a clone that holds it (`dvc push`), or fetch it from another remote with remote=URL."
            )
        fetched.rename(local)
        return local

    def fetch(self, name: str) -> Path:
        """`dvc get` data/<name> of this version into a new temporary file beside its local copy."""
        from .dvc_repository import ReleaseHistory, dvc_get, release_remote

        if self.source is None:
            with ReleaseHistory.of(self.repo) as history:
                record = history.find(self.version)
                self.source = (record, history.remote_at(record.revision))
        record, committed = self.source
        directory = self.cache / self.version
        directory.mkdir(parents=True, exist_ok=True)
        staging = directory / f".{Path(name).name}.fetching-{uuid.uuid4().hex[:8]}"
        try:
            dvc_get(self.repo, record, f"data/{name}", staging, release_remote(self.repo, self.remote), committed)
        except BaseException:
            staging.unlink(missing_ok=True)
            raise
        return staging


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        path.unlink()
        raise _error(
            f"The release's MANIFEST.json ({path}) is not valid JSON ({exc}): the copy was damaged and is removed; "
            "call again to fetch it anew."
        ) from None


def _cached_versions(root: Path) -> list[str]:
    from .dvc_repository import sort_versions

    return sort_versions(p.parent.name for p in root.glob("*/MANIFEST.json"))


def _error(message: str):
    from .dvc_repository import ReleaseError

    return ReleaseError(message)


def list_embeddings(repo: str | None = None, version: str | None = None, remote: str | None = None) -> pd.DataFrame:
    """The gene embedding tables a release holds: one row per (backbone, view) with its dims, genes, precision,
    file and sha256.

    Args:
        repo: The release repository, a path or git URL (default: $GENE_ASSETS_RELEASE_REPO, else this project).
        version: A release such as ``embeddings-v3`` (default: the latest in the release index).
        remote: Fetch from this DVC remote (a directory or URL) instead of the one the release names.
    """
    return PublishedRelease.open(version, repo, remote).tables()


def load_embeddings(
    backbone: str,
    view: str = "summary",
    version: str | None = None,
    repo: str | None = None,
    remote: str | None = None,
) -> pd.DataFrame:
    """One released gene embedding table: genes × dims float32, indexed by gene symbol.

    Only that table is fetched (through DVC), and its sha256 is checked against the release's MANIFEST.json before
    it is returned. A verified copy is kept under the release cache ($GENE_ASSETS_HOME/cache/releases, else
    ~/.cache/gene_assets/releases), so a second call for the same version reads it without the network.

    Args:
        backbone: The model, e.g. ``bag-of-words`` or ``all-MiniLM-L6-v2`` (`list_embeddings` lists them).
        view: The gene text view the genes were embedded from.
        version: A release such as ``embeddings-v3`` (default: the latest in the release index).
        repo: The release repository, a path or git URL (default: $GENE_ASSETS_RELEASE_REPO, else this project).
        remote: Fetch from this DVC remote (a directory or URL) instead of the one the release names.

    Returns:
        Columns ``entrez_id`` and ``text_sha256`` (text backbones), then the dimensions ``0 … dims-1``;
        ``.attrs["receipt"]`` holds the table's MANIFEST.json entry (provenance, version, sha256).
    """
    from ..embeddings.table import GeneEmbeddings

    release = PublishedRelease.open(version, repo, remote)
    name = embedding_file_name({"backbone": backbone, "view": view})
    if name not in release.files:
        held = release.tables()
        listing = ", ".join(f"{b}/{v}" for b, v in zip(held["backbone"], held["view"])) or "no embedding tables"
        raise _error(
            f"Release {release.version} of {release.repo} holds no {backbone}/{view} gene embeddings; it holds "
            f"{listing}. Pick one of those, or another version (gene_assets.list_embeddings(version=…))."
        )
    import pyarrow.parquet as pq

    table = GeneEmbeddings.from_arrow(pq.read_table(release.path(name)))
    identifiers = release.path(GENE_IDENTIFIERS) if GENE_IDENTIFIERS in release.files else None
    return embedding_frame(
        table,
        {
            **table.attrs,
            "receipt": release.receipt(name),
            "gene_identifiers": str(identifiers) if identifiers else None,
        },
    )


def embedding_frame(table, attrs: dict) -> pd.DataFrame:
    """A GeneEmbeddings table as the DataFrame load_embeddings returns."""
    frame = pd.DataFrame(table.matrix, index=pd.Index(table.genes["symbol"].astype(str), name="symbol"))
    for position, column in enumerate(c for c in META_COLUMNS if c in table.genes):
        frame.insert(position, column, table.genes[column].to_numpy())
    frame.attrs = attrs
    return frame

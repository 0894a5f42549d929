"""Atomic file writes and the parquet IO manager every asset stores its output with, on a local disk or an object
store (any fsspec URL, e.g. s3://bucket/storage, through universal-pathlib)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from dagster import (
    ConfigurableIOManager,
    DataVersion,
    InputContext,
    MetadataValue,
    MultiPartitionKey,
    MultiPartitionsDefinition,
    OutputContext,
)
from upath import UPath

from .errors import GeneAssetsError
from .parquet import parquet_table


def is_url(location: str | os.PathLike) -> bool:
    """Whether a location is a URL (s3://, gs://, https://, …) rather than a local path."""
    return re.match(r"^\w[\w+.-]*://", str(location)) is not None


def storage_path(location: str | os.PathLike) -> Path:
    """A local Path for a directory, a UPath for an fsspec URL (file:// is local)."""
    location = str(location)
    if location.startswith("file://"):
        return Path(location.removeprefix("file://"))
    return UPath(location) if is_url(location) else Path(location)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary local file that replaces `path` only if the block succeeds: renamed over it on a local disk,
    uploaded in one piece to an object store (whose key then appears whole, or not at all)."""
    if isinstance(path, UPath):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            yield Path(tmp)
            path.fs.put_file(tmp, path.path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def sha256_file(path: Path, chunk: int = 1 << 20, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


CHECKSUM_SUFFIX = ".sha256"


def checksum_path(path: Path) -> Path:
    """Where the sha256 of a stored output is kept: beside it, as `<name>.sha256`."""
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def write_stored(path: Path, write: Callable[[Path], None]) -> None:
    """A stored output file, written by `write` to a temporary path, with its sha256 beside it in `sha256sum` format
    (written first: a write interrupted between the two leaves a mismatch that the next read reports, never a
    silently different file)."""
    with atomic_path(path) as tmp:
        write(tmp)
        write_bytes_atomic(checksum_path(path), f"{sha256_file(tmp)}  {path.name}\n".encode())


def write_table(table: pa.Table, path: Path) -> None:
    """The table as parquet at `path`, with its sha256 beside it."""
    write_stored(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def partition_parts(key: str | MultiPartitionKey) -> list[str]:
    """File-system path parts for a partition key (one folder level per dimension)."""
    if isinstance(key, MultiPartitionKey):
        return [f"{dim}={value}" for dim, value in sorted(key.keys_by_dimension.items())]
    return [str(key)]


class StoredOutputError(GeneAssetsError, ValueError):
    """A stored asset output exists but cannot be read (truncated or corrupt)."""


def rematerialize_advice(path: Path, asset: str, partition: str | None) -> str:
    """What to do about a damaged stored file: delete it (and its sha256) and materialize its asset again."""
    files = [path, checksum_path(path)]
    delete = f"delete {' and '.join(map(str, files))}" if is_url(path) else f"rm -f {' '.join(map(str, files))}"
    command = f"gene-assets materialize {asset}" + (f" --partition '{partition}'" if partition else "")
    return f"Delete it and re-materialize that asset: {delete} && {command}"


def verified_bytes(path: Path, asset: str, partition: str | None = None) -> bytes:
    """The bytes of a stored output file of `asset` (and `partition`), checked against the sha256 written with them;
    a mismatch or a missing sha256 is refused, the file left as found."""
    if not path.exists():
        raise FileNotFoundError(f"No stored output at {path}: materialize the upstream asset first.")
    data = path.read_bytes()
    recorded = checksum_path(path)
    if not recorded.exists():
        rehash = (
            "" if is_url(path) else f" Or, if you trust it: cd {path.parent} && sha256sum {path.name} > {recorded.name}"
        )
        raise StoredOutputError(
            f"Stored output of {asset}{f' {partition}' if partition else ''} ({path}) has no sha256 beside it "
            f"({recorded}): it cannot be checked, so nothing was read from it. "
            f"{rematerialize_advice(path, asset, partition)}.{rehash}"
        )
    if hashlib.sha256(data).hexdigest() != (recorded.read_text().split() or [""])[0]:
        raise StoredOutputError(
            f"Stored output of {asset}{f' {partition}' if partition else ''} ({path}) does not match the sha256 "
            f"written with it ({recorded}): it changed after it was written (bit rot, a partial copy or an edit); "
            f"nothing was read from it. {rematerialize_advice(path, asset, partition)}"
        )
    return data


def read_stored_table(path: Path, asset: str, partition: str | None = None, columns: list[str] | None = None):
    """A stored parquet output as an Arrow table, verified (verified_bytes) and parsed; unreadable bytes are a
    StoredOutputError naming the file and what to do."""
    data = verified_bytes(path, asset, partition)
    try:
        return parquet_table(data, columns)
    except pa.ArrowException as exc:
        raise StoredOutputError(
            f"Stored output of {asset}{f' {partition}' if partition else ''} ({path}) cannot be read ({exc}): the "
            f"file is truncated or corrupt. {rematerialize_advice(path, asset, partition)}"
        ) from exc


def stored_digest(paths: list[Path]) -> str:
    """The content digest of an output: the sha256 written beside its file (the sha256 of those, for two files)."""
    digests = [(checksum_path(path).read_text().split() or [""])[0] for path in paths]
    return digests[0] if len(digests) == 1 else hashlib.sha256("\n".join(digests).encode()).hexdigest()


def record_data_version(context: OutputContext, paths: list[Path]) -> None:
    """The output's data version is the content digest of what was stored, unless the asset returned its own: a
    re-materialization that writes the same bytes keeps its data version, so nothing downstream becomes stale.
    (Dagster takes a data version set during the step as the asset's; an IO manager reaches it through the step.)"""
    step = context._step_context  # None for an output context built outside a run (nothing records a version)
    if step is not None and context.has_asset_key and not step.has_data_version(context.asset_key):
        step.set_data_version(context.asset_key, DataVersion(stored_digest(paths)))


def record_output_settings(context: OutputContext) -> None:
    """The config and resource settings the output was computed with (versions.output_settings), as metadata."""
    from .versions import output_settings  # versions reads files with this module's sha256_file

    step = context._step_context
    if step is not None and context.has_asset_key:
        settings = output_settings(context.op_def.compute_fn.decorated_fn, step.op_config, step.resources)
        context.add_output_metadata({"output_settings": MetadataValue.json(settings)})


class ParquetIOManager(ConfigurableIOManager):
    """Stores DataFrames and Arrow-convertible objects as parquet under `base_dir`.

    Objects other than DataFrames provide `to_arrow()` and a classmethod `from_arrow()`; objects that also provide
    `to_anndata()` are written as an h5ad beside the parquet file. Every file gets its sha256 beside it
    (write_stored), and every read checks it: the h5ad copy's too, whenever its output is loaded.
    Loading a multi-partition input returns {partition key: object} for the partitions that exist; with the input
    metadata `{"lazy": True}` each partition is read only when it is looked up.
    """

    base_dir: str

    def stored_path(self, asset_key_path: list[str], partition_key=None) -> Path:
        """Where the parquet file of an asset (and partition) is stored."""
        parts = list(asset_key_path)
        if partition_key is not None:
            parts += partition_parts(partition_key)
        return storage_path(self.base_dir).joinpath(*parts).with_suffix(".parquet")

    def handle_output(self, context: OutputContext, obj) -> None:
        if obj is None:
            return
        key = context.asset_partition_key if context.has_asset_partitions else None
        path = self.stored_path(context.asset_key.path, key)
        if isinstance(obj, pd.DataFrame):
            table = pa.Table.from_pandas(obj, preserve_index=False)
        else:
            table = obj.to_arrow()
        type_name = f"{type(obj).__module__}:{type(obj).__qualname__}"
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), b"gene_assets.type": type_name.encode()}
        )
        write_table(table, path)
        context.add_output_metadata({"path": MetadataValue.path(str(path))})
        stored = [path]
        if hasattr(obj, "to_anndata"):
            h5ad = path.with_suffix(".h5ad")
            write_stored(h5ad, obj.to_anndata().write_h5ad)
            context.add_output_metadata({"h5ad_path": MetadataValue.path(str(h5ad))})
            stored.append(h5ad)
        record_data_version(context, stored)
        record_output_settings(context)

    def load_input(self, context: InputContext):
        asset_key_path = context.asset_key.path
        if context.has_asset_partitions:
            keys = context.asset_partition_keys
            partitions_def = context.asset_partitions_def
            if context.has_partition_key and len(keys) == 1:
                return self.load(asset_key_path, _as_key(partitions_def, keys[0]))
            stored = {key: _as_key(partitions_def, key) for key in keys}
            stored = {key: k for key, k in stored.items() if self.stored_path(asset_key_path, k).exists()}
            lazy = (context.definition_metadata or {}).get("lazy", False)
            found = (
                LazyPartitions(stored, functools.partial(self.load, asset_key_path))
                if lazy
                else {key: self.load(asset_key_path, k) for key, k in stored.items()}
            )
            missing = len(keys) - len(found)
            if missing:
                context.log.info(
                    f"{'/'.join(asset_key_path)}: {len(found)} partitions available, {missing} not materialized"
                )
            return found
        return self.load(asset_key_path)

    def load(self, asset_key_path: list[str], partition_key=None, columns: list[str] | None = None):
        """The stored object of an asset (and partition), every file of it checked against the sha256 written with
        it (an h5ad copy beside the parquet included); also for reads outside a run (the CLI)."""
        path = self.stored_path(asset_key_path, partition_key)
        asset, partition = "/".join(asset_key_path), None if partition_key is None else str(partition_key)
        table = read_stored_table(path, asset, partition, columns)
        if path.with_suffix(".h5ad").exists():
            verified_bytes(path.with_suffix(".h5ad"), asset, partition)
        type_name = (table.schema.metadata or {}).get(b"gene_assets.type", b"").decode()
        if columns or not type_name or type_name.startswith("pandas."):
            return table.to_pandas()
        module_name, _, qualname = type_name.partition(":")
        cls = getattr(importlib.import_module(module_name), qualname)
        return cls.from_arrow(table)


class LazyPartitions(Mapping):
    """{partition key: object} whose objects are read from their files when looked up."""

    def __init__(self, keys: dict, read):
        self._keys = {str(key): value for key, value in keys.items()}
        self._read = read

    def __getitem__(self, key):
        return self._read(self._keys[str(key)])

    def __contains__(self, key) -> bool:
        return str(key) in self._keys

    def __iter__(self):
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def _as_key(partitions_def, key: str):
    """Turn a serialized multi-partition key back into a MultiPartitionKey so its path can be built."""
    if isinstance(partitions_def, MultiPartitionsDefinition) and not isinstance(key, MultiPartitionKey):
        return partitions_def.get_partition_key_from_str(key)
    return key

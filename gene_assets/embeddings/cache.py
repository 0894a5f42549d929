"""Embedding cache: text-backbone vectors keyed by everything that determines them, so no text is embedded twice.

Layout under the cache root (`$GENE_ASSETS_EMBEDDING_CACHE`, default `gene_assets_home()/cache/embeddings`):

    <backbone>-<settings digest>/settings.json               the vector settings the digest covers
    <backbone>-<settings digest>/<view>/<sha256>.parquet     a shard: columns text_sha256, embedding

The settings digest covers the model id, revision, weights sha256, prompt, max length, pooling, dimensions,
precision and the sentence-transformers major version; inside it an entry is keyed by (view, sha256 of the text).
A shard is written once, atomically, and named by the sha256 of its bytes, which every read checks: a shard that
fails the check is logged, deleted, and its texts embedded again. Shards are never modified, so concurrent writers
only add files; when a view has more than MAX_SHARDS shards they are merged into one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..parquet import parquet_table
from ..settings import EMBEDDING_CACHE_ENV, gene_assets_home
from ..storage import is_url, storage_path, write_bytes_atomic

FORMAT_VERSION = 1
MAX_SHARDS = 16
"""A view with more shards than this is compacted into one after a write."""
CHECKPOINT_TEXTS = 2048
"""Texts encoded between two shard writes: what an interrupted run can lose."""

logger = logging.getLogger(__name__)


def embedding_cache_dir() -> Path:
    """Root of the embedding cache: $GENE_ASSETS_EMBEDDING_CACHE (a directory, or an fsspec URL such as
    s3://bucket/cache that workers without a shared volume can share), else gene_assets_home()/cache/embeddings."""
    location = os.environ.get(EMBEDDING_CACHE_ENV)
    if location and is_url(location):
        return storage_path(location)
    return Path(location or gene_assets_home() / "cache" / "embeddings").resolve()


@dataclass
class CachedEmbedding:
    """Vectors for a texts table, one row per text, and where they came from."""

    matrix: np.ndarray
    from_cache: int
    embedded: int


@dataclass
class Shard:
    path: Path
    keys: pd.Index
    matrix: np.ndarray


class EmbeddingCache:
    """Vectors of one backbone with fixed vector settings, stored per text view."""

    def __init__(self, settings: dict, root: Path | None = None, log=logger):
        self.settings = {**settings, "cache_format": FORMAT_VERSION}
        digest = hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()[:16]
        self.directory = (storage_path(root) if root else embedding_cache_dir()) / f"{settings['backbone']}-{digest}"
        self.dims = int(settings["dims"])
        self.log = log

    def embed(
        self,
        texts: pd.DataFrame,
        view: str,
        encode: Callable[[pd.DataFrame], np.ndarray],
        checkpoint_texts: int = CHECKPOINT_TEXTS,
        expect: Callable[[int], None] | None = None,
    ) -> CachedEmbedding:
        """Vectors for `texts` (needs a text_sha256 column): cached ones are read, the others encoded and stored.

        Texts are encoded in fixed checkpoints of `checkpoint_texts` distinct texts (cut from the full list, so a
        checkpoint is the same set whatever is cached), each stored as one shard as soon as it is done: an
        interrupted run loses at most one checkpoint, and re-running it encodes exactly what an uninterrupted run
        would have. `expect` is told how many texts will be encoded and their characters (the work the time-left
        estimate is based on)."""
        keys = texts["text_sha256"].to_numpy()
        cached_keys, cached = self.lookup(view, keys)
        positions = cached_keys.get_indexer(keys)
        matrix = np.empty((len(texts), self.dims), dtype=np.float32)
        matrix[positions >= 0] = cached[positions[positions >= 0]]
        distinct = texts.drop_duplicates("text_sha256")
        cached_set = set(cached_keys)
        checkpoints = [distinct.iloc[i : i + checkpoint_texts] for i in range(0, len(distinct), checkpoint_texts)]
        pending = [c[~c["text_sha256"].isin(cached_set)] for c in checkpoints]
        pending = [c for c in pending if len(c)]
        to_embed = sum(len(c) for c in pending)
        self.log.info(
            f"embedding cache: {len(distinct) - to_embed:,} of {len(distinct):,} distinct texts cached; "
            f"{to_embed:,} to embed in {len(pending)} checkpoints"
        )
        if expect:
            expect(to_embed, int(sum(c["text"].str.len().sum() for c in pending)) if "text" in texts else 0)
        fresh_keys, fresh = [], []
        for number, chunk in enumerate(pending, 1):
            vectors = np.asarray(encode(chunk), dtype=np.float32)
            self.store(view, chunk["text_sha256"].tolist(), vectors)
            fresh_keys += chunk["text_sha256"].tolist()
            fresh.append(vectors)
            self.log.info(f"embedding cache: checkpoint {number}/{len(pending)} stored ({len(chunk)} texts)")
        if fresh:
            rows = pd.Index(fresh_keys).get_indexer(keys[positions < 0])
            matrix[positions < 0] = np.concatenate(fresh)[rows]
        return CachedEmbedding(matrix=matrix, from_cache=int((positions >= 0).sum()), embedded=len(fresh_keys))

    def lookup(self, view: str, keys) -> tuple[pd.Index, np.ndarray]:
        """The cached entries among `keys`: their keys (unique) and vectors, row for row."""
        wanted = pd.Index(pd.unique(np.asarray(keys)))
        found_keys, found = [], []
        for shard in self.shards(view):
            hits = shard.keys.isin(wanted)
            found_keys.append(shard.keys[hits])
            found.append(shard.matrix[hits])
        if not found:
            return pd.Index([], dtype=object), np.zeros((0, self.dims), dtype=np.float32)
        all_keys, matrix = found_keys[0].append(found_keys[1:]), np.concatenate(found)
        first = ~all_keys.duplicated()
        return all_keys[first], matrix[first]

    def store(self, view: str, keys: list[str], matrix: np.ndarray) -> Path:
        """Write one shard of (key, vector) rows; compact the view when it has too many shards."""
        path = self.write_shard(view, keys, matrix)
        if len(self.shard_paths(view)) > MAX_SHARDS:
            self.compact(view)
        return path

    def write_shard(self, view: str, keys: list[str], matrix: np.ndarray) -> Path:
        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        if matrix.shape != (len(keys), self.dims):
            raise ValueError(f"{len(keys)} keys need a ({len(keys)}, {self.dims}) matrix, got {matrix.shape}.")
        settings_file = self.directory / "settings.json"
        if not settings_file.exists():
            write_bytes_atomic(settings_file, json.dumps(self.settings, indent=2, sort_keys=True).encode())
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), type=pa.float32()), self.dims)
        table = pa.table({"text_sha256": pa.array(list(keys), type=pa.string()), "embedding": vectors})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="none")
        data = sink.getvalue().to_pybytes()
        path = self.directory / view / f"{hashlib.sha256(data).hexdigest()}.parquet"
        write_bytes_atomic(path, data)
        return path

    def shard_paths(self, view: str) -> list[Path]:
        return sorted((self.directory / view).glob("*.parquet"))

    def shards(self, view: str) -> list[Shard]:
        """Every shard of the view that passes its checksum; corrupted ones are deleted."""
        shards = []
        for path in self.shard_paths(view):
            try:
                data = path.read_bytes()
            except FileNotFoundError:  # merged away by a concurrent compaction
                continue
            shard = self.verified(path, data)
            if shard is not None:
                shards.append(shard)
        return shards

    def verified(self, path: Path, data: bytes) -> Shard | None:
        problem = None
        if hashlib.sha256(data).hexdigest() != path.stem:
            problem = "its sha256 does not match its name"
        else:
            try:
                table = parquet_table(data)
                keys = pd.Index(table.column("text_sha256").to_numpy(zero_copy_only=False))
                column = table.column("embedding").combine_chunks()
                matrix = column.flatten().to_numpy().reshape(len(keys), self.dims)
                return Shard(path=path, keys=keys, matrix=matrix)
            except (pa.ArrowException, KeyError, ValueError) as exc:
                problem = f"it cannot be read ({type(exc).__name__}: {exc})"
        self.log.warning(
            f"Embedding cache shard {path} is corrupted: {problem}. Deleted; its texts will be embedded again."
        )
        path.unlink(missing_ok=True)
        return None

    def compact(self, view: str) -> None:
        """Merge the view's shards into one (first vector per key), then delete the merged shards."""
        shards = self.shards(view)
        if len(shards) < 2:
            return
        keys = shards[0].keys.append([s.keys for s in shards[1:]])
        matrix = np.concatenate([s.matrix for s in shards])
        first = ~keys.duplicated()
        merged = self.write_shard(view, keys[first].tolist(), matrix[first])
        for shard in shards:
            if shard.path != merged:
                shard.path.unlink(missing_ok=True)

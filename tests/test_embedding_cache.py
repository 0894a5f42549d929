"""Embedding cache: hits and misses, incremental re-embedding, corruption, atomic and concurrent writes."""

import hashlib
import logging
import multiprocessing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dagster import DagsterInstance, build_asset_context

from gene_assets.embeddings import cache as cache_module
from gene_assets.embeddings.assets import GeneEmbeddingsConfig, gene_embeddings
from gene_assets.embeddings.cache import MAX_SHARDS, EmbeddingCache, embedding_cache_dir
from gene_assets.embeddings.device import EmbeddingDevice
from gene_assets.embeddings.partitions import backbone_view_key
from gene_assets.settings import EMBEDDING_CACHE_ENV as CACHE_DIR_ENV
from gene_assets.texts.views import build_view

DIMS = 8
SETTINGS = {"backbone": "fake", "model_id": "fake/model", "revision": "r1", "precision": "fp32", "dims": DIMS}


def text_table(texts: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "entrez_id": range(1, len(texts) + 1),
            "text": texts,
            "source": "refseq_summary",
            "text_sha256": [hashlib.sha256(t.encode()).hexdigest() for t in texts],
        }
    )


def fake_vector(text: str) -> np.ndarray:
    return np.random.default_rng(list(text.encode())).standard_normal(DIMS).astype(np.float32)


class CountingEncoder:
    """Deterministic vectors per text; remembers which texts it was asked to embed."""

    def __init__(self):
        self.embedded: list[str] = []

    def __call__(self, texts: pd.DataFrame) -> np.ndarray:
        self.embedded += texts["text"].tolist()
        return np.stack([fake_vector(t) for t in texts["text"]])


def expected(texts: pd.DataFrame) -> np.ndarray:
    return np.stack([fake_vector(t) for t in texts["text"]])


@pytest.fixture
def cache(tmp_path) -> EmbeddingCache:
    return EmbeddingCache(SETTINGS, root=tmp_path / "embeddings")


def test_hits_and_misses_are_counted(cache):
    encoder = CountingEncoder()
    first = text_table([f"text {i}" for i in range(10)])
    cold = cache.embed(first, "summary", encoder)
    assert (cold.from_cache, cold.embedded) == (0, 10)
    warm = cache.embed(first, "summary", encoder)
    assert (warm.from_cache, warm.embedded) == (10, 0)
    assert np.array_equal(warm.matrix, cold.matrix) and np.array_equal(cold.matrix, expected(first))

    mixed = text_table([f"text {i}" for i in range(5, 15)])
    result = cache.embed(mixed, "summary", encoder)
    assert (result.from_cache, result.embedded) == (5, 5)
    assert np.array_equal(result.matrix, expected(mixed))
    assert len(encoder.embedded) == 15


def test_one_percent_changed_embeds_exactly_those(cache):
    texts = text_table([f"Gene G{i}, gene {i}. It is gene number {i}." for i in range(1000)])
    cache.embed(texts, "summary", CountingEncoder())
    changed = texts.copy()
    rows = np.random.default_rng(0).choice(len(texts), 10, replace=False)
    changed.loc[rows, "text"] = changed.loc[rows, "text"] + " Revised."
    changed["text_sha256"] = [hashlib.sha256(t.encode()).hexdigest() for t in changed["text"]]

    encoder = CountingEncoder()
    result = cache.embed(changed, "summary", encoder)
    assert sorted(encoder.embedded) == sorted(changed.loc[rows, "text"])
    assert (result.from_cache, result.embedded) == (990, 10)
    assert np.array_equal(result.matrix, expected(changed))


def test_duplicate_texts_are_embedded_once(cache):
    encoder = CountingEncoder()
    texts = text_table(["same", "same", "other"])
    result = cache.embed(texts, "summary", encoder)
    assert sorted(encoder.embedded) == ["other", "same"] and result.embedded == 2
    assert np.array_equal(result.matrix, expected(texts))


def test_views_and_settings_are_separate_entries(tmp_path, cache):
    texts = text_table(["a", "b"])
    cache.embed(texts, "summary", CountingEncoder())
    assert cache.embed(texts, "card", CountingEncoder()).embedded == 2
    other_precision = EmbeddingCache({**SETTINGS, "precision": "bf16"}, root=tmp_path / "embeddings")
    assert other_precision.directory != cache.directory
    assert other_precision.embed(texts, "summary", CountingEncoder()).embedded == 2
    assert cache.embed(texts, "summary", CountingEncoder()).from_cache == 2


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "empty"])
def test_corrupted_shard_is_dropped_and_recomputed(cache, caplog, damage):
    texts = text_table([f"text {i}" for i in range(20)])
    first = cache.embed(texts, "summary", CountingEncoder())
    [shard] = cache.shard_paths("summary")
    data = bytearray(shard.read_bytes())
    if damage == "flip_byte":
        data[len(data) // 2] ^= 0xFF
    elif damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data = bytearray()
    shard.write_bytes(bytes(data))

    encoder = CountingEncoder()
    with caplog.at_level(logging.WARNING, logger=cache_module.__name__):
        again = cache.embed(texts, "summary", encoder)
    assert "is corrupted" in caplog.text and shard.name in caplog.text
    assert (again.from_cache, again.embedded) == (0, 20)
    assert np.array_equal(again.matrix, first.matrix)
    assert cache.shard_paths("summary") == [shard]  # same vectors, same content-addressed name, now whole again
    assert hashlib.sha256(shard.read_bytes()).hexdigest() == shard.stem
    assert cache.embed(texts, "summary", CountingEncoder()).from_cache == 20


def test_failed_write_leaves_no_partial_shard(cache, monkeypatch):
    texts = text_table([f"text {i}" for i in range(20)])
    write_bytes = Path.write_bytes

    def half_a_shard_then_fail(path, data):
        if ".parquet." not in path.name:  # the settings file is written normally
            return write_bytes(path, data)
        write_bytes(path, data[: len(data) // 2])
        raise OSError("No space left on device")

    monkeypatch.setattr(Path, "write_bytes", half_a_shard_then_fail)
    with pytest.raises(OSError, match="No space left"):
        cache.store("summary", texts["text_sha256"].tolist(), expected(texts))
    monkeypatch.undo()

    assert [p.name for p in (cache.directory / "summary").iterdir()] == []
    assert (cache.embed(texts, "summary", CountingEncoder()).embedded) == 20


def test_many_writes_are_compacted(cache):
    for start in range(0, 100, 5):
        cache.embed(text_table([f"text {i}" for i in range(start, start + 5)]), "summary", CountingEncoder())
    assert len(cache.shard_paths("summary")) <= MAX_SHARDS
    everything = text_table([f"text {i}" for i in range(100)])
    result = cache.embed(everything, "summary", CountingEncoder())
    assert result.from_cache == 100 and np.array_equal(result.matrix, expected(everything))


def store_batches(root: str, worker: int) -> None:
    cache = EmbeddingCache(SETTINGS, root=Path(root))
    for batch in range(12):
        texts = text_table([f"worker {worker} batch {batch} text {i}" for i in range(200)] + ["shared text"])
        cache.store("summary", texts["text_sha256"].tolist(), expected(texts))


@pytest.mark.slow
def test_concurrent_writers_and_reader_see_only_whole_shards(tmp_path, caplog):
    root = tmp_path / "embeddings"
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=store_batches, args=(str(root), worker)) for worker in range(2)]
    for writer in writers:
        writer.start()
    reader = EmbeddingCache(SETTINGS, root=root)
    with caplog.at_level(logging.WARNING, logger=cache_module.__name__):
        while any(w.is_alive() for w in writers):
            keys, matrix = reader.lookup("summary", [hashlib.sha256(b"shared text").hexdigest()])
            assert len(keys) == len(matrix) <= 1
    assert all(w.exitcode == 0 for w in writers)
    assert "corrupted" not in caplog.text
    assert not list((reader.directory / "summary").glob(".*"))  # no temporary files left behind

    everything = text_table([f"worker {w} batch {b} text {i}" for w in range(2) for b in range(12) for i in range(200)])
    result = reader.embed(everything, "summary", CountingEncoder())
    assert result.from_cache == len(everything)
    assert np.array_equal(result.matrix, expected(everything))


def test_cache_directory_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "elsewhere"))
    assert embedding_cache_dir() == (tmp_path / "elsewhere").resolve()
    assert EmbeddingCache(SETTINGS).directory.parent == (tmp_path / "elsewhere").resolve()
    monkeypatch.delenv(CACHE_DIR_ENV)
    monkeypatch.setenv("GENE_ASSETS_HOME", str(tmp_path / "home"))
    assert embedding_cache_dir() == (tmp_path / "home" / "cache" / "embeddings").resolve()


@pytest.fixture
def summary_texts(data_dir) -> pd.DataFrame:
    genes = pd.read_parquet(data_dir / "gene_text/human_genes_ncbi_refseq_summaries.parquet")
    genes = genes.dropna(subset=["refseq_summary"]).head(30).rename(columns={"refseq_summary": "summary"})
    texts = build_view(genes, "summary")
    texts["text_sha256"] = [hashlib.sha256(t.encode()).hexdigest() for t in texts["text"]]
    return texts


def materialize_partition(backbone: str, texts: pd.DataFrame):
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("backbone", [backbone])
        context = build_asset_context(
            partition_key=backbone_view_key(backbone, "summary"),
            instance=instance,
            resources={"embedding_device": EmbeddingDevice(device="cpu", cpu_precision="bf16")},
        )
        output, check = list(
            gene_embeddings(context, config=GeneEmbeddingsConfig(), gene_texts=texts, gene_catalog=pd.DataFrame())
        )
    assert check.passed
    return output


def test_asset_reads_unchanged_texts_from_cache(monkeypatch, tmp_path, summary_texts):
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    cold = materialize_partition("all-MiniLM-L6-v2", summary_texts)
    assert (cold.metadata["texts_from_cache"].value, cold.metadata["texts_embedded"].value) == (0, 30)
    assert cold.metadata["precision"].text == "bf16" and cold.metadata["device"].text == "cpu"
    assert str(tmp_path / "cache") in cold.metadata["embedding_cache"].path

    changed = summary_texts.copy()
    changed.loc[0, "text"] += " Revised."
    changed.loc[0, "text_sha256"] = hashlib.sha256(changed.loc[0, "text"].encode()).hexdigest()
    warm = materialize_partition("all-MiniLM-L6-v2", changed)
    assert (warm.metadata["texts_from_cache"].value, warm.metadata["texts_embedded"].value) == (29, 1)
    assert np.array_equal(warm.value.matrix[1:], cold.value.matrix[1:])
    assert not np.array_equal(warm.value.matrix[0], cold.value.matrix[0])


def test_bag_of_words_is_not_cached(monkeypatch, tmp_path, summary_texts):
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    output = materialize_partition("bag-of-words", summary_texts)
    assert output.metadata["texts_embedded"].value == 30 and "embedding_cache" not in output.metadata
    assert not (tmp_path / "cache").exists()


def test_cache_on_s3_is_shared_verified_and_compacted(s3_bucket, monkeypatch):
    """$GENE_ASSETS_EMBEDDING_CACHE as an s3:// URL: a second process's cache finds every vector, a damaged shard is
    deleted and re-embedded, and compaction keeps the shard count bounded there too."""
    import fsspec

    monkeypatch.setenv(CACHE_DIR_ENV, f"s3://{s3_bucket}/cache")
    s3 = fsspec.filesystem("s3")
    texts = text_table([f"text {i}" for i in range(40)])
    first = EmbeddingCache(SETTINGS)
    assert str(first.directory).startswith(f"s3://{s3_bucket}/cache/fake-")
    first.embed(texts, "summary", CountingEncoder(), checkpoint_texts=10)
    assert len(first.shard_paths("summary")) == 4
    encoder = CountingEncoder()
    warm = EmbeddingCache(SETTINGS).embed(texts, "summary", encoder)
    assert (warm.from_cache, encoder.embedded) == (40, []) and np.array_equal(warm.matrix, expected(texts))
    damaged = first.shard_paths("summary")[0]
    s3.pipe_file(damaged.path, b"not a shard")
    again = CountingEncoder()
    result = EmbeddingCache(SETTINGS).embed(texts, "summary", again)
    assert len(again.embedded) == 10 and np.array_equal(result.matrix, expected(texts))
    assert hashlib.sha256(s3.cat_file(damaged.path)).hexdigest() == damaged.stem  # deleted, then written whole again
    many = text_table([f"more {i}" for i in range(MAX_SHARDS * 2)])
    first.embed(many, "summary", CountingEncoder(), checkpoint_texts=2)
    assert len(first.shard_paths("summary")) <= MAX_SHARDS
    assert not [p for p in s3.find(f"{s3_bucket}/cache") if p.endswith(".tmp")]

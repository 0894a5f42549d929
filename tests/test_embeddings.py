"""Backbone registry, encoders and the embedding table format."""

import numpy as np
import pandas as pd
import pytest

from gene_assets.embeddings.backbone import Backbone
from gene_assets.embeddings.device import Placement
from gene_assets.embeddings.encoders import (
    BackboneUnavailableError,
    SentenceTransformerEncoder,
    length_sorted_batches,
    load_encoder,
    model_source,
)
from gene_assets.embeddings.registry import BACKBONES, UnknownBackboneError, get_backbone
from gene_assets.embeddings.table import EmbeddingTableError, GeneEmbeddings

GENES = pd.DataFrame({"entrez_id": [7157, 672, 1], "symbol": ["TP53", "BRCA1", "A1BG"]})


def test_table_round_trips_through_arrow():
    matrix = np.arange(12, dtype=np.float32).reshape(3, 4)
    table = GeneEmbeddings(GENES, matrix, {"backbone": "x", "dims": 4})
    back = GeneEmbeddings.from_arrow(table.to_arrow())
    assert back.attrs == {"backbone": "x", "dims": 4}
    assert back.matrix.dtype == np.float32 and np.array_equal(back.matrix, matrix)
    assert back.genes.equals(GENES)
    assert np.array_equal(back.aligned([1, 7157]), matrix[[2, 0]])


@pytest.mark.parametrize(
    "matrix, attrs, message",
    [
        (np.array([[0, np.nan], [1, 1], [2, 2]], dtype=np.float32), {}, "NaN or infinite values .*TP53"),
        (np.array([[0, np.inf], [1, 1], [2, 2]], dtype=np.float32), {}, "NaN or infinite"),
        (np.zeros((3, 2), dtype=np.float32), {"dims": 384}, "2 dimensions, expected 384"),
        (np.zeros((2, 2), dtype=np.float32), {}, "does not match 3 genes"),
    ],
)
def test_table_rejects_bad_vectors(matrix, attrs, message):
    with pytest.raises(EmbeddingTableError, match=message):
        GeneEmbeddings(GENES, matrix, attrs)


def test_table_rejects_duplicate_genes():
    genes = pd.DataFrame({"entrez_id": [7157, 7157], "symbol": ["TP53", "TP53"]})
    with pytest.raises(EmbeddingTableError, match="duplicate genes .*7157"):
        GeneEmbeddings(genes, np.zeros((2, 2)))


def texts_frame(entrez_ids, texts, sources=None) -> pd.DataFrame:
    return pd.DataFrame({"entrez_id": entrez_ids, "text": texts, "source": sources or ["refseq_summary"] * len(texts)})


def test_text_availability_control_sees_only_fallback_flag_and_length():
    encoder = load_encoder(get_backbone("text-availability"))
    texts = texts_frame(
        [1, 2, 3],
        ["Gene A, alpha. It binds DNA in the nucleus.", "Gene B, beta.", "Gene C."],
        ["refseq_summary", "full_name_fallback", "symbol_fallback"],
    )
    features = encoder.embed(texts)
    assert features.shape == (3, 2)
    assert features[:, 0].tolist() == [1.0, 0.0, 0.0]
    assert np.allclose(features[:, 1], np.log1p([9, 3, 2]))


def test_random_control_is_fixed_per_gene_in_any_subset():
    encoder = load_encoder(get_backbone("random-gaussian"))
    full = encoder.embed(texts_frame([7157, 672, 1], ["a", "b", "c"]))
    subset = encoder.embed(texts_frame([1, 7157], ["c", "a"]))
    assert full.shape == (3, 384) and full.dtype == np.float32
    assert np.array_equal(subset, full[[2, 0]])
    assert abs(full.mean()) < 0.2 and 0.8 < full.std() < 1.2


def test_bag_of_words_has_1024_count_features():
    encoder = load_encoder(get_backbone("bag-of-words"))
    texts = ["tumor suppressor protein binds DNA", "DNA repair protein", "glycoprotein in plasma"]
    matrix = encoder.embed(texts_frame([1, 2, 3], texts))
    assert matrix.shape == (3, 1024) and matrix.dtype == np.float32
    assert matrix.sum() == 10  # every non-stop word counted once


@pytest.fixture(scope="module")
def summary_sample(data_dir) -> pd.DataFrame:
    """Real RefSeq summaries as the summary view writes them: 20 zinc-finger genes (ZNF*) among 250 others (fixed
    samples)."""
    genes = pd.read_parquet(data_dir / "gene_text/human_genes_ncbi_refseq_summaries.parquet")
    genes = genes.dropna(subset=["refseq_summary"])
    zinc = genes["symbol"].str.match(r"ZNF\d")
    genes = pd.concat([genes[zinc].sample(20, random_state=0), genes[~zinc].sample(250, random_state=0)])
    texts = [f"Gene {g.symbol}, {g.full_name}. {g.refseq_summary}" for g in genes.itertuples()]
    return texts_frame(genes["entrez_id"].tolist(), texts).assign(symbol=genes["symbol"].tolist())


def test_tfidf_is_deterministic_unit_length_and_groups_gene_families(summary_sample):
    encoder = load_encoder(get_backbone("tfidf"))
    vectors = encoder.embed(summary_sample)
    assert vectors.shape == (270, 1024) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert np.array_equal(vectors, encoder.embed(summary_sample))  # same texts, same vectors
    nearest = np.argsort(-(vectors @ vectors.T), axis=1)[:, 1]  # [:, 0] is the text itself
    is_zinc = summary_sample["symbol"].str.startswith("ZNF").to_numpy()
    assert is_zinc[nearest[is_zinc]].mean() > 0.8  # 7% of the other texts are zinc fingers


def test_tfidf_pads_a_vocabulary_smaller_than_its_dimensions():
    vectors = load_encoder(get_backbone("tfidf")).embed(
        texts_frame([1, 2, 3], ["tumor suppressor protein binds DNA", "DNA repair protein", "glycoprotein in plasma"])
    )
    assert vectors.shape == (3, 1024) and not vectors[:, 2:].any()  # 3 texts: at most 2 components
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


def test_minilm_loads_verified_packaged_weights_and_embeds():
    encoder = load_encoder(get_backbone("all-MiniLM-L6-v2"))
    vectors = encoder.embed(
        texts_frame([1, 2, 3], ["TP53 tumor suppressor", "tumor protein p53", "olfactory receptor"])
    )
    assert vectors.shape == (3, 384)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert unit[0] @ unit[1] > unit[0] @ unit[2]


@pytest.fixture(scope="module")
def real_summaries(data_dir) -> pd.DataFrame:
    """50 real summary texts: the 10 longest (beyond MiniLM's 256 tokens) and 40 others, in shuffled order."""
    genes = pd.read_parquet(data_dir / "gene_text/human_genes_ncbi_refseq_summaries.parquet")
    genes = genes.dropna(subset=["refseq_summary"])
    genes = genes.assign(length=genes["refseq_summary"].str.len()).sort_values("length")
    chosen = pd.concat([genes.tail(10), genes.head(-10).sample(40, random_state=0)]).sample(frac=1, random_state=1)
    texts = [f"Gene {g.symbol}, {g.full_name}. {g.refseq_summary}" for g in chosen.itertuples()]
    return texts_frame(chosen["entrez_id"].tolist(), texts)


@pytest.fixture(scope="module")
def plain_minilm():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model_source(get_backbone("all-MiniLM-L6-v2")), device="cpu")


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_fast_path_matches_plain_encode_row_for_row(real_summaries, plain_minilm):
    encoder = load_encoder(get_backbone("all-MiniLM-L6-v2"), Placement("cpu", "bf16", 4096))
    tokens = encoder.token_lengths(real_summaries["text"].tolist())
    untruncated = [len(ids) for ids in plain_minilm.tokenizer(real_summaries["text"].tolist())["input_ids"]]
    assert sum(n > 256 for n in untruncated) >= 10 and tokens.max() == 256

    fast = encoder.embed(real_summaries)
    plain = plain_minilm.encode(real_summaries["text"].tolist())
    assert fast.shape == plain.shape == (50, 384) and fast.dtype == np.float32
    assert cosines(fast, plain).min() >= 0.99
    unit = lambda m: m / np.linalg.norm(m, axis=1, keepdims=True)  # noqa: E731
    assert (np.argmax(unit(fast) @ unit(plain).T, axis=1) == np.arange(50)).all()  # order preserved


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_int8_setting_quantizes_linear_layers(real_summaries, plain_minilm):
    import torch

    encoder = SentenceTransformerEncoder(get_backbone("all-MiniLM-L6-v2"), Placement("cpu", "int8", 4096))
    assert not any(type(m) is torch.nn.Linear for m in encoder.model.modules())
    vectors = encoder.embed(real_summaries)
    assert cosines(vectors, plain_minilm.encode(real_summaries["text"].tolist())).min() > 0.8


@pytest.mark.parametrize("budget", [1, 300, 4096])
def test_length_sorted_batches_cover_every_row_within_the_budget(budget):
    lengths = np.random.default_rng(0).integers(5, 257, size=500)
    batches = length_sorted_batches(lengths, budget)
    assert sorted(np.concatenate(batches).tolist()) == list(range(500))
    assert all(len(b) == 1 or lengths[b].max() * len(b) <= budget for b in batches)
    assert lengths[batches[0]].max() == lengths.max()  # the largest batch first
    by_length = sorted(batches, key=lambda b: (-lengths[b].max(), -lengths[b].min()))  # contiguous runs of the order
    assert all(lengths[a].min() >= lengths[b].max() for a, b in zip(by_length, by_length[1:]))


def test_weights_with_wrong_sha256_are_refused():
    tampered = Backbone(**{**get_backbone("all-MiniLM-L6-v2").__dict__, "name": "tampered", "weights_sha256": "0" * 64})
    with pytest.raises(BackboneUnavailableError, match="has sha256 53aa5117.*expected 0000"):
        model_source(tampered)


@pytest.mark.slow
def test_hub_backbone_without_weights_fails_with_offline_message(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(BackboneUnavailableError, match="bge-small-en-v1.5.*hf download BAAI/bge-small-en-v1.5"):
        load_encoder(get_backbone("bge-small-en-v1.5"))


def test_unknown_backbone_lists_known_ones():
    with pytest.raises(UnknownBackboneError, match="Unknown backbone 'nope'.*all-MiniLM-L6-v2"):
        get_backbone("nope")


def test_partition_key_rules():
    with pytest.raises(ValueError, match="not a valid partition key"):
        Backbone(name="bad|name", kind="random", dims=2)
    assert all(b.revision for b in BACKBONES.values() if b.kind == "sentence_transformers")
    assert {b.name for b in BACKBONES.values() if b.trust_remote_code} == {"llama-embed-nemotron-8b"}

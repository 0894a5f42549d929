"""Cell embeddings and cell-type tasks: streamed GenePT-w against the in-memory path and a dense reference, input
scale detection, gene harmonization, cell selection, GenePT-s sentences, the cell metrics and the leaderboard's
cell section."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from benchmarks.cell_embeddings import gene_weights, write_counts_h5ad
from gene_assets.catalog.resolver import GeneResolver
from gene_assets.cells.datasets import CellDatasetError, CellMatrix, detect_input_scale, match_genes, select_cells
from gene_assets.cells.embedding import GeneWeights, cell_sentences, genept_w_block, stream_genept_w
from gene_assets.cells.evaluation import CellProtocol, cells_digest, score_cells, umap_input
from gene_assets.leaderboard.cells import cell_gains, cell_type_table, gains_table
from gene_assets.leaderboard.report import random_band_at_chance, summarize
from gene_assets.tasks.statistics import classification_metrics, weighted_confusions


@pytest.fixture(scope="module")
def counts_h5ad(tmp_path_factory):
    path = tmp_path_factory.mktemp("cells") / "counts.h5ad"
    write_counts_h5ad(path, cells=2_500, genes=600, nonzero=40, seed=3)
    return path


def test_streamed_genept_w_equals_in_memory_and_a_dense_reference(counts_h5ad):
    weights = gene_weights(genes=600, seed=5)
    backed = CellMatrix(ad.read_h5ad(counts_h5ad, backed="r"), use_raw=False, name="counts")
    rows = np.sort(np.random.default_rng(0).choice(backed.n_obs, 1_800, replace=False))
    streamed, stats = stream_genept_w(backed, rows, "counts", weights, chunk_cells=333)
    whole = ad.read_h5ad(counts_h5ad).X
    in_memory = genept_w_block(whole, "counts", weights)[rows]
    np.testing.assert_allclose(streamed, in_memory, rtol=1e-6, atol=1e-7)
    assert stats.cells == len(rows) and stats.chunks == 8 and stats.peak_rss_bytes > 0

    dense = whole[rows[:50]].toarray().astype(np.float64)  # GenePT-w written out by hand
    expression = np.log1p(dense / dense.sum(1, keepdims=True) * 10_000)
    mean = expression @ weights.vectors / (expression @ weights.matched)[:, None]
    reference = mean / np.linalg.norm(mean, axis=1, keepdims=True)
    np.testing.assert_allclose(streamed[:50], reference, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(streamed, axis=1), 1, atol=1e-5)


def test_cell_without_matched_expression_stays_zero():
    block = sparse.csr_matrix(np.array([[0, 5, 0], [3, 0, 1]], dtype=np.float32))
    weights = GeneWeights(
        vectors=np.array([[1, 0], [0, 0], [0, 1]], dtype=np.float32), matched=np.array([1, 0, 1], np.float32)
    )
    vectors = genept_w_block(block, "log_normalized", weights)
    assert not vectors[0].any()
    np.testing.assert_allclose(vectors[1], np.array([3, 1]) / np.sqrt(10), rtol=1e-6)


def test_input_scale_is_detected(data_dir):
    pbmc3k = CellMatrix(ad.read_h5ad(data_dir / "single_cell/pbmc3k_seurat_lognorm.h5ad", backed="r"), False, "pbmc3k")
    assert detect_input_scale(pbmc3k.block(0, 200), "pbmc3k") == "log_normalized"
    assert detect_input_scale(sparse.csr_matrix(np.array([[0, 3, 1], [7, 0, 2]], np.float32)), "c") == "counts"
    assert detect_input_scale(sparse.csr_matrix(np.array([[0, 310.5, 1.2]], np.float32)), "tpm") == "unlogged"
    with pytest.raises(CellDatasetError, match="negative values.*scaled"):
        detect_input_scale(sparse.csr_matrix(np.array([[-0.4, 1.3]], np.float32)), "z")


def test_gene_names_are_harmonized_to_the_catalog():
    catalog = pd.DataFrame(
        {
            "entrez_id": [7157, 672, 1956, 999],
            "symbol": ["TP53", "BRCA1", "EGFR", "NOTEXT"],
            "aliases": ["P53|LFS1", "RNF53", "ERBB|ERBB1", ""],
            "ensembl_ids": ["ENSG00000141510", "ENSG00000012048", "ENSG00000146648", ""],
        }
    )
    genes = match_genes(
        pd.Index(["TP53", "rnf53", "ENSG00000146648.17", "NOTEXT", "MADEUP1"]),
        GeneResolver(catalog),
        embeddable={7157, 672, 1956},
    )
    assert genes["match"].tolist() == ["symbol", "alias", "ensembl", "no_text", "unmapped"]
    assert genes["entrez_id"].tolist()[:3] == [7157, 672, 1956] and genes["entrez_id"].iloc[3:].isna().all()
    assert genes["symbol"].tolist() == ["TP53", "BRCA1", "EGFR", "NOTEXT", "MADEUP1"]


def test_cells_are_selected_by_label_and_capped_per_class():
    labels = pd.Series(["a"] * 600 + ["b"] * 300 + ["rare"] * 3 + [None] * 7)
    positions, excluded = select_cells(labels, max_cells=450, min_class_cells=5, seed=0)
    kept = labels.iloc[positions].value_counts()
    assert len(positions) == 450 and (np.diff(positions) > 0).all()
    assert kept["a"] == 300 and kept["b"] == 150 and "rare" not in kept
    assert excluded == {"unlabelled": 7, "in_small_classes": 3, "over_cap": 450, "small_classes": ["rare"]}


def test_cell_sentences_order_genes_by_expression():
    block = sparse.csr_matrix(np.array([[0, 2, 5, 2, 0.5], [0, 0, 0, 0, 0]], dtype=np.float32))
    symbols = np.array(["A", "B", "C", "D", "E"], dtype=object)
    assert cell_sentences(block, symbols, top_genes=10) == ["C B D E", ""]
    assert cell_sentences(block, symbols, top_genes=2) == ["C B", ""]


def planted(n_per_class=120, classes=4, dims=16, noise=0.6, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dims)) * 3
    labels = np.repeat([f"type{i}" for i in range(classes)], n_per_class)
    X = centres[np.repeat(np.arange(classes), n_per_class)] + rng.normal(
        scale=noise * 3, size=(classes * n_per_class, dims)
    )
    cells = pd.DataFrame({"obs_name": [f"c{i}" for i in range(len(labels))], "label": labels})
    return X, cells


def test_cell_tasks_separate_planted_types_from_noise():
    X, cells = planted()
    protocol = CellProtocol(n_bootstrap=200, n_splits=3)
    signal = {(r["classifier"], r["metric"]): r for r in score_cells(X, cells["label"], "toy", "genept_w", protocol)}
    noise = {
        (r["classifier"], r["metric"]): r
        for r in score_cells(np.random.default_rng(1).normal(size=X.shape), cells["label"], "toy", "genept_w", protocol)
    }
    assert signal[("knn", "macro_f1")]["estimate"] > 0.9 and noise[("knn", "macro_f1")]["estimate"] < 0.4
    assert signal[("kmeans", "ari")]["estimate"] > 0.8 and abs(noise[("kmeans", "ari")]["estimate"]) < 0.05
    assert signal[("silhouette", "asw")]["estimate"] > 0.2 > noise[("silhouette", "asw")]["estimate"]
    row = signal[("knn", "accuracy")]
    assert (
        len(row["fold_values"]) == 3
        and len(row["bootstrap"]) == 200
        and row["n_genes"] == 480
        and row["n_classes"] == 4
    )
    assert (
        cells_digest(cells, protocol)
        == cells_digest(cells.copy(), protocol)
        != cells_digest(cells, CellProtocol(seed=1))
    )


def test_knn_metrics_match_scikit_learn():
    rng = np.random.default_rng(2)
    y, predicted = rng.integers(0, 4, 300), rng.integers(0, 4, 300)
    predicted[predicted == 3] = 2  # class 3 is never predicted: its precision counts as 0
    metrics = classification_metrics(weighted_confusions(y, predicted, 4, np.ones(len(y))))
    assert metrics["accuracy"][0] == pytest.approx(accuracy_score(y, predicted))
    assert metrics["macro_precision"][0] == pytest.approx(
        precision_score(y, predicted, average="macro", zero_division=0)
    )
    assert metrics["balanced_accuracy"][0] == pytest.approx(recall_score(y, predicted, average="macro"))
    assert metrics["macro_f1"][0] == pytest.approx(f1_score(y, predicted, average="macro"))


def cell_results(backbone, method, X, cells, view="summary"):
    rows = score_cells(X, cells["label"], "toy", method, CellProtocol(n_bootstrap=300, n_splits=3))
    digest = cells_digest(cells, CellProtocol(n_bootstrap=300, n_splits=3))
    return pd.DataFrame(rows).assign(
        backbone=backbone, view=view, universe="cells", draw=0, genes_digest=digest, n_excluded=0, dims=X.shape[1]
    )


def test_umap_distances_for_small_data_are_umaps_own_cosine(counts_h5ad):
    """The distance matrix handed to UMAP below its small-data size equals UMAP's cosine between the l2-normalized
    rows, all-zero rows (cells without matched expression) included."""
    from sklearn.metrics import pairwise_distances
    from umap.distances import cosine

    X = genept_w_block(ad.read_h5ad(counts_h5ad).X[:300], "counts", gene_weights(genes=600, seed=5))
    X[:4] = 0.0
    expected = pairwise_distances(X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-30), metric=cosine)
    np.testing.assert_allclose(umap_input(X), expected, atol=1e-6)
    assert umap_input(np.ones((5000, 3), dtype=np.float32)).shape == (5000, 3)  # large data: normalized rows


def test_leaderboard_cell_section_reports_gains_over_both_baselines():
    X, cells = planted(noise=1.2)
    rng = np.random.default_rng(7)
    results = pd.concat(
        [
            cell_results("good-model", "genept_w", X, cells),
            cell_results("random-gaussian", "genept_w", X + rng.normal(scale=6, size=X.shape), cells),
            cell_results("expression-pca", "pca", X[:, :4], cells, view="expression"),
        ],
        ignore_index=True,
    )
    summary = summarize(results)
    primary = summary[summary["primary"]]
    assert set(zip(primary["classifier"], primary["metric"])) == {("knn", "macro_f1")} and len(primary) == 3
    gains = cell_gains(summary)
    over_random = gains[
        (gains["embedding"] == "good-model · GenePT-w")
        & (gains["baseline"] == "random")
        & (gains["metric"] == "macro_f1")
    ].iloc[0]
    assert over_random["gain"] > 0.1 and over_random["ci_low"] > 0 and over_random["p_value"] < 0.05
    assert set(gains["baseline"]) == {"random", "PCA"}
    table = cell_type_table(summary).set_index("embedding")
    assert "★" in table.loc["good-model · GenePT-w", "toy"] and list(table.columns) == ["mean", "toy"]
    assert "*" in gains_table(gains).set_index("embedding").loc["good-model · GenePT-w", "gain vs random"]
    # a random gene embedding keeps cell neighbourhoods: far above chance on cells, yet not a gene-task failure
    assert summary.query("backbone == 'random-gaussian' and metric == 'macro_f1'")["estimate"].iloc[0] > 0.3
    assert random_band_at_chance(summary).empty

"""Unseen genetic perturbation: Replogle 2022 signatures on the real data, the mean-shift protocol on generated
data with a planted signal, the metrics, the models' determinism, and both assets through the leaderboard."""

import anndata
import numpy as np
import pandas as pd
import pytest
import torch
from dagster import DagsterInstance, materialize
from sklearn.metrics import average_precision_score, roc_auc_score

from gene_assets.catalog.assets import read_ncbi_gene_info
from gene_assets.catalog.resolver import GeneResolver
from gene_assets.definitions import all_asset_checks, all_assets
from gene_assets.embeddings.encoders import random_gene_vectors
from gene_assets.embeddings.partitions import backbone_view_key
from gene_assets.embeddings.table import GeneEmbeddings
from gene_assets.leaderboard.report import random_near_mean_signature, summarize
from gene_assets.orchestration.partitions import register_backbones
from gene_assets.perturbation.evaluation import (
    BASELINE,
    PerturbationProtocol,
    average_precision,
    evaluate_perturbations,
    precision_at,
    signature_metrics,
)
from gene_assets.perturbation.mean_shift import (
    MeanShiftInputError,
    MeanShiftSource,
    mean_shift_targets,
    perturbed_gene,
    read_mean_shift,
)
from gene_assets.perturbation.models import MlpSettings, ResponseBasis, mlp_response
from gene_assets.perturbation.signatures import map_perturbations, read_signatures, signature_targets
from gene_assets.resources import temporary_resources
from gene_assets.storage import write_table

from .conftest import store_frame

EVERYTHING = [*all_assets, *all_asset_checks]


@pytest.fixture(scope="module")
def gene_info(data_dir) -> pd.DataFrame:
    return read_ncbi_gene_info(data_dir / "gene_annotation/ncbi_Homo_sapiens.gene_info.2022-11.gz")


@pytest.fixture(scope="module")
def signatures(data_dir, gene_info):
    table = read_signatures(data_dir / "perturbation/replogle2022_k562_rpe1_deseq2_up_signatures.parquet")
    return map_perturbations(table, GeneResolver(gene_info))


def test_replogle_signatures_map_and_become_rank_score_targets(signatures):
    mapped, counts = signatures
    for cell_line in ("K562", "RPE1"):
        assert counts[cell_line]["n_source"] == 585 and counts[cell_line]["n_mapped"] >= 575
        assert counts[cell_line]["n_mapped"] + counts[cell_line]["n_unmapped"] == 585
    targets = signature_targets(mapped, "K562")
    listed = mapped[mapped["cell_line"] == "K562"]
    assert targets.values.shape == (counts["K562"]["n_mapped"], listed["gene"].nunique())
    assert targets.n_source == 585 and (np.diff(targets.entrez_ids) > 0).all()
    up_sizes = targets.up_set.sum(1)
    assert up_sizes.min() >= 5 and up_sizes.max() <= 98
    assert (targets.values[targets.up_set] > 0).all()
    assert np.allclose(np.sort(targets.values, axis=1)[:, -1], 1.0) and ((targets.values > 0).sum(1) == 1000).all()
    first = listed[(listed["perturbation"] == targets.labels[0]) & (listed["rank"] == 1)]["gene"].iloc[0]
    assert targets.values[0, list(targets.genes).index(first)] == 1.0
    half = targets.restricted_to(targets.entrez_ids[::2])
    assert len(half.entrez_ids) == (len(targets.entrez_ids) + 1) // 2 and half.digest != targets.digest


def test_ranking_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    relevant = rng.random((6, 300)) < 0.1
    scores = np.round(rng.random((6, 300)) + relevant * 0.3, 1)  # many ties
    expected = [average_precision_score(r, s) for r, s in zip(relevant, scores)]
    assert np.allclose(average_precision(relevant, scores), expected)
    order = np.argsort(-scores[0], kind="mergesort")[:20]
    assert precision_at(relevant, scores, 20)[0] == relevant[0, order].mean()
    from types import SimpleNamespace

    metrics = signature_metrics(SimpleNamespace(up_set=relevant), np.arange(6), scores, (20,))
    assert np.allclose(metrics["roc_auc"], [roc_auc_score(r, s) for r, s in zip(relevant, scores)])


def test_response_basis_is_exact_and_mlp_is_deterministic():
    rng = np.random.default_rng(1)
    responses = rng.random((40, 300)).astype(np.float32)
    basis = ResponseBasis(responses)
    assert np.allclose(basis.expand(basis.scores), responses, atol=1e-4)
    X, X_test = rng.normal(size=(40, 8)).astype(np.float32), rng.normal(size=(5, 8)).astype(np.float32)
    threads, state = torch.get_num_threads(), torch.random.get_rng_state()
    first = mlp_response(X, basis, X_test, seed=3, settings=MlpSettings(max_epochs=50))
    again = mlp_response(X, ResponseBasis(responses), X_test, seed=3, settings=MlpSettings(max_epochs=50))
    assert np.array_equal(first, again)
    assert torch.get_num_threads() == threads and torch.equal(torch.random.get_rng_state(), state)


def planted_expression(path, n_perturbations=108, n_genes=150, dims=12, seed=0):
    """GEARS-style cells: Δμ of perturbation p = a shared response + tanh(E_p W), E_p being the perturbed gene's
    planted embedding; plus a two-gene condition and an unknown gene. Returns (catalog, embeddings of the genes)."""
    rng = np.random.default_rng(seed)
    symbols = [f"PG{i}" for i in range(n_perturbations)]
    catalog = pd.DataFrame(
        {"entrez_id": np.arange(1000, 1000 + n_perturbations), "symbol": symbols, "aliases": None, "ensembl_ids": None}
    )
    embedding = rng.normal(size=(n_perturbations, dims))
    shift = 0.2 * rng.normal(size=n_genes) + np.tanh(embedding @ rng.normal(size=(dims, n_genes)) / np.sqrt(dims))
    base = rng.gamma(2.0, 1.0, n_genes)
    labels, cells = ["ctrl"] * 60, [base + 0.3 * rng.normal(size=(60, n_genes))]
    for symbol, delta in zip(symbols + ["PG0+PG1", "NOTAGENE"], np.vstack([shift, shift[:2]])):
        labels += [symbol if "+" in symbol else f"{symbol}+ctrl"] * 5
        cells.append(base + delta + 0.3 * rng.normal(size=(5, n_genes)))
    obs = pd.DataFrame({"condition": labels}, index=[f"cell{i}" for i in range(len(labels))])
    data = anndata.AnnData(
        np.vstack(cells).astype(np.float32), obs=obs, var=pd.DataFrame(index=[f"G{i}" for i in range(n_genes)])
    )
    data.write_h5ad(path)
    return catalog, embedding.astype(np.float32)


def test_mean_shift_protocol_recovers_a_planted_signal_and_random_does_not(tmp_path):
    catalog, embedding = planted_expression(tmp_path / "planted.h5ad")
    targets, counts = mean_shift_targets(MeanShiftSource(str(tmp_path / "planted.h5ad")), GeneResolver(catalog))
    assert counts["n_two_gene_conditions"] == 1 and counts["n_unmapped"] == 1 and counts["n_mapped"] == 108
    assert targets.task.name == "mean_shift_planted" and targets.values.shape == (108, 150)
    random = random_gene_vectors(targets.entrez_ids, embedding.shape[1], seed=0)
    protocol = PerturbationProtocol(n_bootstrap=200, models=("mlp",), mlp=MlpSettings(max_epochs=300))
    planted = {r["metric"]: r for r in evaluate_perturbations(targets, embedding, protocol)}
    control = {r["metric"]: r for r in evaluate_perturbations(targets, random, protocol)}
    baseline = {r["metric"]: r for r in evaluate_perturbations(targets, None, protocol)}
    assert planted["pearson_top20_de"]["estimate"] > baseline["pearson_top20_de"]["estimate"] + 0.1
    gap = np.asarray(planted["pearson_top20_de"]["bootstrap"]) - np.asarray(baseline["pearson_top20_de"]["bootstrap"])
    assert np.percentile(gap, 2.5) > 0.05
    assert planted["relative_mae"]["estimate"] < baseline["relative_mae"]["estimate"] - 0.2
    assert abs(control["pearson_top20_de"]["estimate"] - baseline["pearson_top20_de"]["estimate"]) < 0.03
    assert planted["pearson_top20_de"]["genes_digest"] == baseline["pearson_top20_de"]["genes_digest"]


def test_mean_shift_input_errors_name_the_problem(tmp_path):
    catalog, _ = planted_expression(tmp_path / "planted.h5ad", n_perturbations=20)
    resolver = GeneResolver(catalog)
    path = str(tmp_path / "planted.h5ad")
    with pytest.raises(MeanShiftInputError, match=r"no column 'perturbation'.*condition"):
        mean_shift_targets(MeanShiftSource(path, perturbation_column="perturbation"), resolver)
    with pytest.raises(MeanShiftInputError, match=r"control label 'non-targeting'"):
        mean_shift_targets(MeanShiftSource(path, control_label="non-targeting"), resolver)
    with pytest.raises(MeanShiftInputError, match=r"21 of 21 single-gene perturbations name no known gene"):
        mean_shift_targets(MeanShiftSource(path), GeneResolver(catalog.assign(symbol=catalog["symbol"] + "X")))
    with pytest.raises(MeanShiftInputError, match="does not exist"):
        mean_shift_targets(MeanShiftSource(str(tmp_path / "missing.h5ad")), resolver)


def test_pseudobulk_rows_sparse_matrix_and_gene_column(tmp_path):
    """Pseudobulk rows (two per label), a sparse matrix, symbols in a var column, a custom control label."""
    from scipy import sparse

    X = np.array(
        [[1, 0, 2], [3, 0, 2], [4, 1, 2], [6, 1, 2], [0, 5, 0], [2, 5, 4], [9, 9, 9], [9, 9, 9]], dtype=np.float32
    )
    labels = ["non-targeting"] * 2 + ["KLF1"] * 2 + ["ctrl+GATA1"] * 2 + ["KLF1+GATA1"] * 2
    obs = pd.DataFrame({"target": labels}, index=[f"row{i}" for i in range(8)])
    var = pd.DataFrame({"gene_name": ["HBB", "HBG1", "TAL1"]}, index=["ENSG1", "ENSG2", "ENSG3"])
    anndata.AnnData(sparse.csr_matrix(X), obs=obs, var=var).write_h5ad(tmp_path / "pseudobulk.h5ad")
    table, genes, delta, counts = read_mean_shift(
        MeanShiftSource(str(tmp_path / "pseudobulk.h5ad"), "target", "non-targeting", gene_column="gene_name")
    )
    assert list(genes) == ["HBB", "HBG1", "TAL1"] and list(table["gene"]) == ["KLF1", "GATA1"]
    assert np.allclose(delta, [[3, 1, 0], [-1, 5, 0]]) and counts["n_two_gene_conditions"] == 1
    assert perturbed_gene("A+ctrl", "ctrl") == "A" and perturbed_gene("A+B", "ctrl") is None
    with pytest.raises(MeanShiftInputError, match=r"var has no column 'symbol'.*gene_name"):
        read_mean_shift(
            MeanShiftSource(str(tmp_path / "pseudobulk.h5ad"), "target", "non-targeting", gene_column="symbol")
        )


def store_embeddings(base, backbone: str, genes: pd.DataFrame, matrix: np.ndarray, kind: str) -> None:
    embeddings = GeneEmbeddings(
        genes, matrix, {"backbone": backbone, "view": "summary", "dims": matrix.shape[1], "kind": kind}
    )
    table = embeddings.to_arrow()
    metadata = {**table.schema.metadata, b"gene_assets.type": b"gene_assets.embeddings.table:GeneEmbeddings"}
    write_table(
        table.replace_schema_metadata(metadata),
        base / "gene_embeddings" / f"backbone={backbone}" / "view=summary.parquet",
    )


def store_universe(base, catalog: pd.DataFrame) -> None:
    store_frame(catalog, base / "gene_catalog.parquet")
    universes = pd.DataFrame({"entrez_id": catalog["entrez_id"], "all_genes": True, "with_summary": True})
    store_frame(universes, base / "gene_universes.parquet")


@pytest.mark.slow
def test_mean_shift_asset_reaches_the_leaderboard_beside_the_mean_signature(tmp_path):
    """Planted embeddings stored as the bag-of-words partition, random vectors as the random control."""
    catalog, embedding = planted_expression(tmp_path / "planted.h5ad")
    resources = temporary_resources(tmp_path, release_repo=tmp_path / "unused", remote=tmp_path / "remote")
    base = tmp_path / "storage"
    base.mkdir()
    store_universe(base, catalog)
    genes = catalog[["entrez_id", "symbol"]]
    store_embeddings(base, "bag-of-words", genes, embedding, "bag_of_words")
    store_embeddings(base, "random-gaussian", genes, random_gene_vectors(genes["entrez_id"], 12, seed=0), "random")
    config = {
        "path": str(tmp_path / "planted.h5ad"),
        "n_bootstrap": 200,
        "random_draws": 2,
        "universes": ["all_genes"],
        "models": ["mlp"],
        "max_epochs": 300,
    }
    with DagsterInstance.ephemeral() as instance:
        register_backbones(instance, ["bag-of-words", "random-gaussian"])
        for backbone in ("bag-of-words", "random-gaussian"):
            run = materialize(
                EVERYTHING,
                selection=["mean_shift_results"],
                instance=instance,
                resources=resources,
                partition_key=backbone_view_key(backbone, "summary"),
                run_config={"ops": {"mean_shift_results": {"config": config}}},
            )
            assert run.success and all(e.passed for e in run.get_asset_check_evaluations())
        results = run.output_for_node("mean_shift_results")
        assert set(results["backbone"]) == {"random-gaussian", BASELINE} and set(results["draw"]) == {0, 1}
        assert (results["n_excluded"] == 1).all() and (results["n_genes"] == 108).all()
        board_run = materialize(EVERYTHING, selection=["leaderboard"], instance=instance, resources=resources)
        assert board_run.success
    board = board_run.output_for_node("leaderboard")
    primary = board[board["primary"]].set_index("backbone")
    assert set(primary.index) == {"bag-of-words", "random-gaussian", BASELINE}  # the baseline once, not per partition
    assert primary.loc["bag-of-words", "best"] and primary.loc["random-gaussian", "n_draws"] == 2
    assert board[board["metric"] == "relative_mae"].set_index("backbone").loc["bag-of-words", "best"]  # lower is better
    metadata = board_run.get_asset_materialization_events()[0].materialization.metadata
    assert "mean_shift_planted" in metadata["perturbation"].value and "mean-signature" in metadata["perturbation"].value
    checks = {e.check_name: e.passed for e in board_run.get_asset_check_evaluations()}
    assert checks == {"random_band_at_chance": True, "random_near_mean_signature": True}


def test_replogle_asset_on_real_signatures_excludes_unembedded_genes_alike(tmp_path, gene_info, signatures):
    """Random vectors for the mapped knocked-down genes but one: both cell lines, ridge beside the baseline on
    the same perturbations, and the random control at the mean-signature baseline (the MLP goes through the
    mean-shift asset above)."""
    mapped, counts = signatures
    knocked_down = np.sort(mapped["entrez_id"].dropna().unique().astype(np.int64))
    resources = temporary_resources(tmp_path, release_repo=tmp_path / "unused", remote=tmp_path / "remote")
    base = tmp_path / "storage"
    base.mkdir()
    store_universe(base, gene_info[["entrez_id", "symbol", "aliases", "ensembl_ids"]])
    genes = gene_info.set_index("entrez_id").loc[knocked_down[1:], ["symbol"]].reset_index()  # one gene unembedded
    store_embeddings(base, "random-gaussian", genes, random_gene_vectors(genes["entrez_id"], 32, seed=0), "random")
    config = {"n_bootstrap": 200, "random_draws": 1, "universes": ["all_genes"], "models": ["ridge"]}
    with DagsterInstance.ephemeral() as instance:
        register_backbones(instance, ["random-gaussian"])
        run = materialize(
            EVERYTHING,
            selection=["perturbation_signatures", "perturbation_results"],
            instance=instance,
            resources=resources,
            partition_key=backbone_view_key("random-gaussian", "summary"),
            run_config={"ops": {"perturbation_results": {"config": config}}},
        )
    assert run.success and all(e.passed for e in run.get_asset_check_evaluations())
    results = run.output_for_node("perturbation_results")
    assert set(results["task"]) == {"replogle2022_k562", "replogle2022_rpe1"}
    assert set(results["classifier"]) == {"ridge"} and set(results["backbone"]) == {"random-gaussian", BASELINE}
    assert set(results["metric"]) == {
        "roc_auc",
        "average_precision",
        "precision_at_20",
        "precision_at_50",
        "precision_at_100",
    }
    assert (results["n_genes"] == counts["K562"]["n_mapped"] - 1).all() and (
        results["n_excluded"] == 585 - len(genes)
    ).all()
    assert results.groupby("task")["genes_digest"].nunique().eq(1).all()
    near = random_near_mean_signature(summarize(results))
    assert len(near) == 2 and near["near"].all()
    baseline = results[(results["backbone"] == BASELINE) & (results["metric"] == "roc_auc")]["estimate"]
    assert (baseline > 0.85).all()  # the shared response alone ranks the up sets well
    leaking = results.assign(
        estimate=np.where(results["backbone"] == BASELINE, results["estimate"], results["estimate"] + 0.05)
    )
    assert not random_near_mean_signature(summarize(leaking))["near"].any()

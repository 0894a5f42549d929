"""Batch effect across two studies of one tissue: the metrics on planted data, the label harmonization on the real
pancreas datasets, and the asset on real cells through the graph into the leaderboard and the release."""

import shutil

import anndata
import numpy as np
import pandas as pd
import pytest
from dagster import DagsterInstance, materialize

from gene_assets.cells.batch import STUDY_PAIRS, BatchProtocol, per_cell_scores, score_batch_effect, shared_cells
from gene_assets.cells.partitions import backbone_dataset_key
from gene_assets.cli import register_backbones, register_partitions
from gene_assets.definitions import all_asset_checks, all_assets
from gene_assets.embeddings.partitions import backbone_view_key
from gene_assets.leaderboard.cells import batch_effect_table
from gene_assets.release.assets import leaderboard_files
from gene_assets.resources import temporary_resources
from gene_assets.settings import PROJECT_ROOT

PAIR = STUDY_PAIRS["pancreas"]


def planted(offset: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two studies × three well-separated types; the second study shifted by `offset` along its own axis."""
    rng = np.random.default_rng(seed)
    centres = np.eye(3, 8) * 4
    labels = np.repeat(np.arange(3), 40)
    batch = np.tile(["a", "b"], 60)
    X = centres[labels] + rng.normal(scale=0.5, size=(120, 8))
    X[batch == "b", 7] += offset
    return X, batch, labels


def test_mixing_metrics_fall_when_a_study_is_shifted_and_conservation_holds_when_it_is_not():
    mixed = per_cell_scores(*planted(0.0), k=15)
    shifted = per_cell_scores(*planted(12.0), k=15)
    assert mixed["batch_entropy"].mean() > 0.85 and shifted["batch_entropy"].mean() < 0.1
    assert mixed["batch_asw"].mean() > 0.9 and shifted["batch_asw"].mean() < mixed["batch_asw"].mean() - 0.3
    assert mixed["label_asw"].mean() > 0.5 and mixed["transfer_accuracy"].mean() == 1.0
    assert shifted["label_asw"].mean() < mixed["label_asw"].mean()


def test_bootstrap_is_paired_across_embeddings_of_the_same_cells():
    X, batch, labels = planted(0.0)
    cells = pd.DataFrame({"dataset": batch, "label": labels.astype(str), "obs_name": np.arange(120).astype(str)})
    protocol = BatchProtocol(n_bootstrap=200)
    one = {r["metric"]: r for r in score_batch_effect(X, cells, "p", "genept_w", protocol)}
    other = {r["metric"]: r for r in score_batch_effect(X + 0.01, cells, "p", "genept_w", protocol)}
    for metric, row in one.items():
        assert row["task"] == "p_genept_w" and len(row["bootstrap"]) == 200
        assert abs(np.mean(row["bootstrap"]) - row["estimate"]) < 0.05
        # the same resamples: near-identical embeddings give near-identical replicates, draw by draw
        np.testing.assert_allclose(row["bootstrap"], other[metric]["bootstrap"], atol=0.05)


def test_pancreas_studies_share_four_harmonized_cell_types(data_dir):
    cells = {
        name: anndata.read_h5ad(data_dir / f"single_cell/{name}.h5ad", backed="r")
        .obs[["cell_type"]]
        .rename(columns={"cell_type": "label"})
        .rename_axis("obs_name")
        .reset_index()
        for name in PAIR.datasets
    }
    cells["wang"]["label"] = cells["wang"]["label"].astype(str).replace({"gamma": " PP", "alpha": "Alpha "})
    shared, left_out = shared_cells(cells, PAIR)
    assert set(shared["label"]) == {"alpha", "beta", "gamma", "delta"}
    assert left_out == {"xin": {}, "wang": {"ductal": 96, "stellate": 45, "acinar": 5}}
    assert shared.groupby("dataset").size().to_dict() == {"xin": 674, "wang": 355}
    wang = shared[shared["dataset"] == "wang"]
    assert (cells["wang"]["obs_name"].to_numpy()[wang["position"]] == wang["obs_name"]).all()


@pytest.mark.slow
def test_batch_effect_of_real_pancreas_cells_reaches_the_leaderboard_and_the_release(
    tmp_path, annotation_cache, data_dir, monkeypatch
):
    from .conftest import make_release_repo

    symbols = sorted(
        {
            gene
            for name in PAIR.datasets
            for gene in anndata.read_h5ad(data_dir / f"single_cell/{name}.h5ad", backed="r").var_names
        }
    )
    repo = make_release_repo(tmp_path / "release_repo")
    resources = temporary_resources(
        tmp_path, release_repo=repo, remote=tmp_path / "remote", annotation_cache=annotation_cache
    )
    (tmp_path / "dagster_home").mkdir()
    shutil.copy(PROJECT_ROOT / "dagster_home" / "dagster.yaml", tmp_path / "dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    backbones = ["bag-of-words", "random-gaussian"]
    everything = [*all_assets, *all_asset_checks]
    with DagsterInstance.get() as instance:
        register_backbones(instance, backbones)
        register_partitions(instance, "cell_dataset", list(PAIR.datasets))

        def run(selection, partition_key=None, config=None):
            result = materialize(
                everything,
                selection=selection,
                instance=instance,
                resources=resources,
                partition_key=partition_key,
                run_config={"ops": config or {}},
            )
            assert result.success
            return result

        run(
            ["gene_catalog", "gene_summaries", "gene_texts", "gene_universes"],
            config={"gene_texts": {"config": {"symbols": symbols}}},
        )
        for backbone in backbones:
            run(["gene_embeddings"], backbone_view_key(backbone, "summary"))
        for name in PAIR.datasets:
            run(["cell_datasets"], name)
            for backbone in backbones:
                run(["cell_embeddings"], backbone_dataset_key(backbone, name))
        result = run(["batch_effect_results"], "pancreas", {"batch_effect_results": {"config": {"n_bootstrap": 200}}})
    rows = result.output_for_node("batch_effect_results")
    assert set(zip(rows["backbone"], rows["task"])) == {
        ("bag-of-words", "pancreas_genept_w"),
        ("bag-of-words", "pancreas_genept_w_shared"),
        ("random-gaussian", "pancreas_genept_w"),
        ("random-gaussian", "pancreas_genept_w_shared"),
        ("expression-pca", "pancreas_pca"),
    }
    assert set(rows["metric"]) == {"label_asw", "batch_asw", "batch_entropy", "transfer_accuracy"}
    assert (rows["n_genes"] == 674 + 355).all() and rows["genes_digest"].nunique() == 1
    assert np.isfinite(rows["estimate"]).all() and rows["estimate"].between(-1, 1).all()
    estimate = rows.set_index(["backbone", "metric"])["estimate"]
    assert (estimate.xs("transfer_accuracy", level="metric") > 0.5).all()  # always "alpha" would score 0.48
    assert estimate.xs("batch_entropy", level="metric").between(0, 1).all()
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["shared_genes"].value > 2

    from gene_assets.leaderboard.report import summarize

    summary = summarize(rows.assign(view=rows["view"]))
    table = batch_effect_table(summary)
    assert list(table.columns) == [
        "study pair",
        "embedding",
        "label_asw",
        "batch_asw",
        "batch_entropy",
        "transfer_accuracy",
    ]
    assert len(table) == 5 and table["label_asw"].str.contains(r"\[").all()
    assert table.map(lambda c: "★" in str(c)).sum().sum() == 4  # one best embedding per metric
    files = leaderboard_files(summary.assign(protocol="published"))
    assert b"bag-of-words" in files["leaderboard_batch_effect.csv"]

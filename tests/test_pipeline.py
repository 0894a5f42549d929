"""The whole graph on real data for a small gene universe, materialized in a temporary instance."""

import filecmp
import json
import os
import shutil
import subprocess

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance, materialize

from gene_assets.cells.partitions import backbone_dataset_key
from gene_assets.definitions import all_asset_checks, all_assets
from gene_assets.embeddings.partitions import backbone_view_key
from gene_assets.leaderboard.inputs import RESULT_ASSETS
from gene_assets.orchestration.partitions import register_backbones, register_partitions
from gene_assets.resources import temporary_resources
from gene_assets.settings import PROJECT_ROOT

from .conftest import dvc, git, make_release_repo, running_ui

ARTIFACTS = PROJECT_ROOT / "test-artifacts"

BACKBONES = ["all-MiniLM-L6-v2", "bag-of-words", "random-gaussian", "text-availability"]
SOURCES = [
    "gene_catalog",
    "gene_summaries",
    "gene_texts",
    "gene_universes",
    "geneformer_labels",
    "gene_type_labels",
    "gene_property_labels",
    "gene_interaction_pairs",
]
EVALUATION = {"n_bootstrap": 200}
# The gene-pair task is left out of the small universe: see test_random_control_off_chance_blocks_the_release.
GENE_TASK_RESULTS = [name for name in RESULT_ASSETS if name != "gene_interaction_results"]
CELL_DATASET = "wang"
CELLS = {
    "cell_datasets": {"max_cells": 300},
    "cell_baseline_results": {"n_bootstrap": 200, "umap": False},
    "cell_type_results": {"n_bootstrap": 200},
}
"""Wang's pancreas cells (its genes are added to the small gene universe), 300 of them; one UMAP (MiniLM's)."""


pytestmark = pytest.mark.slow
"""Every test here shares the whole-graph fixture (minutes): not in `make test-fast`."""


def materialize_cells(instance, resources, everything, backbones):
    register_partitions(instance, "cell_dataset", [CELL_DATASET])
    runs = [
        materialize(
            everything,
            selection=["cell_datasets", "cell_baseline_results"],
            instance=instance,
            resources=resources,
            partition_key=CELL_DATASET,
            run_config={"ops": {k: {"config": CELLS[k]} for k in ("cell_datasets", "cell_baseline_results")}},
        )
    ]
    for backbone in backbones:
        results_config = {**CELLS["cell_type_results"], "umap": backbone == "all-MiniLM-L6-v2"}
        runs.append(
            materialize(
                everything,
                selection=["cell_embeddings", "cell_type_results"],
                instance=instance,
                resources=resources,
                partition_key=backbone_dataset_key(backbone, CELL_DATASET),
                run_config={"ops": {"cell_type_results": {"config": results_config}}},
            )
        )
    return runs


def materialize_all(instance, resources, symbols, backbones=BACKBONES, views=("summary",)):
    register_backbones(instance, list(backbones))
    everything = [*all_assets, *all_asset_checks]
    runs = [
        materialize(
            everything,
            selection=SOURCES,
            instance=instance,
            resources=resources,
            run_config={"ops": {"gene_texts": {"config": {"views": list(views), "symbols": symbols}}}},
        )
    ]
    for backbone in backbones:
        for view in views:
            runs.append(
                materialize(
                    everything,
                    selection=["gene_embeddings", *GENE_TASK_RESULTS],
                    instance=instance,
                    resources=resources,
                    partition_key=backbone_view_key(backbone, view),
                    run_config={"ops": {name: {"config": EVALUATION} for name in GENE_TASK_RESULTS}},
                )
            )
    runs += materialize_cells(instance, resources, everything, backbones)
    runs.append(
        materialize(
            everything,
            selection=["leaderboard", "term_masking", "embeddings_release"],
            instance=instance,
            resources=resources,
        )
    )
    assert all(r.success for r in runs)
    return runs


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, task_symbols, annotation_cache, data_dir):
    """Everything materialized into a persistent temporary instance (the browser test serves it in the UI)."""
    import anndata

    tmp = tmp_path_factory.mktemp("pipeline")
    repo = make_release_repo(tmp / "release_repo")
    resources = temporary_resources(tmp, release_repo=repo, remote=tmp / "remote", annotation_cache=annotation_cache)
    cell_genes = anndata.read_h5ad(data_dir / "single_cell/wang.h5ad", backed="r").var_names.tolist()
    symbols = sorted(set(task_symbols) | set(cell_genes))
    dagster_home = tmp / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster_home" / "dagster.yaml", dagster_home)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", str(dagster_home))
        instance = DagsterInstance.get()
    with instance:
        runs = materialize_all(instance, resources, symbols)
        yield {
            "instance": instance,
            "resources": resources,
            "runs": runs,
            "repo": repo,
            "tmp": tmp,
            "symbols": symbols,
            "dagster_home": dagster_home,
        }


def output(pipeline, asset_name):
    for run in pipeline["runs"]:
        for event in run.get_asset_materialization_events():
            if event.asset_key.path[-1] == asset_name:
                return run.output_for_node(asset_name)
    raise AssertionError(f"{asset_name} was not materialized")


def test_leaderboard_scores_every_backbone_on_the_same_genes(pipeline):
    board = output(pipeline, "leaderboard")
    board = board[board["kind"] != "cells"]
    assert set(board["backbone"]) == set(BACKBONES)
    assert {
        "dosage_sensitive_tfs",
        "bivalent_vs_lys4_only",
        "bivalent_vs_no_methylation",
        "tf_range_geneformer",
        "tf_range_chen2020",
        "tf_vs_non_tf",
        "hgnc_groups",
    } <= set(board["task"])
    assert set(board["universe"]) == {"all_genes", "with_summary"}
    per_task = board.groupby(["universe", "task", "classifier", "metric"])
    assert (per_task["genes_digest"].nunique() == 1).all() and (per_task["n_genes"].nunique() == 1).all()
    single = board[board["n_draws"] == 1]  # the random control's estimate is its band mean over draws
    tolerance = 1e-6  # replicates are stored as float32
    inside = (single["ci_low"] <= single["estimate"] + tolerance) & (
        single["estimate"] <= single["ci_high"] + tolerance
    )
    columns = ["backbone", "universe", "task", "classifier", "metric", "estimate", "ci_low", "ci_high"]
    assert inside.all(), single.loc[~inside, columns].to_string()


def test_minilm_beats_random_band_and_text_availability_is_a_confound(pipeline):
    board = output(pipeline, "leaderboard").set_index(["backbone", "universe", "task", "classifier", "metric"])
    random = board.loc[("random-gaussian", "all_genes", "dosage_sensitive_tfs", "logistic_regression", "roc_auc")]
    assert (
        random["n_draws"] == 20 and 0.45 < random["estimate"] < 0.55 and random["band_high"] - random["band_low"] > 0.05
    )
    minilm = board.loc[("all-MiniLM-L6-v2", "all_genes", "dosage_sensitive_tfs", "logistic_regression", "roc_auc")]
    assert (
        minilm["estimate"] > 0.8
        and minilm["ci_low"] > random["band_high"]
        and minilm["best"] | minilm["tied_with_best"]
    )
    availability = board.loc[
        ("text-availability", "all_genes", "dosage_sensitive_tfs", "logistic_regression", "roc_auc")
    ]
    assert availability["estimate"] > 0.7
    summary_only = board.loc[
        ("text-availability", "with_summary", "dosage_sensitive_tfs", "logistic_regression", "roc_auc")
    ]
    assert summary_only["estimate"] < availability["estimate"]


def test_leaderboard_check_passes_and_results_carry_checks(pipeline):
    checks = {
        (e.asset_key.path[-1], e.check_name): e.passed
        for run in pipeline["runs"]
        for e in run.get_asset_check_evaluations()
    }
    assert checks[("leaderboard", "random_band_at_chance")]
    assert all(
        checks[(name, "metrics_finite")] for name in [*GENE_TASK_RESULTS, "cell_type_results", "cell_baseline_results"]
    )
    assert checks[("cell_embeddings", "unit_vectors")] and checks[("cell_datasets", "genes_matched")]


def test_embeddings_are_float32_with_provenance(pipeline):
    run = pipeline["runs"][1]
    table = run.output_for_node("gene_embeddings")
    assert table.matrix.dtype == "float32" and table.dims == 384
    assert table.attrs["backbone"] == "all-MiniLM-L6-v2"
    assert table.attrs["revision"] == "8b3219a92973c328a8e22fadcfa821b5dc75636a"
    metadata = run.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["n_genes"].value == len(table.genes)
    assert metadata["view"].value == "summary"
    decision = metadata["precision_decision"].data  # the calibrated CPU precision and its evidence, kept with the table
    assert decision["precision"] == table.attrs["precision"] == table.attrs["precision_decision"]["precision"]
    assert (
        decision["reason"]
        and decision["fingerprint"]["torch"]
        and "remembered" not in table.attrs["precision_decision"]
    )


def test_release_round_trip_restores_identical_data(pipeline, tmp_path):
    repo = pipeline["repo"]
    release = output(pipeline, "embeddings_release")
    version = release["version"].iloc[0]
    assert version == "embeddings-v1"
    assert version in git(repo, "tag", "--list").split()
    assert "data.dvc" in git(repo, "show", "--name-only", "--format=", version)
    clone = tmp_path / "consumer"
    subprocess.run(["git", "clone", "-q", "--branch", version, str(repo), str(clone)], check=True)
    # the release repository commits no remote: a clone names where its copy of the data is, untracked
    dvc(clone, "remote", "add", "--local", "--default", "copy", str(pipeline["tmp"] / "remote"))
    dvc(clone, "pull", "--quiet")
    comparison = filecmp.dircmp(repo / "data", clone / "data")
    names = sorted(p.relative_to(repo / "data").as_posix() for p in (repo / "data").rglob("*") if p.is_file())
    assert "MANIFEST.json" in names and "leaderboard.csv" in names and "leaderboard_cells.csv" in names
    assert "gene_identifiers.parquet" in names
    assert "leaderboard_perturbation.csv" in names and "leaderboard_term_masking.csv" in names
    assert {f"cells/{b}__{CELL_DATASET}.parquet" for b in BACKBONES} <= set(names)
    for name in names:
        assert (clone / "data" / name).read_bytes() == (repo / "data" / name).read_bytes(), name
    assert not comparison.diff_files
    from gene_assets.release.dvc_repository import verify_release

    manifest = verify_release(clone / "data", str(clone))
    assert manifest["version"] == version and manifest["code"]["commit"] and "code_digest" in manifest["code"]
    minilm = next(m for m in manifest["models"] if m["file"] == "embeddings/all-MiniLM-L6-v2__summary.parquet")
    assert minilm["device"] == "cpu" and minilm["precision"] and minilm["weights_sha256"] and minilm["text_view_sha256"]
    assert minilm["revision"] == "8b3219a92973c328a8e22fadcfa821b5dc75636a" and minilm["gene_universe_sha256"]
    # the precision decision as released: the choice and its evidence, none of what a re-timing changes
    from gene_assets.release.assets import RELEASED_DECISION

    schema = pq.read_schema(clone / "data" / minilm["file"])
    released = json.loads(schema.metadata[b"gene_assets.attrs"])["precision_decision"]
    assert released == minilm["precision_decision"] and released["precision"] == minilm["precision"]
    assert set(released) <= set(RELEASED_DECISION) and {"fingerprint", "min_cosine"} <= set(released)
    assert "precision_decision_remembered" not in minilm and "seconds" not in minilm
    assert json.loads((repo / "releases.json").read_text())[version]["backbones"] == sorted(BACKBONES)
    from gene_assets.leaderboard.report import wide_table
    from gene_assets.leaderboard.sections import leaderboard_leaks

    board = output(pipeline, "leaderboard")  # the released table is the one the UI and the CLI show, ⚠ marks included
    assert (clone / "data" / "leaderboard.csv").read_text() == wide_table(board, leaks=leaderboard_leaks(board)).to_csv(
        index=False
    )


def test_unchanged_release_reuses_version(pipeline):
    instance, resources = pipeline["instance"], pipeline["resources"]
    result = materialize(
        [*all_assets, *all_asset_checks],
        selection=["leaderboard", "term_masking", "embeddings_release"],
        instance=instance,
        resources=resources,
    )
    again = result.output_for_node("embeddings_release")
    assert again["version"].iloc[0] == "embeddings-v1"
    assert git(pipeline["repo"], "tag", "--list").split() == ["embeddings-v1"]


def test_random_control_off_chance_blocks_the_release(pipeline):
    """On ~300 genes, random vectors identify genes well enough for logistic regression to learn each gene's share
    of positive pairs in Gene2vec (the same genes recur in train and test pairs): the random control scores far
    above chance, and the blocking check stops the leaderboard before anything is released."""
    instance, resources = pipeline["instance"], pipeline["resources"]
    everything = [*all_assets, *all_asset_checks]
    scored = materialize(
        everything,
        selection=["gene_interaction_results"],
        instance=instance,
        resources=resources,
        partition_key=backbone_view_key("random-gaussian", "summary"),
        run_config={"ops": {"gene_interaction_results": {"config": EVALUATION}}},
    )
    pairs = scored.output_for_node("gene_interaction_results")
    assert pairs.query("classifier == 'logistic_regression' and universe == 'all_genes'")["estimate"].iloc[0] > 0.6
    blocked = materialize(
        everything,
        selection=["leaderboard", "term_masking", "embeddings_release"],
        instance=instance,
        resources=resources,
        raise_on_error=False,
    )
    assert not blocked.success
    evaluation = [e for e in blocked.get_asset_check_evaluations() if e.check_name == "random_band_at_chance"][0]
    assert not evaluation.passed and "gene_interaction" in evaluation.metadata["off_chance"].value
    assert not [e for e in blocked.get_asset_materialization_events() if e.asset_key.path[-1] == "embeddings_release"]
    assert git(pipeline["repo"], "tag", "--list").split() == ["embeddings-v1"]


@pytest.mark.browser
def test_browser_renders_the_asset_graph_and_the_leaderboard(pipeline):
    """Headless Chromium on the UI serving the pipeline's instance; screenshots go to test-artifacts/."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium package is missing: `make setup` installs it (apt-get install chromium)."
    ARTIFACTS.mkdir(exist_ok=True)
    env = {**os.environ, "DAGSTER_HOME": str(pipeline["dagster_home"])}
    with running_ui(env) as port, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(90_000)  # the UI polls without pause, so waits are on elements, never on network idle

        # the UI's first-visit newsletter dialog, whenever it appears, is skipped before the next action
        page.add_locator_handler(page.get_by_role("button", name="Skip"), lambda skip: skip.click())

        def open_page(path: str):
            page.goto(f"http://127.0.0.1:{port}{path}", wait_until="domcontentloaded")

        open_page("/assets/leaderboard?view=lineage&lineageScope=upstream&lineageDepth=10")
        for upstream in ("gene_catalog", "gene_texts", "gene_embeddings", "geneformer_results", "leaderboard"):
            page.get_by_text(upstream, exact=True).first.wait_for()
        page.screenshot(path=ARTIFACTS / "ui_asset_graph.png")

        open_page("/assets/leaderboard")
        page.get_by_text("[Show Markdown]").first.click()  # the leaderboard table, the first markdown entry
        for text in ("dosage_sensitive_tfs", "all-MiniLM-L6-v2", "random-gaussian"):
            page.get_by_text(text).first.wait_for()
        page.screenshot(path=ARTIFACTS / "ui_leaderboard.png")
        browser.close()
    assert (ARTIFACTS / "ui_leaderboard.png").stat().st_size > 10_000


def cell_run(pipeline, backbone):
    for run in pipeline["runs"]:
        if run.dagster_run.tags.get("dagster/partition") == str(backbone_dataset_key(backbone, CELL_DATASET)):
            return run
    raise AssertionError(f"no cell run for {backbone}")


def test_cell_types_of_every_backbone_and_both_baselines_reach_the_leaderboard(pipeline):
    board = output(pipeline, "leaderboard")
    cells = board[board["kind"] == "cells"]
    assert set(cells["backbone"]) == {*BACKBONES, "expression-pca"} and set(cells["universe"]) == {"cells"}
    assert set(cells["task"]) == {"wang_genept_w", "wang_genept_s", "wang_pca"}
    assert set(cells.loc[cells["task"] == "wang_genept_s", "backbone"]) == {"all-MiniLM-L6-v2"}
    assert cells["genes_digest"].nunique() == 1 and (cells["n_genes"] == 300).all() and (cells["n_classes"] == 7).all()
    f1 = cells[cells["metric"] == "macro_f1"].set_index(["backbone", "task"])["estimate"]
    assert f1[("all-MiniLM-L6-v2", "wang_genept_w")] > 0.5 and f1[("expression-pca", "wang_pca")] > 0.5
    assert f1[("text-availability", "wang_genept_w")] < f1[("all-MiniLM-L6-v2", "wang_genept_w")]
    metadata = [
        e
        for r in pipeline["runs"]
        for e in r.get_asset_materialization_events()
        if e.asset_key.path[-1] == "leaderboard"
    ][0].materialization.metadata
    table = metadata["cell_types_macro_f1"].value
    assert "all-MiniLM-L6-v2 · GenePT-s" in table and "expression-pca · PCA" in table and "★" in table
    assert (
        "gain vs PCA" in metadata["cell_gains_macro_f1"].value and "gain vs random" in metadata["cell_gains_ari"].value
    )


def test_cell_embeddings_are_stored_as_h5ad_with_one_obsm_key_per_method(pipeline):
    import anndata

    run = cell_run(pipeline, "all-MiniLM-L6-v2")
    events = {e.asset_key.path[-1]: e.materialization.metadata for e in run.get_asset_materialization_events()}
    stored = anndata.read_h5ad(events["cell_embeddings"]["h5ad_path"].value)
    assert stored.n_obs == 300 and set(stored.obsm) == {"X_genept_w", "X_genept_s"}
    assert stored.obsm["X_genept_w"].shape == (300, 384)
    np.testing.assert_allclose(np.linalg.norm(stored.obsm["X_genept_s"], axis=1), 1, atol=1e-3)
    assert stored.obs["label"].nunique() == 7
    assert events["cell_type_results"]["umap_genept_s"].value.startswith("![figure](data:image/png;base64,")
    assert set(cell_run(pipeline, "bag-of-words").output_for_node("cell_embeddings").embeddings) == {"genept_w"}
    dataset = [r for r in pipeline["runs"] if r.dagster_run.tags.get("dagster/partition") == CELL_DATASET][0]
    matched = dataset.get_asset_materialization_events()[0].materialization.metadata
    assert matched["match_rate"].value > 0.8 and "log_normalized" in matched["input_scale"].value


def test_user_h5ad_is_read_by_path_and_label_column_and_unmatched_genes_fail_clearly(pipeline, tmp_path, data_dir):
    import anndata

    wang = anndata.read_h5ad(data_dir / "single_cell/wang.h5ad")
    mine = anndata.AnnData(
        X=wang.X,
        obs=pd.DataFrame({"my_type": wang.obs["cell_type"].to_numpy()}, index=wang.obs_names),
        var=pd.DataFrame(index=wang.var_names),
    )
    mine.write_h5ad(tmp_path / "mine.h5ad")
    mine.var_names = [f"feature{i}" for i in range(mine.n_vars)]
    mine.write_h5ad(tmp_path / "unmatched.h5ad")
    instance, resources = pipeline["instance"], pipeline["resources"]
    register_partitions(instance, "cell_dataset", ["mine", "unmatched"])
    everything = [*all_assets, *all_asset_checks]

    def dataset(name):
        config = {"h5ad_path": str(tmp_path / f"{name}.h5ad"), "label_key": "my_type"}
        return materialize(
            everything,
            selection=["cell_datasets"],
            instance=instance,
            resources=resources,
            partition_key=name,
            run_config={"ops": {"cell_datasets": {"config": config}}},
            raise_on_error=False,
        )

    read = dataset("mine")
    assert read.success and len(read.output_for_node("cell_datasets").cells) == 501
    failed = dataset("unmatched")
    assert not failed.success
    message = failed.get_step_failure_events()[0].event_specific_data.error.cause.message
    assert "'unmatched': none of its 219 genes matches" in message and "feature0" in message

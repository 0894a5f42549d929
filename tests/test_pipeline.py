"""The whole graph on real data for a small gene universe, materialized in a temporary instance."""

import filecmp
import subprocess

import pytest
from dagster import materialize

from gene_assets.cli import register_backbones
from gene_assets.definitions import all_asset_checks, all_assets
from gene_assets.embeddings.partitions import backbone_view_key
from gene_assets.resources import temporary_resources
from gene_assets.tasks.assets import RESULT_ASSETS

from .conftest import dvc, git, make_release_repo

BACKBONES = ["all-MiniLM-L6-v2", "bag-of-words", "random-gaussian", "text-availability"]
SOURCES = ["gene_catalog", "gene_summaries", "gene_texts", "gene_universes", "geneformer_labels", "gene_type_labels",
           "gene_property_labels", "gene_interaction_pairs"]
EVALUATION = {"n_bootstrap": 200}
# The gene-pair task is left out of the small universe: see test_random_control_off_chance_blocks_the_release.
GENE_TASK_RESULTS = [name for name in RESULT_ASSETS if name != "gene_interaction_results"]


def materialize_all(instance, resources, symbols, backbones=BACKBONES, views=("summary",)):
    register_backbones(instance, list(backbones))
    everything = [*all_assets, *all_asset_checks]
    runs = [materialize(everything, selection=SOURCES, instance=instance, resources=resources,
                        run_config={"ops": {"gene_texts": {"config": {"views": list(views), "symbols": symbols}}}})]
    for backbone in backbones:
        for view in views:
            runs.append(materialize(everything, selection=["gene_embeddings", *GENE_TASK_RESULTS], instance=instance,
                                    resources=resources, partition_key=backbone_view_key(backbone, view),
                                    run_config={"ops": {name: {"config": EVALUATION} for name in GENE_TASK_RESULTS}}))
    runs.append(materialize(everything, selection=["leaderboard", "embeddings_release"], instance=instance, resources=resources))
    assert all(r.success for r in runs)
    return runs


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, task_symbols, annotation_cache, data_dir):
    from dagster import DagsterInstance

    tmp = tmp_path_factory.mktemp("pipeline")
    repo = make_release_repo(tmp / "release_repo")
    resources = temporary_resources(tmp, release_repo=repo, remote=tmp / "remote", annotation_cache=annotation_cache)
    with DagsterInstance.ephemeral() as instance:
        runs = materialize_all(instance, resources, task_symbols)
        yield {"instance": instance, "resources": resources, "runs": runs, "repo": repo, "tmp": tmp, "symbols": task_symbols}


def output(pipeline, asset_name):
    for run in pipeline["runs"]:
        for event in run.get_asset_materialization_events():
            if event.asset_key.path[-1] == asset_name:
                return run.output_for_node(asset_name)
    raise AssertionError(f"{asset_name} was not materialized")


def test_leaderboard_scores_every_backbone_on_the_same_genes(pipeline):
    board = output(pipeline, "leaderboard")
    assert set(board["backbone"]) == set(BACKBONES)
    assert {"dosage_sensitive_tfs", "bivalent_vs_lys4_only", "bivalent_vs_no_methylation", "tf_range_geneformer",
            "tf_range_chen2020", "tf_vs_non_tf", "hgnc_groups"} <= set(board["task"])
    assert set(board["universe"]) == {"all_genes", "with_summary"}
    per_task = board.groupby(["universe", "task", "classifier", "metric"])
    assert (per_task["genes_digest"].nunique() == 1).all() and (per_task["n_genes"].nunique() == 1).all()
    single = board[board["n_draws"] == 1]  # the random control's estimate is its band mean over draws
    assert ((single["ci_low"] <= single["estimate"] + 1e-9) & (single["estimate"] <= single["ci_high"] + 1e-9)).all()


def test_minilm_beats_random_band_and_text_availability_is_a_confound(pipeline):
    board = output(pipeline, "leaderboard").set_index(["backbone", "universe", "task", "classifier", "metric"])
    random = board.loc[("random-gaussian", "all_genes", "dosage_sensitive_tfs", "logistic_regression", "roc_auc")]
    assert random["n_draws"] == 20 and 0.45 < random["estimate"] < 0.55 and random["band_high"] - random["band_low"] > 0.05
    minilm = board.loc[("all-MiniLM-L6-v2", "all_genes", "dosage_sensitive_tfs", "logistic_regression", "roc_auc")]
    assert minilm["estimate"] > 0.8 and minilm["ci_low"] > random["band_high"] and minilm["best"] | minilm["tied_with_best"]
    availability = board.loc[("text-availability", "all_genes", "dosage_sensitive_tfs", "logistic_regression", "roc_auc")]
    assert availability["estimate"] > 0.7
    summary_only = board.loc[("text-availability", "with_summary", "dosage_sensitive_tfs", "logistic_regression", "roc_auc")]
    assert summary_only["estimate"] < availability["estimate"]


def test_leaderboard_check_passes_and_results_carry_checks(pipeline):
    checks = {
        (e.asset_key.path[-1], e.check_name): e.passed
        for run in pipeline["runs"] for e in run.get_asset_check_evaluations()
    }
    assert checks[("leaderboard", "random_band_at_chance")]
    assert all(checks[(name, "metrics_finite")] for name in GENE_TASK_RESULTS)


def test_embeddings_are_float32_with_provenance(pipeline):
    run = pipeline["runs"][1]
    table = run.output_for_node("gene_embeddings")
    assert table.matrix.dtype == "float32" and table.dims == 384
    assert table.attrs["backbone"] == "all-MiniLM-L6-v2"
    assert table.attrs["revision"] == "8b3219a92973c328a8e22fadcfa821b5dc75636a"
    metadata = run.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["n_genes"].value == len(table.genes)
    assert metadata["view"].value == "summary"


def test_release_round_trip_restores_identical_data(pipeline, tmp_path):
    repo = pipeline["repo"]
    release = output(pipeline, "embeddings_release")
    version = release["version"].iloc[0]
    assert version == "embeddings-v1"
    assert version in git(repo, "tag", "--list").split()
    assert "data.dvc" in git(repo, "show", "--name-only", "--format=", version)
    clone = tmp_path / "consumer"
    subprocess.run(["git", "clone", "-q", "--branch", version, str(repo), str(clone)], check=True)
    dvc(clone, "pull", "--quiet")
    comparison = filecmp.dircmp(repo / "data", clone / "data")
    names = sorted(p.relative_to(repo / "data").as_posix() for p in (repo / "data").rglob("*") if p.is_file())
    assert "MANIFEST.json" in names and "leaderboard.csv" in names and "leaderboard_perturbation.csv" in names
    for name in names:
        assert (clone / "data" / name).read_bytes() == (repo / "data" / name).read_bytes(), name
    assert not comparison.diff_files
    from gene_assets.release.dvc_repository import verify_release

    assert verify_release(clone / "data")["version"] == version


def test_unchanged_release_reuses_version(pipeline):
    instance, resources = pipeline["instance"], pipeline["resources"]
    result = materialize([*all_assets, *all_asset_checks], selection=["leaderboard", "embeddings_release"],
                         instance=instance, resources=resources)
    again = result.output_for_node("embeddings_release")
    assert again["version"].iloc[0] == "embeddings-v1"
    assert git(pipeline["repo"], "tag", "--list").split() == ["embeddings-v1"]


def test_random_control_off_chance_blocks_the_release(pipeline):
    """On ~300 genes, random vectors identify genes well enough for logistic regression to learn each gene's share
    of positive pairs in Gene2vec (the same genes recur in train and test pairs): the random control scores far
    above chance, and the blocking check stops the leaderboard before anything is released."""
    instance, resources = pipeline["instance"], pipeline["resources"]
    everything = [*all_assets, *all_asset_checks]
    scored = materialize(everything, selection=["gene_interaction_results"], instance=instance, resources=resources,
                         partition_key=backbone_view_key("random-gaussian", "summary"),
                         run_config={"ops": {"gene_interaction_results": {"config": EVALUATION}}})
    pairs = scored.output_for_node("gene_interaction_results")
    assert pairs.query("classifier == 'logistic_regression' and universe == 'all_genes'")["estimate"].iloc[0] > 0.6
    blocked = materialize(everything, selection=["leaderboard", "embeddings_release"], instance=instance,
                          resources=resources, raise_on_error=False)
    assert not blocked.success
    evaluation = [e for e in blocked.get_asset_check_evaluations() if e.check_name == "random_band_at_chance"][0]
    assert not evaluation.passed and "gene_interaction" in evaluation.metadata["off_chance"].value
    assert not [e for e in blocked.get_asset_materialization_events() if e.asset_key.path[-1] == "embeddings_release"]
    assert git(pipeline["repo"], "tag", "--list").split() == ["embeddings-v1"]

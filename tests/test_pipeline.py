"""The whole graph on real data for a small gene universe, materialized in a temporary instance."""

import filecmp
import subprocess

import pytest
from dagster import materialize

from gene_assets.cli import register_backbones
from gene_assets.definitions import all_asset_checks, all_assets
from gene_assets.embeddings.partitions import backbone_view_key
from gene_assets.resources import temporary_resources

from .conftest import dvc, git, make_release_repo

BACKBONES = ["all-MiniLM-L6-v2", "bag-of-words", "random-gaussian"]
SOURCES = ["gene_catalog", "gene_summaries", "gene_texts", "gene_task_labels"]


def materialize_all(instance, resources, symbols, backbones=BACKBONES, views=("summary",)):
    register_backbones(instance, list(backbones))
    everything = [*all_assets, *all_asset_checks]
    runs = [materialize(everything, selection=SOURCES, instance=instance, resources=resources,
                        run_config={"ops": {"gene_texts": {"config": {"views": list(views), "symbols": symbols}}}})]
    for backbone in backbones:
        for view in views:
            runs.append(materialize(everything, selection=["gene_embeddings", "gene_task_results"], instance=instance,
                                    resources=resources, partition_key=backbone_view_key(backbone, view)))
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


def test_leaderboard_has_every_backbone_and_task(pipeline):
    board = output(pipeline, "leaderboard")
    assert set(board["backbone"]) == set(BACKBONES)
    assert set(board["task"]) == {"dosage_sensitive_tfs", "bivalent_vs_lys4_only", "bivalent_vs_no_methylation",
                                  "long_vs_short_range_tfs"}
    assert (board["n_folds"] == 5).all()


def test_minilm_beats_random_and_random_is_near_chance(pipeline):
    board = output(pipeline, "leaderboard").set_index(["backbone", "task", "classifier"])["roc_auc_mean"]
    random_mean = board.loc["random-gaussian"].mean()
    assert 0.35 < random_mean < 0.65
    minilm_dosage = board.loc[("all-MiniLM-L6-v2", "dosage_sensitive_tfs", "logistic_regression")]
    assert minilm_dosage > 0.75
    assert board.loc["all-MiniLM-L6-v2"].mean() > random_mean + 0.15


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
    assert "MANIFEST.json" in names and "leaderboard.csv" in names
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

"""Recomputation from nothing gives the same release: two cold runs of a small real graph, byte for byte."""

import hashlib
import json
import os
from pathlib import Path

import pytest
from dagster import DagsterInstance, Definitions, materialize

from gene_assets.automation.sensors import embedding_job
from gene_assets.definitions import all_asset_checks, all_assets, backbone_job, release_job, sources_job
from gene_assets.embeddings.partitions import backbone_view_key
from gene_assets.orchestration.partitions import register_backbones
from gene_assets.release.dvc_repository import DvcReleaseRepository
from gene_assets.resources import temporary_resources
from gene_assets.runs import Launch, PipelineRunner, run_processes
from gene_assets.settings import DVC_REMOTE_ENV, HOME_ENV, RELEASE_REPO_ENV
from gene_assets.settings import EMBEDDING_CACHE_ENV as CACHE_DIR_ENV

from .conftest import make_release_repo

BACKBONES = ["bag-of-words", "tfidf"]
SOURCES = [
    "gene_catalog",
    "gene_summaries",
    "gene_texts",
    "gene_universes",
    "geneformer_labels",
    "gene_type_labels",
    "gene_property_labels",
]
RESULTS = ["geneformer_results", "gene_type_results", "gene_property_results"]
EVALUATION_CONFIG = {"ops": {name: {"config": {"n_bootstrap": 200}} for name in RESULTS}}
ANNOTATION_CACHE_ENV = "GENE_ASSETS_TEST_ANNOTATION_CACHE"


def cold_run(home, repo, remote, symbols, annotation_cache):
    """Every asset from empty storage, an empty embedding cache and a new instance, released into `repo`: one
    in-process run after another."""
    resources = temporary_resources(home, release_repo=repo, remote=remote, annotation_cache=annotation_cache)
    everything = [*all_assets, *all_asset_checks]
    with pytest.MonkeyPatch.context() as patch, DagsterInstance.ephemeral() as instance:
        patch.setenv(CACHE_DIR_ENV, str(home / "embedding_cache"))
        register_backbones(instance, BACKBONES)
        runs = [
            materialize(
                everything,
                selection=SOURCES,
                instance=instance,
                resources=resources,
                run_config=texts_config(symbols),
            )
        ]
        for backbone in BACKBONES:
            runs.append(
                materialize(
                    everything,
                    selection=["gene_embeddings", *RESULTS],
                    instance=instance,
                    resources=resources,
                    partition_key=backbone_view_key(backbone, "summary"),
                    run_config=EVALUATION_CONFIG,
                )
            )
        release = materialize(
            everything,
            selection=["leaderboard", "term_masking", "embeddings_release"],
            instance=instance,
            resources=resources,
        )
        assert all(run.success for run in [*runs, release])
        return release


def texts_config(symbols) -> dict:
    return {"ops": {"gene_texts": {"config": {"views": ["summary"], "symbols": symbols}}}}


def definitions_from_environment() -> Definitions:
    """The Definitions of `concurrent_cold_run`, rebuilt from the environment in each run's own process."""
    home = Path(os.environ[HOME_ENV])
    resources = temporary_resources(
        home,
        release_repo=Path(os.environ[RELEASE_REPO_ENV]),
        remote=Path(os.environ[DVC_REMOTE_ENV]),
        annotation_cache=Path(os.environ[ANNOTATION_CACHE_ENV]),
    )
    jobs = [sources_job, embedding_job, backbone_job, release_job]
    return Definitions(assets=all_assets, asset_checks=all_asset_checks, jobs=jobs, resources=resources)


def concurrent_cold_run(home, repo, remote, symbols, annotation_cache) -> None:
    """The same graph as `cold_run` launched as `gene-assets run` launches it: sources, the embeddings one by one,
    then the backbones' scoring runs side by side, each in its own process, on an instance kept on disk."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            HOME_ENV: home,
            RELEASE_REPO_ENV: repo,
            DVC_REMOTE_ENV: remote,
            ANNOTATION_CACHE_ENV: annotation_cache,
            CACHE_DIR_ENV: home / "embedding_cache",
        }.items():
            patch.setenv(name, str(value))
        defs = definitions_from_environment()
        (home / "dagster_home").mkdir(parents=True)
        with DagsterInstance.local_temp(str(home / "dagster_home")) as instance:
            register_backbones(instance, BACKBONES)
            runner = PipelineRunner(
                defs, instance, concurrent_runs=2, definitions=f"{__name__}:definitions_from_environment"
            )
            assert runner.execute("sources_job", run_config=texts_config(symbols))
            partitions = [backbone_view_key(backbone, "summary") for backbone in BACKBONES]
            assert all(runner.execute("embedding_job", partition) for partition in partitions)
            scoring = [Launch("backbone_job", p, EVALUATION_CONFIG, tuple(RESULTS)) for p in partitions]
            assert runner.execute_all(scoring) == [True, True]
            assert runner.execute("release_job") and not runner.failed
            pids = {
                run.run_id: run_processes(instance, run.run_id)[0]
                for run in instance.get_runs()
                if run.job_name == "backbone_job"
            }
            assert len(pids) == 2 and os.getpid() not in set().union(*pids.values())  # each in its own process


def release_digests(repo) -> dict[str, str]:
    """sha256 of every released file in `repo`'s data/, MANIFEST.json included."""
    data = repo / "data"
    return {
        str(p.relative_to(data)): hashlib.sha256(p.read_bytes()).hexdigest() for p in data.rglob("*") if p.is_file()
    }


@pytest.mark.slow
def test_cold_recomputation_publishes_byte_identical_release_files(tmp_path, task_symbols, annotation_cache):
    """Two cold runs, each with its own storage, embedding cache, instance and release repository (as two checkouts
    in two directories have), the first one in-process run after another, the second with its scoring runs side by
    side in their own processes, release byte-identical files, MANIFEST.json included, so both data.dvc hold one
    md5; published again into the first repository, the second run's files reuse its version. Worker processes, forests,
    the multinomial probe's warm starts, the truncated SVD of TF-IDF, the leaderboard's bootstrap bounds and ties and
    the term-masking table's skip reasons all take part. (The random control is left out: its forests on small tasks
    take minutes, and its units run on the same worker pool.)"""
    remote = tmp_path / "remote"
    repos = [make_release_repo(tmp_path / f"checkout_{n}") for n in (1, 2)]
    symbols = task_symbols[::2]  # every other gene of the small Geneformer tasks: a spread over all of them
    first = cold_run(tmp_path / "home_1", repos[0], remote, symbols, annotation_cache)
    concurrent_cold_run(tmp_path / "home_2", repos[1], remote, symbols, annotation_cache)
    digests = [release_digests(repo) for repo in repos]
    changed = sorted(
        name for name in digests[0].keys() | digests[1].keys() if digests[0].get(name) != digests[1].get(name)
    )
    assert not changed, f"files that differ between two cold runs: {changed}"
    assert (repos[0] / "data.dvc").read_bytes() == (repos[1] / "data.dvc").read_bytes()
    manifest = json.loads((repos[1] / "data" / "MANIFEST.json").read_text())
    files = {name: (repos[1] / "data" / name).read_bytes() for name in manifest["files"]}
    describe = {key: value for key, value in manifest.items() if key not in ("version", "files")}
    again = DvcReleaseRepository(repo_dir=str(repos[0]), remote_url=str(remote)).publish(files, describe)
    assert not again.created and again.version == manifest["version"] == "embeddings-v1"
    assert len(manifest["files"]) >= 8 and manifest["protocol"] == "published"
    leaderboard = first.output_for_node("leaderboard")  # the published protocol, as the graph ran it
    assert set(leaderboard["protocol"]) == {"published"}
    assert set(leaderboard.loc[leaderboard["kind"] == "multiclass", "classifier"]) == {"logistic_regression"}
    assert set(leaderboard.loc[leaderboard["classifier"] == "random_forest", "universe"]) == {"all_genes"}


def test_run_puts_the_protocol_in_every_gene_task_run_and_so_in_its_output_settings(monkeypatch):
    """`gene-assets run --protocol full` configures every results asset and the leaderboard with it (recorded as
    their output settings, so switching protocol re-runs them: test_versions.py)."""
    from gene_assets import runs
    from gene_assets.definitions import defs
    from gene_assets.leaderboard.inputs import RESULT_ASSETS
    from gene_assets.orchestration.pipeline import run_pipeline

    launched, batches = [], []
    monkeypatch.setattr(
        runs,
        "execute_launch",
        lambda defs, instance, launch, run_id=None: launched.append((launch.job_name, launch.run_config)) or True,
    )
    execute_all = runs.PipelineRunner.execute_all
    monkeypatch.setattr(
        runs.PipelineRunner,
        "execute_all",
        lambda self, launches: (
            batches.append([(x.job_name, x.partition) for x in launches]) or execute_all(self, launches)
        ),
    )
    with DagsterInstance.ephemeral() as instance:
        run_pipeline(
            defs,
            instance,
            ["bag-of-words", "tfidf"],
            ["summary"],
            release=False,
            protocol="full",
            cell_datasets={"xin": {}, "wang": {}},
        )
        # sources, the embeddings and the cell datasets one by one; then one batch of the scoring and cell runs
        assert [job for job, _ in launched[:5]] == ["sources_job", "embedding_job", "embedding_job"] + [
            "cell_datasets_job"
        ] * 2
        assert batches == [
            [("backbone_job", "bag-of-words|summary"), ("backbone_job", "tfidf|summary")]
            + [("cells_job", f"{b}|{d}") for d in ("xin", "wang") for b in ("bag-of-words", "tfidf")]
        ]
        assert [job for job, _ in launched[-2:]] == ["batch_effect_job", "release_job"]
        configs = dict(launched[1:])
        assert configs["backbone_job"] == {"ops": {name: {"config": {"protocol": "full"}} for name in RESULT_ASSETS}}
        assert configs["release_job"] == {"ops": {"leaderboard": {"config": {"protocol": "full"}}}}

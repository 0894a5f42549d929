"""Recomputation from nothing gives the same release: two cold runs of a small real graph, byte for byte."""

import hashlib
import json

import pytest
from dagster import AssetKey, DagsterInstance, materialize

from gene_assets.definitions import all_asset_checks, all_assets
from gene_assets.embeddings.partitions import backbone_view_key
from gene_assets.orchestration.partitions import register_backbones
from gene_assets.release.dvc_repository import DvcReleaseRepository
from gene_assets.resources import temporary_resources
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
EVALUATION = {"n_bootstrap": 200}


def cold_run(home, repo, remote, symbols, annotation_cache):
    """Every asset from empty storage, an empty embedding cache and a new instance, released into `repo`."""
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
                run_config={"ops": {"gene_texts": {"config": {"views": ["summary"], "symbols": symbols}}}},
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
                    run_config={"ops": {name: {"config": EVALUATION} for name in RESULTS}},
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


def release_digests(repo) -> dict[str, str]:
    """sha256 of every released file in `repo`'s data/, MANIFEST.json included."""
    data = repo / "data"
    return {
        str(p.relative_to(data)): hashlib.sha256(p.read_bytes()).hexdigest() for p in data.rglob("*") if p.is_file()
    }


@pytest.mark.slow
def test_cold_recomputation_publishes_byte_identical_release_files(tmp_path, task_symbols, annotation_cache):
    """Two cold runs, each with its own storage, embedding cache, instance and release repository (as two checkouts
    in two directories have), release byte-identical files, MANIFEST.json included, so both data.dvc hold one md5;
    published again into the first repository, the second run's files reuse its version. Worker processes, forests,
    the multinomial probe's warm starts, the truncated SVD of TF-IDF, the leaderboard's bootstrap bounds and ties and
    the term-masking table's skip reasons all take part. (The random control is left out: its forests on small tasks
    take minutes, and its units run on the same worker pool.)"""
    remote = tmp_path / "remote"
    repos = [make_release_repo(tmp_path / f"checkout_{n}") for n in (1, 2)]
    symbols = task_symbols[::2]  # every other gene of the small Geneformer tasks: a spread over all of them
    first, second = (
        cold_run(tmp_path / f"home_{n}", repo, remote, symbols, annotation_cache) for n, repo in enumerate(repos, 1)
    )
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
    released = [run.output_for_node("embeddings_release").drop(columns="git_revision") for run in (first, second)]
    assert released[0].equals(released[1]) and len(released[0]) >= 8  # each repository's own commit aside
    assert manifest["protocol"] == "published"
    leaderboard = second.output_for_node("leaderboard")  # the published protocol, as the graph ran it
    assert set(leaderboard["protocol"]) == {"published"}
    assert set(leaderboard.loc[leaderboard["kind"] == "multiclass", "classifier"]) == {"logistic_regression"}
    assert set(leaderboard.loc[leaderboard["classifier"] == "random_forest", "universe"]) == {"all_genes"}


def test_run_puts_the_protocol_in_every_gene_task_run_and_so_in_its_fingerprint(monkeypatch):
    """`gene-assets run --protocol full` configures every results asset and the leaderboard with it; the runs'
    fingerprints then differ from the published protocol's, so switching protocol re-runs them."""
    from gene_assets.definitions import defs
    from gene_assets.leaderboard.inputs import RESULT_ASSETS
    from gene_assets.orchestration.pipeline import run_pipeline
    from gene_assets.runs import PipelineRunner, fingerprint

    launched = []
    monkeypatch.setattr(
        PipelineRunner,
        "execute",
        lambda self, job, partition=None, run_config=None, selection=None: launched.append((job, run_config)) or True,
    )
    with DagsterInstance.ephemeral() as instance:
        run_pipeline(defs, instance, ["bag-of-words"], ["summary"], release=False, protocol="full")
        configs = dict(launched[1:])
        assert configs["backbone_job"] == {"ops": {name: {"config": {"protocol": "full"}} for name in RESULT_ASSETS}}
        assert configs["release_job"] == {"ops": {"leaderboard": {"config": {"protocol": "full"}}}}
        graph, keys = defs.resolve_asset_graph(), {AssetKey(name) for name in RESULT_ASSETS}
        published = {"ops": {name: {"config": {"protocol": "published"}} for name in RESULT_ASSETS}}
        digests = {
            fingerprint(instance, graph, keys, backbone_view_key("bag-of-words", "summary"), config, [], defs.resources)
            for config in (configs["backbone_job"], published)
        }
        assert len(digests) == 2

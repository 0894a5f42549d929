"""The Dagster CLI's string asset selection, the UI (`dg dev`) serving the graph with backbone partitions, and the docs
site as `make docs` serves it."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from gene_assets.leaderboard.inputs import LEADERBOARD_INPUTS
from gene_assets.settings import PROJECT_ROOT

from .conftest import free_port, graphql, running_ui, stop_process_tree

BIN = Path(sys.executable).parent


@pytest.mark.slow
def test_dagster_cli_string_selection_materializes(isolated_env):
    result = subprocess.run(
        [str(BIN / "dagster"), "asset", "materialize", "-m", "gene_assets.definitions", "--select", "gene_catalog"],
        cwd=PROJECT_ROOT,
        env=isolated_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "RUN_SUCCESS" in result.stderr + result.stdout
    stored = Path(isolated_env["GENE_ASSETS_HOME"]) / "storage" / "gene_catalog.parquet"
    assert stored.stat().st_size > 1_000_000
    assert (Path(isolated_env["DAGSTER_HOME"]) / "history" / "runs.db").exists()
    assert not (PROJECT_ROOT / "storage").exists()


@pytest.mark.slow
def test_ui_serves_graph_with_backbone_and_cell_dataset_partitions(isolated_env):
    env = isolated_env
    subprocess.run(
        [str(BIN / "gene-assets"), "register-backbones"], cwd=PROJECT_ROOT, env=env, check=True, capture_output=True
    )
    with running_ui(env) as port:
        nodes = graphql(port, "{ assetNodes { assetKey { path } } }")["assetNodes"]
        assert {n["assetKey"]["path"][-1] for n in nodes} >= {
            "gene_catalog",
            "gene_texts",
            "gene_embeddings",
            "gene_universes",
            "geneformer_labels",
            "perturbation_signatures",
            "cell_datasets",
            "cell_embeddings",
            *LEADERBOARD_INPUTS,
            "leaderboard",
            "embeddings_release",
        }
        partitions = graphql(
            port,
            """{ assetNodeOrError(assetKey: {path: ["gene_embeddings"]}) {
            ... on AssetNode { partitionKeysByDimension { name partitionKeys } } } }""",
        )
        dims = {d["name"]: d["partitionKeys"] for d in partitions["assetNodeOrError"]["partitionKeysByDimension"]}
        assert set(dims["backbone"]) >= {"all-MiniLM-L6-v2", "bag-of-words", "random-gaussian"}
        assert set(dims["view"]) == {"symbol", "summary", "card", "go"}
        partitions = graphql(
            port,
            """{ assetNodeOrError(assetKey: {path: ["cell_embeddings"]}) {
            ... on AssetNode { partitionKeysByDimension { name partitionKeys } } } }""",
        )
        dims = {d["name"]: d["partitionKeys"] for d in partitions["assetNodeOrError"]["partitionKeysByDimension"]}
        assert set(dims["cell_dataset"]) == {"pbmc68k_reduced", "pbmc3k", "xin", "wang", "headneck"}


@pytest.mark.slow
def test_gene_assets_lists_backbones_and_verifies_releases(release_repo, tmp_path):
    from gene_assets.cli import main
    from gene_assets.release.dvc_repository import DvcReleaseRepository

    listing = subprocess.run([str(BIN / "gene-assets"), "backbones"], capture_output=True, text=True, check=True).stdout
    assert "all-MiniLM-L6-v2" in listing and "Qwen/Qwen3-Embedding-8B" in listing
    DvcReleaseRepository(repo_dir=str(release_repo), remote_url=str(tmp_path / "remote")).publish({"a.csv": b"1"}, {})
    assert main(["verify", str(release_repo / "data")]) == 0
    (release_repo / "data" / "a.csv").write_bytes(b"2")
    result = subprocess.run(
        [str(BIN / "gene-assets"), "verify", str(release_repo / "data")], capture_output=True, text=True
    )
    assert result.returncode == 2 and "a.csv" in result.stderr and "dvc pull --force" in result.stderr
    assert "Traceback" not in result.stderr


IN_PROCESS = {"execution": {"config": {"in_process": {}}}}
"""Run config that runs every step of a `dagster asset materialize` run in the run's own process, for the runs a test
only needs for its state (a process per step costs a definitions import each)."""


def _materialize(env: dict, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(BIN / "dagster"), "asset", "materialize", "-m", "gene_assets.definitions", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_sigkill_during_embedding_loses_nothing_and_the_rerun_matches_an_uninterrupted_run(
    isolated_env, task_symbols, tmp_path
):
    """Kill `dagster asset materialize` with SIGKILL after two embedding checkpoints, re-run it with `gene-assets
    materialize`: the dead run is failed and its gpu pool slot freed, every stored shard verifies, the re-run embeds
    only the rest, and the vectors equal those of an uninterrupted run."""
    from gene_assets.embeddings.cache import EmbeddingCache
    from gene_assets.embeddings.device import EmbeddingDevice
    from gene_assets.embeddings.encoders import vector_settings
    from gene_assets.embeddings.registry import get_backbone
    from gene_assets.settings import EMBEDDING_CACHE_ENV as CACHE_DIR_ENV

    env = {**isolated_env, CACHE_DIR_ENV: str(tmp_path / "cache")}
    texts = {"ops": {"gene_texts": {"config": {"views": ["summary"], "symbols": task_symbols[:200]}}}, **IN_PROCESS}
    _materialize(env, "--select", "gene_catalog,gene_summaries,gene_texts", "--config-json", json.dumps(texts))
    subprocess.run(
        [str(BIN / "gene-assets"), "register-backbones"], cwd=PROJECT_ROOT, env=env, check=True, capture_output=True
    )
    checkpoints_of_32 = {"ops": {"gene_embeddings": {"config": {"checkpoint_texts": 32}}}}

    def embed(run_config: dict) -> list[str]:
        return [
            "--select",
            "gene_embeddings",
            "--partition",
            "all-MiniLM-L6-v2|summary",
            "--config-json",
            json.dumps(run_config),
        ]

    minilm = get_backbone("all-MiniLM-L6-v2")
    precision = EmbeddingDevice(device="cpu").placement(minilm).precision  # remembered: the run below reuses it
    cache = EmbeddingCache(vector_settings(minilm, precision), root=tmp_path / "cache")

    process = subprocess.Popen(
        [str(BIN / "dagster"), "asset", "materialize", "-m", "gene_assets.definitions", *embed(checkpoints_of_32)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 300
        while len(cache.shard_paths("summary")) < 2:
            assert process.poll() is None and time.time() < deadline, "the run ended before two checkpoints were stored"
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    stored = cache.shard_paths("summary")
    assert len(cache.shards("summary")) == len(stored) >= 2  # every shard passes its checksum; none was deleted
    output = (
        Path(env["GENE_ASSETS_HOME"])
        / "storage"
        / "gene_embeddings"
        / "backbone=all-MiniLM-L6-v2"
        / "view=summary.parquet"
    )
    assert not output.exists()

    rerun = subprocess.run(
        [
            str(BIN / "gene-assets"),
            "materialize",
            "gene_embeddings",
            "--backbone",
            "all-MiniLM-L6-v2",
            "--view",
            "summary",
            "--config-json",
            json.dumps(checkpoints_of_32),
        ],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "marked failed, its gpu pool slot freed" in rerun.stderr and "succeeded" in rerun.stdout
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
        with DagsterInstance.get() as instance:
            statuses = [r.status for r in instance.get_runs(filters=RunsFilter(job_name="__ASSET_JOB"))]
            assert not instance.event_log_storage.get_concurrency_run_ids()
    assert DagsterRunStatus.FAILURE in statuses and DagsterRunStatus.STARTED not in statuses
    resumed_table = pd.read_parquet(output)
    checkpoints = -(-resumed_table["text_sha256"].nunique() // 32)
    assert set(stored) <= set(cache.shard_paths("summary")) and len(cache.shard_paths("summary")) == checkpoints
    output.unlink()
    _materialize({**env, CACHE_DIR_ENV: str(tmp_path / "fresh_cache")}, *embed({**checkpoints_of_32, **IN_PROCESS}))
    uninterrupted = pd.read_parquet(output)
    assert len(resumed_table) > 150 and resumed_table["entrez_id"].tolist() == uninterrupted["entrez_id"].tolist()
    assert np.array_equal(np.stack(resumed_table["embedding"]), np.stack(uninterrupted["embedding"]))
    assert not list((tmp_path / "cache").rglob("*.tmp"))


@pytest.mark.slow
def test_cli_materializes_a_partition_releases_and_pulls_a_verified_version(isolated_env, task_symbols, tmp_path):
    """gene-assets materialize → release → pull at the version → verify, as a user drives it from a terminal; bad
    selections and backbones exit 2 with the reason and no traceback."""
    from .conftest import make_release_repo

    repo = make_release_repo(tmp_path / "releases")
    env = {**isolated_env, "GENE_ASSETS_RELEASE_REPO": str(repo), "GENE_ASSETS_DVC_REMOTE": str(tmp_path / "remote")}
    (tmp_path / "remote").mkdir()

    def gene_assets(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "gene-assets"), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )

    texts = {"ops": {"gene_texts": {"config": {"views": ["summary"], "symbols": task_symbols[:300]}}}}
    sources = gene_assets(
        "materialize",
        "gene_catalog",
        "gene_summaries",
        "gene_texts",
        "gene_universes",
        "geneformer_labels",
        "--config-json",
        json.dumps(texts),
    )
    assert sources.returncode == 0 and "succeeded" in sources.stdout, sources.stderr[-3000:]
    scored = gene_assets(
        "materialize",
        "gene_embeddings",
        "geneformer_results",
        "--backbone",
        "bag-of-words",
        "--view",
        "summary",
        "--config-json",
        json.dumps({"ops": {"geneformer_results": {"config": {"n_bootstrap": 100}}}}),
    )
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert "materialized gene_embeddings, geneformer_results for bag-of-words|summary" in scored.stdout
    assert "embedded" in scored.stderr  # progress in the terminal

    unknown = gene_assets("materialize", "gene_embeddings", "--backbone", "not-a-model", "--view", "summary")
    assert unknown.returncode == 2 and "not-a-model" in unknown.stderr and "Traceback" not in unknown.stderr
    mixed = gene_assets(
        "materialize", "cell_datasets", "gene_embeddings", "--backbone", "bag-of-words", "--view", "summary"
    )
    assert mixed.returncode == 2 and "mixes partitionings" in mixed.stderr and "Traceback" not in mixed.stderr
    unpartitioned = gene_assets("materialize", "geneformer_results")
    assert unpartitioned.returncode == 2 and "give --backbone with --view" in unpartitioned.stderr

    released = gene_assets("release")
    assert released.returncode == 0, released.stderr[-3000:]
    assert "Release embeddings-v1" in released.stdout
    pulled = gene_assets("pull", "embeddings-v1", "--repo", str(repo), "--out", str(tmp_path / "consumer"))
    assert pulled.returncode == 0 and "files verified" in pulled.stdout, pulled.stderr[-2000:]
    table = pd.read_parquet(tmp_path / "consumer" / "embeddings" / "bag-of-words__summary.parquet")
    assert len(table) > 250 and (tmp_path / "consumer" / "leaderboard.csv").exists()
    assert gene_assets("verify", str(tmp_path / "consumer")).returncode == 0
    missing = gene_assets("pull", "embeddings-v7", "--repo", str(repo), "--out", str(tmp_path / "v7"))
    assert missing.returncode == 2 and "has no release 'embeddings-v7'" in missing.stderr


@pytest.mark.slow
def test_unchanged_runs_are_skipped_and_a_change_reruns_what_depends_on_it(tmp_path, task_symbols, annotation_cache):
    """`gene-assets run` launches a job only for its stale or missing asset partitions (a new code version, new
    upstream data, changed config, a stored file gone), and only those and what follows them in the job."""
    from dagster import Definitions

    from gene_assets.automation.sensors import embedding_job
    from gene_assets.definitions import all_asset_checks, all_assets, sources_job
    from gene_assets.orchestration.partitions import register_backbones
    from gene_assets.resources import temporary_resources
    from gene_assets.runs import PipelineRunner

    from .conftest import make_release_repo

    resources = temporary_resources(
        tmp_path,
        release_repo=make_release_repo(tmp_path / "repo"),
        remote=tmp_path / "remote",
        annotation_cache=annotation_cache,
    )
    defs = Definitions(
        assets=all_assets, asset_checks=all_asset_checks, jobs=[sources_job, embedding_job], resources=resources
    )

    def texts(n: int) -> dict:
        return {"ops": {"gene_texts": {"config": {"views": ["summary"], "symbols": task_symbols[:n]}}}}

    with DagsterInstance.ephemeral() as instance:
        register_backbones(instance, ["bag-of-words"])
        runner = PipelineRunner(defs, instance)
        partition = "bag-of-words|summary"
        assert runner.execute("sources_job", run_config=texts(200)) and runner.execute("embedding_job", partition)
        assert runner.launched == 2 and not runner.skipped
        assert runner.execute("sources_job", run_config=texts(200)) and runner.execute("embedding_job", partition)
        assert runner.launched == 2 and runner.skipped == ["sources_job", f"embedding_job {partition}"]

        assert runner.execute("sources_job", run_config=texts(150))  # new config: gene_texts and what reads it
        assert "gene_catalog" not in runner.launches[-1].selection and "gene_texts" in runner.launches[-1].selection
        assert runner.execute("embedding_job", partition) and runner.launched == 4
        stored = tmp_path / "storage" / "gene_embeddings" / "backbone=bag-of-words" / "view=summary.parquet"
        assert len(pd.read_parquet(stored)) < 200
        stored.unlink()  # an output file that is gone is made again
        assert runner.execute("embedding_job", partition) and runner.launched == 5 and stored.exists()
        forced = PipelineRunner(defs, instance, force=True)
        assert forced.execute("embedding_job", partition) and forced.launched == 1
        again = PipelineRunner(defs, instance)
        assert again.execute("embedding_job", partition) and again.launched == 0  # the forced run is current


@pytest.mark.slow
@pytest.mark.browser
def test_an_input_file_edit_shows_unsynced_on_its_reader_in_the_asset_graph(isolated_env, data_dir, tmp_path):
    """After the Chen 2020 table gains a row, `gene-assets status` calls geneformer_labels stale, with the file as the
    cause, and the UI's asset graph marks that node, and no other, Unsynced (headless Chromium)."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium package is missing: `make setup` installs it (apt-get install chromium)."
    data = tmp_path / "data"
    shutil.copytree(data_dir, data, copy_function=os.link, ignore=shutil.ignore_patterns("single_cell"))
    env = {**isolated_env, "GENE_ASSETS_DATA_DIR": str(data)}

    def gene_assets(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "gene-assets"), *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600
        )

    made = gene_assets("materialize", "gene_catalog", "geneformer_labels")
    assert made.returncode == 0, made.stderr[-3000:]
    chen = data / "gene_tasks/geneformer/chen2020_natcommun_41467_2020_16106_MOESM4_ESM.csv"
    table = chen.read_text()
    chen.unlink()  # a new file: the real data directory's stays as it is
    chen.write_text(table + "NOT_A_GENE" + "," * table.splitlines()[0].count(",") + "long-range TF\n")
    status = gene_assets("status", "--backbones", "bag-of-words", "--cell-datasets", "--no-release")
    assert status.returncode == 0, status.stderr[-3000:]
    lines = {line.split()[1]: line for line in status.stdout.splitlines() if line.startswith(("stale", "fresh"))}
    assert lines["geneformer_labels"].split()[0] == "stale"
    assert "upstream data changed: data_directory/chen2020_tf_range" in lines["geneformer_labels"]
    assert "gene_catalog" not in lines  # fresh, with no cause to show

    artifacts = PROJECT_ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    with running_ui(env) as port, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(90_000)  # the UI polls without pause, so waits are on elements, never on network idle
        page.add_locator_handler(page.get_by_role("button", name="Skip"), lambda skip: skip.click())
        page.goto(
            f"http://127.0.0.1:{port}/assets/geneformer_labels?view=lineage&lineageScope=upstream&lineageDepth=1",
            wait_until="domcontentloaded",
        )
        page.get_by_text("gene_catalog", exact=True).first.wait_for()
        marker = page.get_by_text("Unsynced (", exact=False)
        marker.first.wait_for(timeout=60_000)
        page.screenshot(path=artifacts / "ui_unsynced_after_input_edit.png")
        marked = [  # each marker (the page header's and the graph node's) with its nearest named container
            marker.nth(i).evaluate(
                """(element) => {
                    for (let node = element; node; node = node.parentElement) {
                        if (/geneformer_labels|gene_catalog/.test(node.innerText)) return node.innerText;
                    }
                    return "";
                }"""
            )
            for i in range(marker.count())
        ]
        browser.close()
    assert marked and all("geneformer_labels" in text and "gene_catalog" not in text for text in marked), marked


@pytest.mark.browser
def test_the_docs_site_serves_a_reference_page_and_the_results_page_in_chromium(tmp_path):
    """`mkdocs serve` from the docs virtualenv, as `make docs` starts it (strict: a broken link or anchor stops it):
    Chromium opens the environment-variable page, whose table the build renders from settings.ENVIRONMENT, and the
    results page."""
    from playwright.sync_api import sync_playwright

    mkdocs = PROJECT_ROOT / ".venv-docs" / "bin" / "mkdocs"
    assert mkdocs.exists(), f"{mkdocs} is missing: `make docs` installs the docs packages into .venv-docs."
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium package is missing: `make test` installs it (apt-get install chromium)."
    port = free_port()
    log_path = tmp_path / "mkdocs.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [str(mkdocs), "serve", "--strict", "--no-livereload", "-a", f"127.0.0.1:{port}"],
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).close()
                break
            except OSError:
                assert time.time() < deadline and server.poll() is None, log_path.read_text()[-3000:]
                time.sleep(1)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/environment/", wait_until="load")
            assert page.locator("h1").first.inner_text().startswith("Environment variables")
            cells = page.locator("table td:first-child code").all_inner_texts()
            assert set(cells) >= {"GENE_ASSETS_HOME", "GENE_ASSETS_DATA_DIR", "GENE_ASSETS_DVC_REMOTE"}
            page.get_by_role("link", name="Results", exact=True).first.click()
            page.wait_for_url(f"http://127.0.0.1:{port}/results/")
            assert page.title().startswith("Results") and page.locator("article h1").count() == 1
            browser.close()
    finally:
        stop_process_tree(server)

"""The Dagster CLI's string asset selection and the UI (`dg dev`) serving the graph with backbone partitions."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from gene_assets.settings import PROJECT_ROOT
from gene_assets.leaderboard.inputs import LEADERBOARD_INPUTS

BIN = Path(sys.executable).parent


@pytest.fixture
def isolated_env(tmp_path, annotation_cache, data_dir):
    """DAGSTER_HOME and GENE_ASSETS_HOME in tmp_path, sharing the verified annotation cache."""
    home = tmp_path / "gene_assets_home"
    (home / "cache").mkdir(parents=True)
    (home / "cache" / "bioconductor").symlink_to(annotation_cache)
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text((PROJECT_ROOT / "dagster_home" / "dagster.yaml").read_text())
    return {**os.environ, "DAGSTER_HOME": str(dagster_home), "GENE_ASSETS_HOME": str(home),
            "GENE_ASSETS_DATA_DIR": str(data_dir)}


def test_dagster_cli_string_selection_materializes(isolated_env):
    result = subprocess.run(
        [str(BIN / "dagster"), "asset", "materialize", "-m", "gene_assets.definitions", "--select", "gene_catalog"],
        cwd=PROJECT_ROOT, env=isolated_env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "RUN_SUCCESS" in result.stderr + result.stdout
    stored = Path(isolated_env["GENE_ASSETS_HOME"]) / "storage" / "gene_catalog.parquet"
    assert stored.stat().st_size > 1_000_000
    assert (Path(isolated_env["DAGSTER_HOME"]) / "history" / "runs.db").exists()
    assert not (PROJECT_ROOT / "storage").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]


def _stop_tree(process: subprocess.Popen) -> None:
    """Stop `dg dev` and everything it started, by PID; SIGKILL whatever ignores SIGTERM."""
    try:
        tree = [process.pid] + [c.pid for c in psutil.Process(process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = [process.pid]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in tree:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + 10
        while time.time() < deadline and any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in tree):
            time.sleep(0.2)
    process.wait(timeout=10)
    alive = [p for p in tree if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"processes still running: {alive}"


def test_ui_serves_graph_with_backbone_partitions(isolated_env):
    env = isolated_env
    subprocess.run([str(BIN / "gene-assets"), "register-backbones"], cwd=PROJECT_ROOT, env=env, check=True, capture_output=True)
    port = _free_port()
    log = open(Path(env["DAGSTER_HOME"]) / "dg_dev.log", "w")
    process = subprocess.Popen([str(BIN / "dg"), "dev", "--host", "127.0.0.1", "--port", str(port)],
                               cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 180
        nodes = None
        while time.time() < deadline and nodes is None:
            try:
                data = _graphql(port, "{ assetNodes { assetKey { path } } }")
                if data["assetNodes"]:
                    nodes = data["assetNodes"]
            except OSError:
                time.sleep(2)
        assert nodes, (Path(env["DAGSTER_HOME"]) / "dg_dev.log").read_text()[-3000:]
        assert {n["assetKey"]["path"][-1] for n in nodes} >= {
            "gene_catalog", "gene_texts", "gene_embeddings", "gene_universes", "geneformer_labels",
            "perturbation_signatures", *LEADERBOARD_INPUTS,
            "leaderboard", "embeddings_release"}
        partitions = _graphql(port, """{ assetNodeOrError(assetKey: {path: ["gene_embeddings"]}) {
            ... on AssetNode { partitionKeysByDimension { name partitionKeys } } } }""")
        dims = {d["name"]: d["partitionKeys"] for d in partitions["assetNodeOrError"]["partitionKeysByDimension"]}
        assert set(dims["backbone"]) >= {"all-MiniLM-L6-v2", "bag-of-words", "random-gaussian"}
        assert set(dims["view"]) == {"symbol", "summary", "card", "go"}
    finally:
        _stop_tree(process)
        log.close()



def test_gene_assets_lists_backbones_and_verifies_releases(release_repo, tmp_path):
    from gene_assets.cli import main
    from gene_assets.release.dvc_repository import DvcReleaseRepository

    listing = subprocess.run([str(BIN / "gene-assets"), "backbones"], capture_output=True, text=True, check=True).stdout
    assert "all-MiniLM-L6-v2" in listing and "Qwen/Qwen3-Embedding-8B" in listing
    DvcReleaseRepository(repo_dir=str(release_repo), remote_url=str(tmp_path / "remote")).publish({"a.csv": b"1"}, {})
    assert main(["verify", str(release_repo / "data")]) == 0
    (release_repo / "data" / "a.csv").write_bytes(b"2")
    result = subprocess.run([str(BIN / "gene-assets"), "verify", str(release_repo / "data")], capture_output=True, text=True)
    assert result.returncode == 2 and "a.csv" in result.stderr and "dvc pull --force" in result.stderr
    assert "Traceback" not in result.stderr

"""Shared fixtures: the real data directory, the verified annotation databases, release repositories."""

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

from gene_assets.embeddings.weights import model_cache_dir
from gene_assets.settings import EMBEDDING_CACHE_ENV as CACHE_DIR_ENV
from gene_assets.settings import PRECISION_DECISIONS_ENV as DECISIONS_ENV
from gene_assets.settings import PROJECT_ROOT, default_data_dir, gene_assets_home
from gene_assets.sources.data_directory import DataDirectory
from gene_assets.storage import write_stored


@pytest.fixture(scope="session", autouse=True)
def _embedding_cache_in_a_temporary_directory(tmp_path_factory):
    """Tests never read or write the user's embedding cache or remembered precision decisions."""
    previous = {name: os.environ.get(name) for name in (CACHE_DIR_ENV, DECISIONS_ENV)}
    os.environ[CACHE_DIR_ENV] = str(tmp_path_factory.mktemp("embedding_cache"))
    os.environ[DECISIONS_ENV] = str(tmp_path_factory.mktemp("precision") / "decisions.json")
    yield
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


REAL_DATA_FIXTURES = ("data_dir", "annotation_cache")
"""Fixtures that stand for real inputs: the data directory (../shared/data) and Debian's org.Hs.eg.db / GO.db."""


HEAVY_FILE_SLOTS = {
    "test_pipeline.py": 0,
    "test_cli_and_ui.py": 1,
    "test_reproducibility.py": 3,
    "test_readme_commands.py": 4,
    "test_stopping.py": 5,
    "test_untrusted_inputs.py": 6,
    "test_python_api.py": 7,
}
"""Where the files of the whole-graph, cold-recomputation and CLI-process tests (minutes each) go in the order `make
test` hands files to its two workers (`--dist loadfile --no-loadscope-reorder`: each worker starts with two files,
then takes the next when one is done): the two heaviest start at once, one per worker, the two cold runs follow the
CLI tests on theirs, the README commands go to whichever worker finishes first, then the Ctrl-C, untrusted-input and
Python API files (a minute or more each); the light files fill in after."""


def pytest_collection_modifyitems(items):
    """`real_data` on every test that reads real inputs, through one of REAL_DATA_FIXTURES or a fixture built on one
    (pytest lists a test's whole fixture closure), so the marker cannot drift from what the test uses; files in the
    order of HEAVY_FILE_SLOTS, every file's tests in their order."""
    for item in items:
        if set(REAL_DATA_FIXTURES) & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.real_data)
    files = list(dict.fromkeys(item.path.name for item in items))
    light = [name for name in files if name not in HEAVY_FILE_SLOTS]
    for name, slot in sorted(HEAVY_FILE_SLOTS.items(), key=lambda pair: pair[1]):
        if name in files:
            light.insert(min(slot, len(light)), name)
    position = {name: rank for rank, name in enumerate(light)}
    items.sort(key=lambda item: position[item.path.name])


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = Path(default_data_dir())
    DataDirectory(path=str(path)).root()  # a clear error when it is missing
    return path


@pytest.fixture(scope="session")
def annotation_cache() -> Path:
    """The project's annotation cache, shared across tests (fetched once, sha256-verified)."""
    return gene_assets_home() / "cache" / "bioconductor"


@pytest.fixture(scope="session")
def task_symbols(data_dir) -> list[str]:
    """Genes of the dosage, bivalent and TF-range tasks: a small real gene universe."""
    labels = pd.read_csv(data_dir / "gene_tasks/geneformer/geneformer_gene_tasks_long.csv")
    small = labels[~labels["task"].str.contains("genomewide|notch1")]
    return sorted(small["gene_name"].dropna().unique().tolist())


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def dvc(repo: Path, *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


def make_release_repo(repo: Path) -> Path:
    """An empty git repository with one commit, ready to receive releases."""
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "test@example.org")
    git(repo, "config", "user.name", "test")
    (repo / "README.md").write_text("release test repository\n")
    git(repo, "add", "README.md")
    git(repo, "commit", "-qm", "init")
    return repo


@pytest.fixture
def release_repo(tmp_path) -> Path:
    return make_release_repo(tmp_path / "release_repo")


@pytest.fixture(autouse=True)
def _no_analytics(monkeypatch):
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]


def stop_process_tree(process: subprocess.Popen) -> None:
    """Stop a process and everything it started, by PID; SIGKILL whatever ignores SIGTERM."""
    try:
        tree = [process.pid] + [c.pid for c in psutil.Process(process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = [process.pid]

    def running():
        return [p for p in tree if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]

    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in running():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + 10
        while time.time() < deadline and running():
            time.sleep(0.2)
    process.wait(timeout=10)
    assert not running(), f"processes still running: {running()}"


@contextmanager
def running_ui(env: dict) -> Iterator[int]:
    """`dg dev` on a free port with `env`, until the graph is served; stopped (with its children) on exit."""
    port = free_port()
    log_path = Path(env["DAGSTER_HOME"]) / "dg_dev.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "dg"), "dev", "--host", "127.0.0.1", "--port", str(port)],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.time() + 180
            while True:
                try:
                    if graphql(port, "{ assetNodes { assetKey { path } } }")["assetNodes"]:
                        break
                except OSError:
                    pass
                assert time.time() < deadline and process.poll() is None, log_path.read_text()[-3000:]
                time.sleep(2)
            yield port
        finally:
            stop_process_tree(process)


CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@contextmanager
def running_s3_server(log_dir: Path) -> Iterator[str]:
    """An S3 API server (moto's standalone `moto_server`) on a free port of 127.0.0.1, as its own process, stopped by
    PID on exit; its endpoint URL."""
    port = free_port()
    log_path = log_dir / "moto_server.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2)
                break
            except OSError:
                assert time.time() < deadline and process.poll() is None, log_path.read_text()[-2000:]
                time.sleep(0.3)
        yield endpoint
    finally:
        stop_process_tree(process)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> str:
    """The session's S3 API server (running_s3_server); its endpoint URL."""
    with running_s3_server(tmp_path_factory.mktemp("moto")) as endpoint:
        yield endpoint


@pytest.fixture
def s3_bucket(s3_server, monkeypatch, tmp_path) -> str:
    """A new bucket on the server; this process (and what it starts) reaches it through AWS_ENDPOINT_URL, with its own
    empty HOME (no user DVC config or cache)."""
    import boto3

    for name, value in {**CREDENTIALS, "AWS_ENDPOINT_URL": s3_server, "HOME": str(tmp_path / "home")}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("GENE_ASSETS_DVC_REMOTE", raising=False)
    bucket = f"gene-assets-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=bucket)
    return bucket


def store_frame(frame: pd.DataFrame, path: Path) -> None:
    """A DataFrame stored as an asset output is: parquet with its sha256 beside it."""
    write_stored(path, frame.to_parquet)


def planted_inputs(storage) -> None:
    """Storage with 240 genes G1..G240 (previous symbols OLD1..OLD240) whose summaries name a kinase domain when the
    gene is dosage-sensitive, a zinc finger otherwise."""
    rng = np.random.default_rng(0)
    ids = np.arange(1, 241)
    sensitive = ids % 2 == 0
    filler = ["nuclear", "protein", "binding", "expressed", "tissue", "cell", "membrane", "regulates"]
    texts = [
        f"Gene G{i}. {'kinase domain' if s else 'zinc finger'} " + " ".join(rng.choice(filler, 6))
        for i, s in zip(ids, sensitive)
    ]
    storage.mkdir(parents=True)
    store_frame(
        pd.DataFrame(
            {"entrez_id": ids, "symbol": [f"G{i}" for i in ids], "aliases": [f"OLD{i}" for i in ids], "ensembl_ids": ""}
        ),
        storage / "gene_catalog.parquet",
    )
    store_frame(
        pd.DataFrame(
            {
                "entrez_id": ids,
                "symbol": [f"G{i}" for i in ids],
                "view": "summary",
                "text": texts,
                "source": "refseq_summary",
                "text_sha256": [hashlib.sha256(t.encode()).hexdigest() for t in texts],
            }
        ),
        storage / "gene_texts.parquet",
    )
    store_frame(
        pd.DataFrame({"entrez_id": ids, "all_genes": True, "with_summary": True}), storage / "gene_universes.parquet"
    )
    labels = np.where(sensitive, "Dosage-sensitive TFs", "Dosage-insensitive TFs")
    store_frame(
        pd.DataFrame({"entrez_id": ids, "label": labels, "task": "dosage_sensitive_tfs"}),
        storage / "geneformer_labels.parquet",
    )


@pytest.fixture
def isolated_env(tmp_path, annotation_cache, data_dir):
    """DAGSTER_HOME and GENE_ASSETS_HOME in tmp_path, sharing the verified annotation cache and model cache (each
    verifies what it serves: the models by sha256)."""
    home = tmp_path / "gene_assets_home"
    (home / "cache").mkdir(parents=True)
    (home / "cache" / "bioconductor").symlink_to(annotation_cache)
    model_cache_dir().mkdir(parents=True, exist_ok=True)
    (home / "models").symlink_to(model_cache_dir())
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text((PROJECT_ROOT / "dagster_home" / "dagster.yaml").read_text())
    return {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "GENE_ASSETS_HOME": str(home),
        "GENE_ASSETS_DATA_DIR": str(data_dir),
    }

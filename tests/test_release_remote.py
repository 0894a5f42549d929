"""Releases on an S3 remote, consumed from a directory that shares nothing with the producer but the git repository
and the S3 server (moto's standalone server, started here as its own process on 127.0.0.1)."""

import io
import json
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from gene_assets.embeddings.table import GeneEmbeddings
from gene_assets.release.assets import embedding_file_name, parquet_bytes
from gene_assets.release.dvc_repository import DvcReleaseRepository, ReleaseHistory, dvc_remotes, verify_release

from .conftest import dvc, free_port, git, make_release_repo, stop_process_tree

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory) -> str:
    """`moto_server` on a free port of 127.0.0.1 until the module's tests are done; its endpoint URL."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto_server.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
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


def embeddings(seed: int) -> GeneEmbeddings:
    rng = np.random.default_rng(seed)
    genes = pd.DataFrame({"entrez_id": [7157, 672, 1956], "symbol": ["TP53", "BRCA1", "EGFR"]})
    return GeneEmbeddings(genes=genes, matrix=rng.normal(size=(3, 4)),
                          attrs={"backbone": "all-MiniLM-L6-v2", "view": "summary", "dims": 4})


def release_files(seed: int) -> dict[str, bytes]:
    table = embeddings(seed)
    return {embedding_file_name(table.attrs): parquet_bytes(table.to_arrow()), "leaderboard.csv": f"seed,{seed}\n".encode()}


def team_repository(path: Path, bucket: str) -> Path:
    """A release repository whose committed .dvc/config names the team's S3 remote; this clone pushes to it."""
    repo = make_release_repo(path)
    dvc(repo, "init", "--quiet")
    dvc(repo, "remote", "add", "--default", "releases", f"s3://{bucket}/gene_assets")
    git(repo, "add", ".dvc/config", ".dvcignore", ".dvc/.gitignore")
    git(repo, "commit", "-qm", "DVC with the team's release remote")
    dvc(repo, "remote", "default", "--local", "releases")
    return repo


def test_consumer_round_trip_over_s3(s3_bucket, tmp_path, monkeypatch, capsys):
    """Producer: two releases pushed to S3, the git history published as bare repositories (one with the tags, one
    branch only), the producer's clone and DVC cache deleted. Consumer, in its own directory with an empty cache:
    clone at the tag + dvc pull, dvc get, dvc import + dvc update, dvc.api.open and gene-assets pull."""
    from gene_assets.cli import main

    producer = team_repository(tmp_path / "producer", s3_bucket)
    repository = DvcReleaseRepository(repo_dir=str(producer))
    models = [{"backbone": "all-MiniLM-L6-v2", "view": "summary"}]
    first = repository.publish(release_files(1), {"models": models})
    second = repository.publish(release_files(2), {"models": models})
    assert (first.version, second.version, second.remote_url) == ("embeddings-v1", "embeddings-v2", f"s3://{s3_bucket}/gene_assets")
    assert dvc_remotes(git(producer, "show", "HEAD:.dvc/config")) == ("releases", {"releases": f"s3://{s3_bucket}/gene_assets"})
    mirror, branch_only = tmp_path / "mirror.git", tmp_path / "branch_only.git"
    git(tmp_path, "clone", "--bare", "--quiet", str(producer), str(mirror))
    git(tmp_path, "init", "--bare", "--quiet", "--initial-branch=main", str(branch_only))
    git(producer, "push", "--quiet", str(branch_only), "main")
    shutil.rmtree(producer)  # the consumer has the git repositories and the S3 server, nothing else

    consumer = tmp_path / "consumer"
    consumer.mkdir()
    monkeypatch.chdir(consumer)
    url = f"file://{mirror}"
    name = embedding_file_name(embeddings(1).attrs)

    git(consumer, "clone", "--quiet", "--branch", "embeddings-v1", url, "clone")
    dvc(consumer / "clone", "pull", "--quiet")
    assert verify_release(consumer / "clone" / "data")["version"] == "embeddings-v1"

    dvc(consumer, "get", url, "data", "--rev", "embeddings-v2", "-o", "got")
    assert verify_release(consumer / "got")["version"] == "embeddings-v2"

    project = make_release_repo(consumer / "project")
    dvc(project, "init", "--quiet")
    dvc(project, "import", url, "data", "-o", "imported", "--rev", "embeddings-v1")
    assert verify_release(project / "imported")["version"] == "embeddings-v1"
    dvc(project, "update", "--rev", "embeddings-v2", "imported.dvc")
    assert verify_release(project / "imported")["version"] == "embeddings-v2"

    from dvc.api import open as dvc_open

    with dvc_open(f"data/{name}", repo=url, rev="embeddings-v1", mode="rb") as fh:
        table = GeneEmbeddings.from_arrow(pq.read_table(io.BytesIO(fh.read())))
    assert np.array_equal(table.matrix, embeddings(1).matrix) and table.genes["symbol"].tolist() == ["TP53", "BRCA1", "EGFR"]

    assert main(["pull", "embeddings-v1", "--repo", f"file://{branch_only}", "--out", str(consumer / "pulled")]) == 0
    assert f"release embeddings-v1 (commit {first.revision[:12]})" in capsys.readouterr().out
    manifest = verify_release(consumer / "pulled")
    assert manifest["files"][name] == first.manifest["files"][name]
    with ReleaseHistory.of(f"file://{branch_only}") as history:
        assert [(r.version, r.revision, r.tagged) for r in history.records()] == [
            ("embeddings-v1", first.revision, False), ("embeddings-v2", second.revision, False)]


def test_unreachable_remote_is_one_message_naming_it_and_how_to_point_elsewhere(s3_bucket, tmp_path, monkeypatch, capsys):
    from gene_assets.cli import main

    producer = team_repository(tmp_path / "producer", s3_bucket)
    DvcReleaseRepository(repo_dir=str(producer)).publish(release_files(1), {})
    mirror = tmp_path / "mirror.git"
    git(tmp_path, "clone", "--bare", "--quiet", str(producer), str(mirror))
    shutil.rmtree(producer)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.chdir(tmp_path)
    assert main(["pull", "embeddings-v1", "--repo", str(mirror), "--out", "v1"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "Traceback" not in error, error
    assert f"DVC remote 'releases' (s3://{s3_bucket}/gene_assets)" in error and "Could not connect" in error
    assert "--remote URL" in error and "dvc remote modify --local releases endpointurl" in error
    assert not (tmp_path / "v1").exists() and not [p for p in tmp_path.iterdir() if ".pulling-" in p.name]

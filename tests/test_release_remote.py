"""Releases on an S3 remote, consumed from a directory that shares nothing with the producer but the git repository
and the S3 server (moto's standalone server, started here as its own process on 127.0.0.1)."""

import io
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from gene_assets.embeddings.table import GeneEmbeddings
from gene_assets.release.assets import embedding_file_name, parquet_bytes
from gene_assets.release.dvc_repository import DvcReleaseRepository, ReleaseHistory, dvc_remotes, verify_release

from .conftest import dvc, free_port, git, make_release_repo


def embeddings(seed: int) -> GeneEmbeddings:
    rng = np.random.default_rng(seed)
    genes = pd.DataFrame({"entrez_id": [7157, 672, 1956], "symbol": ["TP53", "BRCA1", "EGFR"]})
    return GeneEmbeddings(
        genes=genes,
        matrix=rng.normal(size=(3, 4)),
        attrs={"backbone": "all-MiniLM-L6-v2", "view": "summary", "dims": 4},
    )


def release_files(seed: int) -> dict[str, bytes]:
    table = embeddings(seed)
    return {
        embedding_file_name(table.attrs): parquet_bytes(table.to_arrow()),
        "leaderboard.csv": f"seed,{seed}\n".encode(),
    }


def team_repository(path: Path, bucket: str) -> Path:
    """A release repository whose committed .dvc/config names the team's S3 remote; this clone pushes to it."""
    repo = make_release_repo(path)
    dvc(repo, "init", "--quiet")
    dvc(repo, "remote", "add", "--default", "releases", f"s3://{bucket}/gene_assets")
    git(repo, "add", ".dvc/config", ".dvcignore", ".dvc/.gitignore")
    git(repo, "commit", "-qm", "DVC with the team's release remote")
    dvc(repo, "remote", "default", "--local", "releases")
    return repo


@pytest.mark.slow
def test_consumer_round_trip_over_s3(s3_bucket, tmp_path, monkeypatch, capsys):
    """Producer: two releases pushed to S3, the git history published as bare repositories (one with the tags, one
    branch only), the producer's clone and DVC cache deleted. Consumer, in its own directory with an empty cache:
    clone at the tag + dvc pull, dvc get, dvc import + dvc update, dvc.api.open and gene-assets pull; then, with the
    endpoint down, gene-assets pull fails with one message."""
    from gene_assets.cli import main

    producer = team_repository(tmp_path / "producer", s3_bucket)
    repository = DvcReleaseRepository(repo_dir=str(producer))
    models = [{"backbone": "all-MiniLM-L6-v2", "view": "summary"}]
    first = repository.publish(release_files(1), {"models": models})
    second = repository.publish(release_files(2), {"models": models})
    assert (first.version, second.version, second.remote_url) == (
        "embeddings-v1",
        "embeddings-v2",
        f"s3://{s3_bucket}/gene_assets",
    )
    assert dvc_remotes(git(producer, "show", "HEAD:.dvc/config")) == (
        "releases",
        {"releases": f"s3://{s3_bucket}/gene_assets"},
    )
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
    assert verify_release(consumer / "clone" / "data", url)["version"] == "embeddings-v1"

    dvc(consumer, "get", url, "data", "--rev", "embeddings-v2", "-o", "got")
    assert verify_release(consumer / "got", url)["version"] == "embeddings-v2"

    project = make_release_repo(consumer / "project")
    dvc(project, "init", "--quiet")
    dvc(project, "import", url, "data", "-o", "imported", "--rev", "embeddings-v1")
    assert verify_release(project / "imported", url)["version"] == "embeddings-v1"
    dvc(project, "update", "--rev", "embeddings-v2", "imported.dvc")
    assert verify_release(project / "imported", url)["version"] == "embeddings-v2"

    from dvc.api import open as dvc_open

    with dvc_open(f"data/{name}", repo=url, rev="embeddings-v1", mode="rb") as fh:
        table = GeneEmbeddings.from_arrow(pq.read_table(io.BytesIO(fh.read())))
    assert np.array_equal(table.matrix, embeddings(1).matrix) and table.genes["symbol"].tolist() == [
        "TP53",
        "BRCA1",
        "EGFR",
    ]

    assert main(["pull", "embeddings-v1", "--repo", f"file://{branch_only}", "--out", str(consumer / "pulled")]) == 0
    assert f"release embeddings-v1 (commit {first.revision[:12]})" in capsys.readouterr().out
    manifest = verify_release(consumer / "pulled", f"file://{branch_only}")
    assert manifest["files"][name] == first.manifest["files"][name]
    with ReleaseHistory.of(f"file://{branch_only}") as history:
        assert [(r.version, r.revision, r.tagged) for r in history.records()] == [
            ("embeddings-v1", first.revision, False),
            ("embeddings-v2", second.revision, False),
        ]

    # the S3 endpoint down: one message naming the remote, DVC's reason and how to point at another copy
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    assert main(["pull", "embeddings-v1", "--repo", str(mirror), "--out", "unreachable"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "Traceback" not in error, error
    assert f"DVC remote 'releases' (s3://{s3_bucket}/gene_assets)" in error and "Could not connect" in error
    assert "--remote URL" in error and "dvc remote modify --local releases endpointurl" in error
    assert not (consumer / "unreachable").exists() and not [p for p in consumer.iterdir() if ".pulling-" in p.name]

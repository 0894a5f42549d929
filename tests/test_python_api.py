"""The Python API on a release, as a scanpy user meets it: a release of real bag-of-words embeddings of pbmc3k's genes,
pushed to an S3 server (moto's, its own process), loaded in a consumer directory with its own HOME and DVC cache;
GenePT-w on the real h5ad against the cell_embeddings asset; every bad input; the tutorial notebook."""

import hashlib
import io
import re
import shutil
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import anndata
import boto3
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance, materialize

import gene_assets
from gene_assets.catalog.resolver import GeneResolver
from gene_assets.cells.datasets import CellDatasetError
from gene_assets.cells.partitions import backbone_dataset_key
from gene_assets.cli import register_backbones, register_partitions
from gene_assets.definitions import all_asset_checks, all_assets
from gene_assets.embeddings.partitions import backbone_view_key
from gene_assets.embeddings.table import GeneEmbeddings
from gene_assets.release.assets import embedding_file_name, embedding_files
from gene_assets.release.dvc_repository import DvcReleaseRepository, ReleaseError
from gene_assets.release.published import GENE_IDENTIFIERS
from gene_assets.resources import temporary_resources
from gene_assets.settings import PROJECT_ROOT
from gene_assets.tl import EmbeddingInputError

from .conftest import CREDENTIALS, git, running_s3_server
from .test_release_remote import team_repository

BACKBONE, VIEW, DATASET = "bag-of-words", "summary", "pbmc3k"
H5AD = "single_cell/pbmc3k_seurat_lognorm.h5ad"
NOTEBOOK = PROJECT_ROOT / "docs" / "tutorials" / "genept_w.ipynb"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, annotation_cache, data_dir):
    """The real assets for pbmc3k's genes: the catalog, summaries, bag-of-words embeddings, the pbmc3k cell dataset
    and its cell_embeddings; the release's embedding files and MANIFEST entries made from them."""
    tmp = tmp_path_factory.mktemp("pipeline")
    symbols = sorted(anndata.read_h5ad(data_dir / H5AD, backed="r").var_names)
    resources = temporary_resources(tmp, tmp / "unused", tmp / "unused_remote", annotation_cache=annotation_cache)
    (tmp / "dagster_home").mkdir()
    shutil.copy(PROJECT_ROOT / "dagster_home" / "dagster.yaml", tmp / "dagster_home")
    everything = [*all_assets, *all_asset_checks]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", str(tmp / "dagster_home"))
        with DagsterInstance.get() as instance:
            register_backbones(instance, [BACKBONE])
            register_partitions(instance, "cell_dataset", [DATASET])

            def run(selection, partition_key=None, config=None):
                result = materialize(
                    everything,
                    selection=selection,
                    instance=instance,
                    resources=resources,
                    partition_key=partition_key,
                    run_config={"ops": config or {}},
                )
                assert result.success
                return result

            sources = run(
                ["gene_catalog", "gene_summaries", "gene_texts", "gene_universes"],
                config={"gene_texts": {"config": {"symbols": symbols}}},
            )
            key = backbone_view_key(BACKBONE, VIEW)
            table = run(["gene_embeddings"], key).output_for_node("gene_embeddings")
            run(["cell_datasets"], DATASET)
            cells = run(
                ["cell_embeddings"], backbone_dataset_key(BACKBONE, DATASET), {"cell_embeddings": {"config": {}}}
            ).output_for_node("cell_embeddings")
            catalog = sources.output_for_node("gene_catalog")
            files, models = embedding_files(instance, catalog, {key: table}, {})
    return SimpleNamespace(table=table, cells=cells, catalog=catalog, files=files, models=models)


def publish(pipeline, bucket: str, tmp: Path) -> str:
    """The files released by a producer to the team's S3 remote; the git history as a bare repository (the producer's
    clone deleted); its file:// URL."""
    producer = team_repository(tmp / f"producer-{bucket}", bucket)
    files = {**pipeline.files, "leaderboard.csv": b"backbone\nbag-of-words\n"}
    DvcReleaseRepository(repo_dir=str(producer)).publish(files, {"models": pipeline.models})
    mirror = tmp / f"{bucket}.git"
    git(tmp, "clone", "--bare", "--quiet", str(producer), str(mirror))
    shutil.rmtree(producer)
    return f"file://{mirror}"


def new_bucket(endpoint: str) -> str:
    bucket = f"gene-assets-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, **aws_keys()).create_bucket(Bucket=bucket)
    return bucket


def aws_keys() -> dict:
    return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


def as_consumer(monkeypatch, home: Path, endpoint: str, repo: str) -> None:
    """This process as a consumer: its own HOME (so its own release cache and no DVC config), the S3 endpoint, the
    release repository; nothing from the producer's environment."""
    for name, value in {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint, "HOME": str(home)}.items():
        monkeypatch.setenv(name, value)
    for name in ("GENE_ASSETS_HOME", "GENE_ASSETS_DVC_REMOTE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GENE_ASSETS_RELEASE_REPO", repo)
    home.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(home)


@pytest.fixture(scope="module")
def released(pipeline, s3_server, tmp_path_factory):
    """The release on the session's S3 server: (repository URL, endpoint)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**CREDENTIALS, "AWS_ENDPOINT_URL": s3_server}.items():
            patch.setenv(name, value)
        patch.setenv("HOME", str(tmp_path_factory.mktemp("producer_home")))
        return publish(pipeline, new_bucket(s3_server), tmp_path_factory.mktemp("released")), s3_server


@pytest.fixture(scope="module")
def consumer_home(released, tmp_path_factory) -> Path:
    """A consumer's HOME whose release cache holds the release's table, fetched once for the module's tests."""
    repo, endpoint = released
    home = tmp_path_factory.mktemp("consumer") / "home"
    with pytest.MonkeyPatch.context() as patch:
        as_consumer(patch, home, endpoint, repo)
        gene_assets.load_embeddings(BACKBONE)
    return home


@pytest.fixture
def embeddings(released, consumer_home, monkeypatch):
    repo, endpoint = released
    as_consumer(monkeypatch, consumer_home, endpoint, repo)
    return gene_assets.load_embeddings(BACKBONE)


def snapshot(adata) -> tuple:
    return sorted(adata.obsm), sorted(adata.uns), adata.X.copy() if not adata.isbacked else None


def released_table(pipeline) -> GeneEmbeddings:
    name = embedding_file_name({"backbone": BACKBONE, "view": VIEW})
    return GeneEmbeddings.from_arrow(pq.read_table(io.BytesIO(pipeline.files[name])))


@pytest.mark.slow
def test_load_embeddings_from_s3_then_offline_verified_against_the_manifest(pipeline, tmp_path, monkeypatch, capsys):
    """One table (and the gene identifiers) fetched, equal to the released parquet; the second call with the server
    stopped; a table damaged on the remote refused by its MANIFEST sha256; an unreachable remote reported in the one
    line `gene-assets pull` reports."""
    from gene_assets.cli import main

    with running_s3_server(tmp_path) as endpoint:
        bucket = new_bucket(endpoint)
        with pytest.MonkeyPatch.context() as producer:
            for name, value in {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint, "HOME": str(tmp_path)}.items():
                producer.setenv(name, value)
            repo = publish(pipeline, bucket, tmp_path)
        as_consumer(monkeypatch, tmp_path / "consumer", endpoint, repo)
        listed = gene_assets.list_embeddings()
        assert listed[["backbone", "view", "dims", "genes"]].values.tolist() == [
            [BACKBONE, VIEW, 1024, len(pipeline.table.genes)]
        ]
        started = time.perf_counter()
        first = gene_assets.load_embeddings(BACKBONE)
        first_s = time.perf_counter() - started

        expected = released_table(pipeline)
        assert first.index.tolist() == expected.genes["symbol"].tolist()
        assert first["entrez_id"].tolist() == expected.genes["entrez_id"].tolist()
        assert first["text_sha256"].tolist() == expected.genes["text_sha256"].tolist()
        vectors = first[list(range(1024))].to_numpy()
        assert vectors.dtype == np.float32 and np.array_equal(vectors, expected.matrix)
        name = embedding_file_name({"backbone": BACKBONE, "view": VIEW})
        digest = hashlib.sha256(pipeline.files[name]).hexdigest()
        receipt = first.attrs["receipt"]
        assert (receipt["version"], receipt["sha256"], receipt["n_genes"]) == (
            "embeddings-v1",
            digest,
            len(expected.genes),
        )
        cache = tmp_path / "consumer" / ".cache" / "gene_assets" / "releases"
        kept = sorted(p.name for p in cache.glob("*/embeddings-v1/*"))
        identifiers = hashlib.sha256(pipeline.files[GENE_IDENTIFIERS]).hexdigest()
        assert kept == sorted(["MANIFEST.json", f"{digest}.parquet", f"{identifiers}.parquet"])  # nothing else

        # the table damaged on the remote: a consumer with an empty cache gets the MANIFEST's refusal, keeps nothing
        md5 = hashlib.md5(pipeline.files[name]).hexdigest()
        s3 = boto3.client("s3", endpoint_url=endpoint, **aws_keys())
        s3.put_object(Bucket=bucket, Key=f"gene_assets/files/md5/{md5[:2]}/{md5[2:]}", Body=b"PAR1 damaged")
        monkeypatch.setenv("HOME", str(tmp_path / "second_consumer"))
        with pytest.raises(ReleaseError, match=rf"{name} of release embeddings-v1 .* sha256 \w+, but its MANIFEST"):
            gene_assets.load_embeddings(BACKBONE)
        assert not list((tmp_path / "second_consumer" / ".cache").rglob("*.parquet"))
    # the server is stopped: the first consumer still loads its verified copy
    monkeypatch.setenv("HOME", str(tmp_path / "consumer"))
    started = time.perf_counter()
    second = gene_assets.load_embeddings(BACKBONE)
    second_s = time.perf_counter() - started
    pd.testing.assert_frame_equal(second, first)
    again = gene_assets.load_embeddings(BACKBONE, version="embeddings-v1")
    pd.testing.assert_frame_equal(again, first)
    mirror = Path(repo.removeprefix("file://"))
    mirror.rename(mirror.with_name("moved.git"))  # the repository unreachable too: the newest version in the copy
    with pytest.warns(UserWarning, match=r"Cannot read the releases of .* Using embeddings-v1, the newest version"):
        pd.testing.assert_frame_equal(gene_assets.load_embeddings(BACKBONE), first)
    mirror.with_name("moved.git").rename(mirror)
    assert second_s < first_s / 2, (first_s, second_s)  # no DVC process: the verified copy

    # a consumer without a copy: the message `gene-assets pull` gives, as one line
    monkeypatch.setenv("HOME", str(tmp_path / "third_consumer"))
    monkeypatch.delenv("GENE_ASSETS_RELEASE_REPO")  # the commands take a repository URL with --repo only
    with pytest.raises(ReleaseError) as raised:
        gene_assets.load_embeddings(BACKBONE, repo=repo)
    capsys.readouterr()
    assert main(["pull", "embeddings-v1", "--repo", repo, "--out", str(tmp_path / "pulled")]) == 2
    pulled = capsys.readouterr().err.strip().removeprefix("gene-assets: ")
    message = str(raised.value)
    assert message == pulled and len(message.splitlines()) == 1
    assert f"DVC remote 'releases' (s3://{bucket}/gene_assets)" in message and "Could not connect" in message


@pytest.mark.slow
def test_genept_w_equals_the_cell_embeddings_asset_for_symbols_and_ensembl_ids(pipeline, embeddings, data_dir):
    """pbmc3k (backed, read in chunks) with symbols, and in memory with Ensembl ids (half with a version) as var names
    and in a var column: bitwise the asset's GenePT-w."""
    asset = pipeline.cells.embeddings["genept_w"]
    rows = pipeline.cells.cells["obs_index"].to_numpy()
    backed = anndata.read_h5ad(data_dir / H5AD, backed="r")
    gene_assets.tl.genept_w(backed, embeddings, chunk_cells=1000)
    assert np.array_equal(backed.obsm["X_genept_w"][rows], asset)  # bitwise
    report = backed.uns["genept_w"]
    assert report["params"] == {
        "backbone": BACKBONE,
        "view": VIEW,
        "version": "embeddings-v1",
        "sha256": embeddings.attrs["receipt"]["sha256"],
    }
    genes = report["genes"]
    assert genes["n_vars"] == 13714 and genes["input_scale"] == "log_normalized"
    assert genes["n_matched"] == pipeline.cells.attrs["n_matched_genes"] > 5000

    adata = anndata.read_h5ad(data_dir / H5AD)
    resolver = GeneResolver(pipeline.catalog)
    entrez = resolver.symbols(adata.var_names).entrez_ids
    catalog = pipeline.catalog.set_index("entrez_id")["ensembl_ids"]
    ensembl = []
    for position, (name, gene) in enumerate(zip(adata.var_names, entrez)):
        ids = str(catalog.get(gene, "") or "").split("|") if pd.notna(gene) else []
        unique = [i for i in ids if i and resolver.ensembl([i]).entrez_ids.fillna(-1).iloc[0] == gene]
        ensembl.append(f"{unique[0]}.{position % 3}" if unique and position % 2 else unique[0] if unique else name)
    assert sum(n.startswith("ENSG") for n in ensembl) > 0.5 * len(ensembl)
    by_column = adata.copy()
    by_column.var["gene_ids"] = ensembl
    adata.var_names = ensembl
    result = gene_assets.tl.genept_w(adata, embeddings, copy=True)
    assert "X_genept_w" not in adata.obsm and np.array_equal(result.obsm["X_genept_w"][rows], asset)
    assert result.uns["genept_w"]["genes"]["matched_by"]["ensembl"] > 5000
    gene_assets.tl.genept_w(by_column, embeddings, gene_symbols="gene_ids", key_added="X_by_ids")
    assert np.array_equal(by_column.obsm["X_by_ids"][rows], asset)


@pytest.mark.slow
def test_every_bad_input_gets_one_clear_error_and_leaves_adata_unchanged(embeddings, data_dir):
    """Mouse Ensembl ids, too few matched genes, scaled values, a missing layer or var column, a non-table, a backbone
    without GenePT-s, a table or version the release lacks, an unknown gene: each refused in one message."""
    adata = anndata.read_h5ad(data_dir / H5AD)[:, :3000].copy()
    before = snapshot(adata)

    def refused(error, pattern, call):
        with pytest.raises(error, match=pattern):
            call()
        obsm, uns, X = snapshot(adata)
        assert (obsm, uns) == before[:2] and (X != before[2]).nnz == 0

    mouse = adata.copy()
    mouse.var_names = [f"ENSMUSG{i:011d}" for i in range(adata.n_vars)]
    refused(
        CellDatasetError,
        r"none of its 3,000 genes matches a gene of the bag-of-words/summary embeddings \(embeddings-v1\) .*"
        r"look like mouse Ensembl ids \(ENSMUSG…\)",
        lambda: gene_assets.tl.genept_w(mouse, embeddings),
    )
    assert "X_genept_w" not in mouse.obsm and "genept_w" not in mouse.uns
    sparse_match = adata.copy()
    sparse_match.var_names = [n if i < 100 else f"unknown{i}" for i, n in enumerate(adata.var_names)]
    refused(
        CellDatasetError,
        r"only \d\d of 3,000 genes \(\d\.\d%\) match .* \(need 100 and 30%\)",
        lambda: gene_assets.tl.genept_w(sparse_match, embeddings),
    )
    assert "X_genept_w" not in sparse_match.obsm
    scaled = adata.copy()
    scaled.X = scaled.X.toarray() - 0.5
    refused(
        CellDatasetError,
        r"negative values: the matrix looks scaled",
        lambda: gene_assets.tl.genept_w(scaled, embeddings),
    )
    assert "X_genept_w" not in scaled.obsm
    refused(
        CellDatasetError,
        r"no layer 'counts' \(layers: none\)",
        lambda: gene_assets.tl.genept_w(adata, embeddings, layer="counts"),
    )
    refused(
        CellDatasetError,
        r"no var column 'gene_ids'",
        lambda: gene_assets.tl.genept_w(adata, embeddings, gene_symbols="gene_ids"),
    )
    refused(
        EmbeddingInputError,
        "must be a table from gene_assets.load_embeddings",
        lambda: gene_assets.tl.genept_w(adata, embeddings.to_numpy()),
    )
    refused(
        EmbeddingInputError,
        r"bag-of-words \(bag_of_words\) does not embed sentences.*all-MiniLM-L6-v2",
        lambda: gene_assets.tl.genept_s(adata, BACKBONE),
    )
    refused(
        ReleaseError,
        r"holds no tfidf/summary gene embeddings; it holds bag-of-words/summary",
        lambda: gene_assets.load_embeddings("tfidf"),
    )
    refused(
        ReleaseError,
        r"has no release 'embeddings-v9'; it has embeddings-v1",
        lambda: gene_assets.load_embeddings(BACKBONE, version="embeddings-v9"),
    )
    refused(
        EmbeddingInputError,
        r"'NOTAGENE1' is not a human gene",
        lambda: gene_assets.tl.similar_genes(embeddings, "NOTAGENE1"),
    )


@pytest.mark.slow
def test_counts_are_normalized_as_the_pipeline_normalizes_them(embeddings, data_dir):
    """pbmc3k's counts, recovered from its LogNormalize values and nCount_RNA, give the GenePT-w of the values."""
    logged = anndata.read_h5ad(data_dir / H5AD)
    counts = logged.copy()
    counts.X = logged.X.expm1().multiply(logged.obs[["nCount_RNA"]].to_numpy() / 1e4).tocsr().rint()
    counts.layers["counts"] = counts.X
    counts.X = None
    gene_assets.tl.genept_w(logged, embeddings)
    gene_assets.tl.genept_w(counts, embeddings, layer="counts")
    assert counts.uns["genept_w"]["genes"]["input_scale"] == "counts"
    assert np.abs(counts.obsm["X_genept_w"] - logged.obsm["X_genept_w"]).max() < 1e-4


@pytest.mark.slow
def test_genept_s_embeds_each_cells_top_genes_with_the_text_model(embeddings, data_dir):
    """40 pbmc3k cells as sentences of their 100 most expressed genes (matched against the release's summary-view
    genes, named by the catalog's current symbols), embedded by MiniLM (its packaged weights) at fp32:
    sentence-transformers' own encoding of those sentences."""
    from sentence_transformers import SentenceTransformer

    from gene_assets.embeddings.device import EmbeddingDevice
    from gene_assets.embeddings.registry import get_backbone
    from gene_assets.embeddings.weights import packaged_model_dir

    adata = anndata.read_h5ad(data_dir / H5AD)[:40].copy()
    before = snapshot(adata)
    result = gene_assets.tl.genept_s(
        adata,
        "all-MiniLM-L6-v2",
        embeddings=embeddings,
        device=EmbeddingDevice(device="cpu", cpu_precision="fp32"),
        copy=True,
    )
    assert snapshot(adata)[:2] == before[:2]
    vectors = result.obsm["X_genept_s"]
    assert vectors.shape == (40, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert result.uns["genept_s"]["params"]["n_genes"] == 100
    catalog = pd.read_parquet(embeddings.attrs["gene_identifiers"])
    entrez = GeneResolver(catalog).symbols(adata.var_names).entrez_ids
    with_text = entrez.isin(embeddings["entrez_id"]).fillna(False).to_numpy()
    renamed = entrez.map(catalog.set_index("entrez_id")["symbol"]).to_numpy()
    symbols = np.where(with_text, renamed, np.asarray(adata.var_names, dtype=object))
    X = adata.X.toarray()
    sentences = [
        " ".join(symbols[np.lexsort((np.arange(X.shape[1]), -row))[: min(100, int((row > 0).sum()))]]) for row in X
    ]
    model = SentenceTransformer(str(packaged_model_dir(get_backbone("all-MiniLM-L6-v2"))), device="cpu")
    model.max_seq_length = 256
    reference = model.encode(sentences, normalize_embeddings=True)
    cosine = np.sum(vectors * reference, axis=1)
    assert (cosine > 0.9999).all(), np.sort(cosine)[:5]


@pytest.mark.slow
def test_similar_genes_by_symbol_alias_entrez_or_ensembl_id(embeddings):
    nearest = gene_assets.tl.similar_genes(embeddings, "CD3E", n=5)
    assert len(nearest) == 5 and "CD3E" not in nearest.index and nearest["cosine"].is_monotonic_decreasing
    assert {"CD3D", "CD3G"} & set(nearest.index), nearest
    for same in ("ENSG00000198851.9", "916", "T3E"):
        pd.testing.assert_frame_equal(gene_assets.tl.similar_genes(embeddings, same, n=5), nearest)


@pytest.mark.slow
def test_tutorial_notebook_runs_against_the_release(released, consumer_home, monkeypatch, tmp_path):
    """docs/tutorials/genept_w.ipynb, executed in its own kernel as a user runs it, on the release made here: the
    embedding of every pbmc3k cell, a UMAP, a kNN accuracy well above the majority class (26%) with its CI."""
    import nbformat
    from nbclient import NotebookClient

    repo, endpoint = released
    as_consumer(monkeypatch, consumer_home, endpoint, repo)  # the kernel inherits this environment
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    text = "\n".join(output.get("text", "") for output in outputs if output.output_type == "stream")
    assert "X_genept_w: (2638, 1024)" in text
    assert any("image/png" in output.get("data", {}) for output in outputs)
    accuracy = re.search(r"kNN accuracy: (\d\.\d+) \[95% CI (\d\.\d+)-(\d\.\d+)\]", text)
    low, estimate, high = float(accuracy[2]), float(accuracy[1]), float(accuracy[3])
    assert 0.5 < low <= estimate <= high <= 1, text

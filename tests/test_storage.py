"""Atomic writes and the parquet IO manager."""

import subprocess
import sys

import pandas as pd
import pytest
from dagster import DagsterInstance, build_input_context, build_output_context

from gene_assets.embeddings.partitions import backbone_view_key, backbone_view_partitions
from gene_assets.storage import ParquetIOManager, atomic_path


def test_failed_write_leaves_the_previous_file(tmp_path):
    target = tmp_path / "table.parquet"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half written")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["table.parquet"]


def test_written_files_get_ordinary_permissions(tmp_path):
    import os
    import stat

    with atomic_path(tmp_path / "out.bin") as tmp:
        tmp.write_bytes(b"x")
    mode = stat.S_IMODE((tmp_path / "out.bin").stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_partitioned_output_round_trips_through_its_partition_path(tmp_path):
    manager = ParquetIOManager(base_dir=str(tmp_path))
    key = backbone_view_key("bag-of-words", "summary")
    frame = pd.DataFrame({"entrez_id": [1, 2], "roc_auc": [0.5, 0.9]})
    manager.handle_output(build_output_context(asset_key="gene_task_results", partition_key=key), frame)
    assert (tmp_path / "gene_task_results" / "backbone=bag-of-words" / "view=summary.parquet").exists()
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("backbone", ["bag-of-words"])
        context = build_input_context(
            asset_key="gene_task_results",
            partition_key=key,
            instance=instance,
            asset_partitions_def=backbone_view_partitions,
        )
        assert manager.load_input(context).equals(frame)


def test_missing_output_names_the_asset_to_materialize(tmp_path):
    manager = ParquetIOManager(base_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="gene_catalog.parquet: materialize the upstream asset first"):
        manager.load_input(build_input_context(asset_key="gene_catalog"))


def test_storage_on_s3_publishes_whole_objects_and_reports_corrupt_ones(s3_bucket):
    """Storage root as a URL: an output is one object, written only when complete (a failed write leaves the previous
    object and nothing else); a truncated object is named in the error; a missing one names the asset."""
    import fsspec

    from gene_assets.storage import StoredOutputError, storage_path

    s3 = fsspec.filesystem("s3")
    manager = ParquetIOManager(base_dir=f"s3://{s3_bucket}/storage")
    frame = pd.DataFrame({"entrez_id": [1, 2], "symbol": ["A1BG", "A2M"]})
    manager.handle_output(build_output_context(asset_key="gene_catalog"), frame)
    assert s3.find(f"{s3_bucket}/storage") == [
        f"{s3_bucket}/storage/gene_catalog.parquet",
        f"{s3_bucket}/storage/gene_catalog.parquet.sha256",
    ]
    assert manager.load_input(build_input_context(asset_key="gene_catalog")).equals(frame)
    target = storage_path(f"s3://{s3_bucket}/storage/gene_catalog.parquet")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half written")
            raise RuntimeError("connection lost")
    assert manager.load_input(build_input_context(asset_key="gene_catalog")).equals(frame)
    assert s3.find(f"{s3_bucket}/storage") == [
        f"{s3_bucket}/storage/gene_catalog.parquet",
        f"{s3_bucket}/storage/gene_catalog.parquet.sha256",
    ]
    s3.pipe_file(
        f"{s3_bucket}/storage/gene_catalog.parquet", s3.cat_file(f"{s3_bucket}/storage/gene_catalog.parquet")[:40]
    )
    with pytest.raises(
        StoredOutputError,
        match=f"gene_catalog \\(s3://{s3_bucket}/storage/gene_catalog.parquet\\) does "
        "not match the sha256 written with it",
    ):
        manager.load_input(build_input_context(asset_key="gene_catalog"))
    s3.rm_file(f"{s3_bucket}/storage/gene_catalog.parquet.sha256")
    with pytest.raises(
        StoredOutputError,
        match=f"gene_catalog \\(s3://{s3_bucket}/storage/gene_catalog.parquet\\) has no sha256 beside it",
    ):
        manager.load_input(build_input_context(asset_key="gene_catalog"))
    with pytest.raises(FileNotFoundError, match="gene_texts.parquet: materialize the upstream asset first"):
        manager.load_input(build_input_context(asset_key="gene_texts"))


def test_a_stored_output_changed_after_it_was_written_fails_its_checksum_and_rewriting_it_heals_it(tmp_path):
    """One flipped bit in a stored table (the same size, read by parquet without complaint or not): the read names
    the asset and the checksum file; nothing is re-hashed into a release."""
    from gene_assets.storage import StoredOutputError, checksum_path

    manager = ParquetIOManager(base_dir=str(tmp_path))
    frame = pd.DataFrame({"entrez_id": range(1, 201), "symbol": [f"G{i}" for i in range(1, 201)]})
    manager.handle_output(build_output_context(asset_key="gene_catalog"), frame)
    path = tmp_path / "gene_catalog.parquet"
    assert checksum_path(path).read_text().split()[1] == "gene_catalog.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(
        StoredOutputError,
        match=r"Stored output of gene_catalog \(.*gene_catalog\.parquet\) does not match "
        r"the sha256 written with it \(.*gene_catalog\.parquet\.sha256\): it changed "
        r"after it was written .*Delete it and re-materialize that asset: rm -f .* && "
        r"gene-assets materialize gene_catalog$",
    ):
        manager.load_input(build_input_context(asset_key="gene_catalog"))
    assert path.read_bytes() == bytes(data)  # left as found, for inspection
    manager.handle_output(build_output_context(asset_key="gene_catalog"), frame)
    assert manager.load_input(build_input_context(asset_key="gene_catalog")).equals(frame)


def test_a_changed_h5ad_copy_is_refused_whenever_its_output_is_loaded(tmp_path, data_dir):
    """Cell embeddings of real cells (Wang's pancreas, GenePT-w over random gene vectors) are stored as parquet and
    an h5ad copy, each with its sha256 in `sha256sum` format; one flipped byte in the h5ad refuses the load, naming
    the h5ad and the commands that rewrite it, and leaves the files as found."""
    import hashlib
    import subprocess

    import anndata
    import numpy as np

    from gene_assets.cells.datasets import CellMatrix, detect_input_scale
    from gene_assets.cells.embedding import CellEmbeddings, GeneWeights, stream_genept_w
    from gene_assets.cells.partitions import backbone_dataset_key
    from gene_assets.storage import StoredOutputError, checksum_path

    adata = anndata.read_h5ad(data_dir / "single_cell/wang.h5ad", backed="r")
    matrix = CellMatrix(adata, use_raw=False, name="wang")
    rows = np.arange(0, adata.n_obs, 5)
    genes = len(matrix.var_names)
    weights = GeneWeights(np.random.default_rng(0).normal(size=(genes, 16)).astype(np.float32), np.ones(genes))
    vectors, _ = stream_genept_w(matrix, rows, detect_input_scale(matrix, "wang"), weights, chunk_cells=64)
    cells = pd.DataFrame({"obs_name": adata.obs_names[rows], "label": adata.obs["cell_type"].astype(str).iloc[rows]})
    stored = CellEmbeddings(cells, {"genept_w": vectors}, {"backbone": "random-gaussian", "dataset": "wang"})
    manager = ParquetIOManager(base_dir=str(tmp_path))
    key = backbone_dataset_key("random-gaussian", "wang")
    manager.handle_output(build_output_context(asset_key="cell_embeddings", partition_key=key), stored)
    h5ad = tmp_path / "cell_embeddings" / "backbone=random-gaussian" / "cell_dataset=wang.h5ad"
    check = subprocess.run(["sha256sum", "-c", checksum_path(h5ad).name], cwd=h5ad.parent, capture_output=True)
    assert check.returncode == 0, check.stdout
    assert np.array_equal(manager.load(["cell_embeddings"], key).embeddings["genept_w"], vectors)
    assert np.array_equal(anndata.read_h5ad(h5ad).obsm["X_genept_w"], vectors)

    data = bytearray(h5ad.read_bytes())
    data[len(data) // 2] ^= 0x01
    h5ad.write_bytes(bytes(data))
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(
        StoredOutputError,
        match=r"^Stored output of cell_embeddings random-gaussian\|wang \(.*cell_dataset=wang\.h5ad\) does not match "
        r"the sha256 written with it \(.*cell_dataset=wang\.h5ad\.sha256\): it changed after it was written .* "
        r"Delete it and re-materialize that asset: rm -f .*cell_dataset=wang\.h5ad .*cell_dataset=wang\.h5ad\.sha256 "
        r"&& gene-assets materialize cell_embeddings --partition 'random-gaussian\|wang'$",
    ):
        manager.load(["cell_embeddings"], key)
    assert before == {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.rglob("*") if p.is_file()}


READ_THEN_EXIT = """
import sys
import numpy as np, pyarrow as pa, pyarrow.parquet as pq
from gene_assets.parquet import parquet_table
table = pa.table({f"c{i}": np.arange(200_000, dtype="float32") for i in range(20)})
sink = pa.BufferOutputStream()
pq.write_table(table, sink, compression="none")
data = sink.getvalue().to_pybytes()
for _ in range(5):
    assert parquet_table(data).num_rows == 200_000
"""


@pytest.mark.slow
def test_a_process_that_read_stored_tables_exits_cleanly():
    """Arrow's reader threads may drop their last reference to the parsed bytes while the interpreter exits; with the
    bytes in Python's memory that aborts the process (exit 134, "terminate called without an active exception") in
    about one exit in four. Read from Arrow's own copy, twenty exits in a row are clean."""
    outcomes = [
        subprocess.run([sys.executable, "-c", READ_THEN_EXIT], capture_output=True, text=True) for _ in range(20)
    ]
    assert [(o.returncode, o.stderr[-300:]) for o in outcomes if o.returncode != 0] == []

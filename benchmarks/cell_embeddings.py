"""GenePT-w at atlas scale: the streamed path (backed h5ad read in row chunks, output written to disk chunk by chunk)
against the in-memory path (load the whole AnnData, then X·Z), each in its own subprocess so its peak RSS is its own.

The input is a generated backed h5ad of CELL_BENCH_CELLS cells (default 20,000; the full benchmark is 1,000,000)
× 20,000 genes with ~500 non-zero counts per cell, written under CELL_BENCH_DIR (default: a temporary directory
in /tmp, deleted afterwards):

    CELL_BENCH_CELLS=1000000 python -m benchmarks cell_embeddings
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .harness import Row

CELLS = int(os.environ.get("CELL_BENCH_CELLS", "20000"))
GENES = 20_000
NONZERO_PER_CELL = 500
DIMS = 384
MATCHED_FRACTION = 0.9
CHUNK_CELLS = 10_000
WRITE_CHUNK = 20_000
SAMPLE_EVERY = 997
"""Every SAMPLE_EVERY-th cell's vector is returned by both paths to compare them."""


def write_counts_h5ad(
    path: Path, cells: int, genes: int = GENES, nonzero: int = NONZERO_PER_CELL, seed: int = 0
) -> int:
    """A backed-readable h5ad with a CSR count matrix (distinct sorted genes per cell, counts ≥ 1), written in
    chunks of cells so that generating it needs little memory; returns the number of non-zeros."""
    import anndata as ad
    import h5py
    import pandas as pd

    obs = pd.DataFrame(index=[f"cell{i}" for i in range(cells)])
    var = pd.DataFrame(index=[f"gene{j}" for j in range(genes)])
    ad.AnnData(obs=obs, var=var).write_h5ad(path)
    rng = np.random.default_rng(seed)
    gap_mean = genes / nonzero
    draws = int(nonzero * 1.4)
    with h5py.File(path, "a") as f:
        if "X" in f:
            del f["X"]
        group = f.create_group("X")
        group.attrs.update({"encoding-type": "csr_matrix", "encoding-version": "0.1.0", "shape": (cells, genes)})
        data = group.create_dataset("data", shape=(0,), maxshape=(None,), dtype="f4", chunks=(1 << 20,))
        indices = group.create_dataset("indices", shape=(0,), maxshape=(None,), dtype="i4", chunks=(1 << 20,))
        indptr = np.zeros(cells + 1, dtype=np.int64)
        total = 0
        for start in range(0, cells, WRITE_CHUNK):
            count = min(WRITE_CHUNK, cells - start)
            positions = np.cumsum(rng.geometric(1 / gap_mean, size=(count, draws)), axis=1) - 1
            inside = positions < genes
            columns = positions[inside].astype(np.int32)
            values = (1 + rng.geometric(0.5, size=len(columns))).astype(np.float32)
            indptr[start + 1 : start + count + 1] = total + np.cumsum(inside.sum(axis=1))
            data.resize((total + len(columns),))
            indices.resize((total + len(columns),))
            data[total:], indices[total:] = values, columns
            total += len(columns)
        group.create_dataset("indptr", data=indptr)
    return total


def gene_weights(genes: int = GENES, seed: int = 1):
    from gene_assets.cells.embedding import GeneWeights

    rng = np.random.default_rng(seed)
    matched = (rng.random(genes) < MATCHED_FRACTION).astype(np.float32)
    vectors = rng.standard_normal((genes, DIMS)).astype(np.float32) * matched[:, None]
    return GeneWeights(vectors=vectors, matched=matched)


def streamed(path: Path, out_dir: Path) -> np.ndarray:
    """GenePT-w of every cell, one row chunk of the backed file at a time, written into an on-disk HDF5 dataset."""
    import anndata as ad
    import h5py

    from gene_assets.cells.datasets import CellMatrix
    from gene_assets.cells.embedding import stream_genept_w

    matrix = CellMatrix(ad.read_h5ad(path, backed="r"), use_raw=False, name=path.name)
    rows = np.arange(matrix.n_obs)
    with h5py.File(out_dir / "streamed_genept_w.h5", "w") as f:
        out = f.create_dataset("X_genept_w", shape=(len(rows), DIMS), dtype="f4", chunks=(CHUNK_CELLS, DIMS))
        stream_genept_w(matrix, rows, "counts", gene_weights(), CHUNK_CELLS, out=out)
        return out[::SAMPLE_EVERY]


def in_memory(path: Path, out_dir: Path) -> np.ndarray:
    """The same GenePT-w on the whole matrix at once, after loading the whole AnnData."""
    import anndata as ad

    from gene_assets.cells.embedding import genept_w_block

    adata = ad.read_h5ad(path)
    return genept_w_block(adata.X, "counts", gene_weights())[::SAMPLE_EVERY]


PATHS = {"streamed": streamed, "in_memory": in_memory}


def run_path(name: str, path: Path, out_dir: Path) -> dict:
    """Run one path in a fresh interpreter; its seconds, peak RSS and sampled vectors."""
    command = [sys.executable, "-m", "benchmarks.cell_embeddings", name, str(path), str(out_dir)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    if result.returncode != 0:
        raise RuntimeError(f"{name} path failed:\n{result.stderr[-3000:]}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    report["sample"] = np.load(out_dir / f"{name}_sample.npy")
    return report


def cell_embeddings() -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="cell_bench_", dir=os.environ.get("CELL_BENCH_DIR")) as scratch:
        scratch = Path(scratch)
        path = scratch / "cells.h5ad"
        started = time.perf_counter()
        nonzero = write_counts_h5ad(path, CELLS)
        written = time.perf_counter() - started
        size_gb = path.stat().st_size / 1e9
        print(
            f"  wrote {path} ({CELLS:,} cells, {nonzero:,} non-zeros, {size_gb:.2f} GB) in {written:.0f} s", flush=True
        )
        reports = {}
        for name in ("streamed", "in_memory"):
            reports[name] = run_path(name, path, scratch)
            print(
                f"  {name}: {reports[name]['seconds']:.1f} s, peak RSS {reports[name]['peak_rss_mb']:.0f} MB",
                flush=True,
            )
    stream, whole = reports["streamed"], reports["in_memory"]
    difference = float(np.abs(stream["sample"] - whole["sample"]).max())
    speed = {name: CELLS / r["seconds"] for name, r in reports.items()}
    comparison = (
        f"GenePT-w, backed h5ad {CELLS:,} cells × {GENES:,} genes, {nonzero / CELLS:.0f} non-zeros per cell "
        f"({size_gb:.1f} GB), {DIMS}-d gene vectors"
    )
    common = f"chunks of {CHUNK_CELLS:,} cells; max |difference| of sampled vectors {difference:.1e}"
    ratio = stream["peak_rss_mb"] / whole["peak_rss_mb"]
    return [
        Row(
            comparison=comparison,
            case="streamed vs in-memory throughput",
            unit="cells/s",
            baseline=speed["in_memory"],
            project=speed["streamed"],
            speedup=speed["streamed"] / speed["in_memory"],
            detail=f"{common}; seconds {whole['seconds']:.1f} (in memory, load + X·Z) vs {stream['seconds']:.1f} (streamed)",
        ),
        Row(
            comparison=comparison,
            case="streamed vs in-memory peak RSS (separate subprocesses)",
            unit="MB",
            baseline=whole["peak_rss_mb"],
            project=stream["peak_rss_mb"],
            speedup=1 / ratio,
            detail=f"streamed peak is {ratio:.1%} of the in-memory peak; output written to disk per chunk",
        ),
    ]


def main(name: str, path: str, out_dir: str) -> None:
    started = time.perf_counter()
    sample = PATHS[name](Path(path), Path(out_dir))
    seconds = time.perf_counter() - started
    np.save(Path(out_dir) / f"{name}_sample.npy", sample)
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM). Not getrusage's ru_maxrss: that one keeps the forking
    parent's peak across exec, so a child of a large process would report the parent's size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("/proc/self/status has no VmHWM line (peak RSS is measured on Linux only).")


if __name__ == "__main__":
    main(*sys.argv[1:])

"""What every comparison shares: alternating timed repeats, real inputs, the machine description, result files."""

from __future__ import annotations

import csv
import hashlib
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import pandas as pd

from gene_assets.settings import PROJECT_ROOT, default_data_dir
from gene_assets.sources.data_directory import DataDirectory
from gene_assets.texts.views import build_view

RESULTS_DIR = PROJECT_ROOT / "bench_results"


@dataclass
class Row:
    """One measured case: the baseline and the project's value of one quantity, and the speedup between them."""

    comparison: str
    case: str
    unit: str
    baseline: float
    project: float
    speedup: float
    """How many times faster the project's path is (from texts/s or from seconds, whichever the unit is)."""
    detail: str = ""


def stopwatch(run: Callable[[], object]) -> float:
    """Seconds one call of `run` takes."""
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def timed_rounds(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each run, calling them in turn `repeats` times so that load drifts hit all alike."""
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            seconds[name].append(stopwatch(run))
    return seconds


def median(values: list[float]) -> float:
    return statistics.median(values)


def summary_texts(count: int, seed: int = 0) -> pd.DataFrame:
    """`count` real 'summary' view texts (name line and RefSeq summary) in gene_texts' columns, a fixed sample."""
    path = DataDirectory(path=default_data_dir()).file("refseq_summaries")
    genes = pd.read_parquet(path, columns=["entrez_id", "symbol", "full_name", "refseq_summary"])
    genes = genes.dropna(subset=["refseq_summary"]).sample(count, random_state=seed)
    texts = build_view(genes.rename(columns={"refseq_summary": "summary"}), "summary")
    texts["text_sha256"] = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts["text"]]
    return texts


def machine_description() -> str:
    import sentence_transformers
    import torch

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        lines = cpuinfo.read_text().splitlines()
        cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), cpu)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"CPU: {cpu}; {len(os.sched_getaffinity(0))} cores; load average before the run (1, 5, 15 min) {load}; "
        f"torch {torch.__version__}; sentence-transformers {sentence_transformers.__version__}; "
        f"Python {platform.python_version()}"
    )


def markdown_table(rows: list[Row]) -> str:
    names = [f.name for f in fields(Row)]
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for row in rows:
        values = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in asdict(row).values()]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines)


def write_results(rows: list[Row], machine: str, seconds: float, directory: Path = RESULTS_DIR) -> str:
    """Write benchmarks.csv and benchmarks.md; return the markdown."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "benchmarks.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[f.name for f in fields(Row)])
        writer.writeheader()
        writer.writerows(asdict(row) for row in rows)
    report = f"# Benchmarks\n\n{machine}\n\nTotal run time: {seconds:.0f} s\n\n{markdown_table(rows)}\n"
    (directory / "benchmarks.md").write_text(report)
    return report

"""What every comparison shares: alternating timed repeats, real inputs, the machine description, result files."""

from __future__ import annotations

import csv
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from gene_assets.settings import PROJECT_ROOT

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


def machine_description() -> str:
    """CPU model, the flags that decide the reduced-precision kernels, cores, torch threads, oneDNN's ISA cap, load."""
    import sentence_transformers
    import torch

    from gene_assets.embeddings.calibration import cpu_flags, cpu_model

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA")
    return (
        f"CPU: {cpu_model()}; flags: {' '.join(cpu_flags()) or 'none of avx512f/vnni/bf16/amx'}; "
        f"{len(os.sched_getaffinity(0))} cores; torch threads {torch.get_num_threads()}"
        f"{f'; ONEDNN_MAX_CPU_ISA={cap} (bf16/AMX kernels emulated)' if cap else ''}; "
        f"load average before the run (1, 5, 15 min) {load}; torch {torch.__version__}; "
        f"sentence-transformers {sentence_transformers.__version__}; Python {platform.python_version()}"
    )


def chosen_precisions() -> str:
    """The CPU precision `embedding_device` chooses here for each offline sentence-transformers backbone, and why."""
    from gene_assets.embeddings.device import EmbeddingDevice
    from gene_assets.embeddings.registry import BACKBONES

    device = EmbeddingDevice(device="cpu")
    choices = []
    for backbone in BACKBONES.values():
        if backbone.kind_spec.on_device and backbone.offline:
            decision = device.placement(backbone).decision
            choices.append(
                f"{backbone.name} {decision['precision']} ({decision['reason']}; "
                f"{'remembered' if decision['remembered'] else 'calibrated now'})"
            )
    return "chosen CPU precision: " + "; ".join(choices)


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

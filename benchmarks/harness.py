"""What every comparison shares: alternating timed repeats, real inputs, the machine description, the history files."""

from __future__ import annotations

import csv
import io
import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

from gene_assets.storage import write_bytes_atomic

HISTORY_DIR = Path(__file__).parent / "results"
"""Committed history: results/<comparison>/<date>-<cpu class>.csv, one file per comparison, day and CPU class."""
HISTORY_COLUMNS = ["date", "commit", "machine"]
"""What each history row adds to its Row: the UTC day, the code it measured and the machine line."""


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


def cpu_class() -> str:
    """The CPU model as a file-name word, e.g. 'amd-epyc-7b13' (what the history is kept per)."""
    from gene_assets.embeddings.calibration import cpu_model

    words = re.sub(r"\((r|tm)\)|\bcpu\b|@.*$|\d+-core processor", " ", cpu_model().lower())
    return re.sub(r"[^a-z0-9]+", "-", words).strip("-") or "unknown-cpu"


def measured_commit() -> str:
    """The commit measured, with '+changes' when the package differs from it."""
    from gene_assets.runs import code_revision

    code = code_revision()
    return f"{code['commit'] or 'no-git'}{'+changes' if code['uncommitted_changes'] else ''}"


def write_history(
    comparison: str, rows: list[Row], machine: str, directory: Path = HISTORY_DIR, day: str | None = None
) -> Path:
    """One comparison's rows as directory/<comparison>/<day>-<cpu class>.csv, each with the day, the commit and the
    machine line (a rerun the same day on the same CPU class replaces the file)."""
    day = day or datetime.now(UTC).date().isoformat()
    path = directory / comparison / f"{day}-{cpu_class()}.csv"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[f.name for f in fields(Row)] + HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    commit, line = measured_commit(), " ".join(machine.split())
    writer.writerows({**asdict(row), "date": day, "commit": commit, "machine": line} for row in rows)
    write_bytes_atomic(path, buffer.getvalue().encode())
    return path

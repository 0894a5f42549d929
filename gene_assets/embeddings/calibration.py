"""CPU precision calibration: which of a backbone's allowed precisions runs fastest on this machine within the
accuracy bar, measured on real RefSeq summaries against fp32 and remembered per (machine, backbone, revision).

A reduced precision is chosen only if (a) its minimum cosine to the fp32 vectors of the calibration texts reaches
the backbone's floor, (b) the committed task evidence (`precision_evidence.json`, written by
`python -m benchmarks precision_evidence`) shows the gene-task suite's primary metrics moving by at most
TASK_DELTA_BAR against fp32 vectors, and (c) it embeds the calibration texts at least SPEED_MARGIN times faster
than fp32 here. Otherwise the decision is fp32, so the chosen path is never slower than the plain one."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import GeneAssetsError
from ..settings import PRECISION_DECISIONS_ENV, default_data_dir, gene_assets_home
from ..storage import write_bytes_atomic
from .backbone import Backbone, Precision

EVIDENCE_FILE = Path(__file__).with_name("precision_evidence.json")
ROUNDS = 3
"""Alternating timed rounds per precision; the median counts."""
SPEED_MARGIN = 1.10
"""A reduced precision must be at least this many times faster than fp32 to be chosen (noise must not flip it)."""
HOPELESS = 1.5
"""A precision this many times slower than fp32 in the first round is not timed again."""
TASK_DELTA_BAR = 0.005
"""Largest move of a gene-task primary metric against fp32 vectors that a reduced precision may cause."""
CPU_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_bf16",
    "amx_int8",
    "amx_tile",
)
"""The /proc/cpuinfo flags that decide which reduced-precision kernels are native."""
NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}


def cpu_model() -> str:
    for line in _cpuinfo_lines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The flags of CPU_FLAGS this CPU reports."""
    flags = next((set(line.split(":", 1)[1].split()) for line in _cpuinfo_lines() if line.startswith("flags")), set())
    return [flag for flag in CPU_FLAGS if flag in flags]


def _cpuinfo_lines() -> list[str]:
    path = Path("/proc/cpuinfo")
    return path.read_text().splitlines() if path.exists() else []


def machine_fingerprint() -> dict:
    """What decides which kernels are fast here: CPU model and flags, cores, torch version, oneDNN's ISA cap."""
    import torch

    return {
        "cpu": cpu_model(),
        "flags": cpu_flags(),
        "cores": len(os.sched_getaffinity(0)),
        "torch": torch.__version__,
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
    }


def candidates(backbone: Backbone, flags: list[str], evidence: dict | None = None) -> tuple[list[Precision], dict]:
    """The reduced precisions worth timing here, and why each other allowed one is not."""
    evidence = load_evidence() if evidence is None else evidence
    chosen, excluded = [], {}
    for precision in backbone.fast_path.precisions:
        if precision == "fp32":
            continue
        measured = evidence.get(backbone.name, {}).get(precision)
        if precision == "bf16" and not NATIVE_BF16_FLAGS & set(flags):
            excluded[precision] = "the CPU has no avx512_bf16 or amx_bf16: bf16 would be emulated"
        elif measured is None or measured.get("revision") != backbone.revision:
            excluded[precision] = "no task evidence for this revision in precision_evidence.json"
        elif measured["max_task_delta"] > TASK_DELTA_BAR:
            excluded[precision] = (
                f"gene-task primary metrics move by {measured['max_task_delta']:.4f} > {TASK_DELTA_BAR}"
            )
        else:
            chosen.append(precision)
    return chosen, excluded


def load_evidence(path: Path = EVIDENCE_FILE) -> dict:
    """{backbone: {precision: {revision, max_task_delta, ...}}} from the committed evidence file."""
    return json.loads(path.read_text())["backbones"] if path.exists() else {}


def summary_texts(count: int, data_dir: str | None = None, seed: int = 0) -> pd.DataFrame:
    """`count` real 'summary' view texts (name line and RefSeq summary) in gene_texts' columns, a fixed sample."""
    from ..sources.data_directory import DataDirectory
    from ..texts.views import build_view

    path = DataDirectory(path=data_dir or default_data_dir()).file("refseq_summaries")
    genes = pd.read_parquet(path, columns=["entrez_id", "symbol", "full_name", "refseq_summary"])
    genes = genes.dropna(subset=["refseq_summary"]).sample(count, random_state=seed)
    texts = build_view(genes.rename(columns={"refseq_summary": "summary"}), "summary")
    texts["text_sha256"] = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts["text"]]
    return texts


@dataclass
class PrecisionDecision:
    """The precision a backbone runs at on this machine, and the evidence it was chosen on."""

    precision: Precision
    reason: str
    fingerprint: dict
    seconds: dict[str, list[float]] = field(default_factory=dict)
    """Seconds per timed round of the calibration texts, per precision."""
    min_cosine: dict[str, float] = field(default_factory=dict)
    task_deltas: dict[str, float] = field(default_factory=dict)
    """Largest |Δ| of a gene-task primary metric against fp32 vectors, from precision_evidence.json."""
    excluded: dict[str, str] = field(default_factory=dict)
    texts: int = 0
    threads: int = 0
    decided_at: str = ""
    remembered: bool = False
    """True when read back from the decisions file instead of measured in this process."""

    def speedups(self) -> dict[str, float]:
        base = statistics.median(self.seconds["fp32"]) if self.seconds.get("fp32") else None
        return {p: round(base / statistics.median(s), 3) for p, s in self.seconds.items() if base and s}

    def evidence(self) -> dict:
        """The decision and its evidence as JSON-ready metadata."""
        return {**asdict(self), "speedup_vs_fp32": self.speedups()}


class DecisionsFileError(GeneAssetsError, ValueError):
    """The remembered precision decisions file cannot be read as one."""


def untrusted_decision(record, backbone: Backbone, fingerprint: dict) -> str | None:
    """Why a remembered decision cannot be used for `backbone` here, or None when it can: it must be a decision
    record, name one of the backbone's allowed precisions, and a reduced one must still be a candidate (task evidence
    within TASK_DELTA_BAR for this revision, native kernels) with no recorded task move beyond the bar."""
    fields = {f.name for f in dataclasses.fields(PrecisionDecision)}
    if not isinstance(record, dict) or not {"precision", "reason", "fingerprint"} <= set(record) <= fields:
        return "it is not a decision record"
    precision = record["precision"]
    if precision not in backbone.fast_path.precisions:
        return f"{precision!r} is not one of its allowed precisions {', '.join(backbone.fast_path.precisions)}"
    if precision == "fp32":
        return None
    recorded = (record.get("task_deltas") or {}).get(precision)
    if isinstance(recorded, int | float) and recorded > TASK_DELTA_BAR:
        return f"it records a gene-task move of {recorded:.4f} for {precision}, above the bar {TASK_DELTA_BAR}"
    allowed, excluded = candidates(backbone, fingerprint.get("flags", []))
    if precision not in allowed:
        return f"{precision} is excluded: {excluded.get(precision, 'not a candidate here')}"
    return None


class DecisionStore:
    """Decisions per (machine fingerprint, backbone, revision, what the backbone allows with its task evidence) in
    one JSON file, rewritten atomically: a newly allowed precision or new evidence calibrates again."""

    def __init__(self, path: Path | None = None):
        self.path = Path(
            path or os.environ.get(PRECISION_DECISIONS_ENV, gene_assets_home() / "cache" / "precision_decisions.json")
        )

    @staticmethod
    def key(fingerprint: dict, backbone: Backbone) -> str:
        machine = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]
        allowed = {"precisions": backbone.fast_path.precisions, "evidence": load_evidence().get(backbone.name, {})}
        options = hashlib.sha256(json.dumps(allowed, sort_keys=True).encode()).hexdigest()[:16]
        return f"{machine}/{backbone.name}@{backbone.revision}/{options}"

    def read(self) -> dict:
        if not self.path.exists():
            return {}
        try:
            decisions = json.loads(self.path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DecisionsFileError(
                f"{self.path} is not a precision-decisions file ({exc}). Delete it: the next run calibrates again."
            ) from exc
        if not isinstance(decisions, dict):
            raise DecisionsFileError(
                f"{self.path} holds a JSON {type(decisions).__name__}, not a precision-decisions file (an object of "
                "decisions). Delete it: the next run calibrates again."
            )
        return decisions

    def get(self, fingerprint: dict, backbone: Backbone) -> PrecisionDecision | None:
        """The remembered decision, if there is one and it still holds: a record that is malformed, names a
        precision the backbone does not allow, or one its task evidence or this CPU excludes is dropped (and the
        backbone calibrated again), saying why on stderr."""
        record = self.read().get(self.key(fingerprint, backbone))
        if record is None:
            return None
        problem = untrusted_decision(record, backbone, fingerprint)
        if problem:
            print(
                f"{self.path}: the remembered precision decision for {backbone.name} is not used ({problem}); "
                "calibrating again.",
                file=sys.stderr,
            )
            return None
        return PrecisionDecision(**{**record, "remembered": True})

    def put(self, backbone: Backbone, decision: PrecisionDecision) -> None:
        decisions = self.read()
        decisions[self.key(decision.fingerprint, backbone)] = asdict(decision)
        write_bytes_atomic(self.path, json.dumps(decisions, indent=1, sort_keys=True).encode())


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The smallest row-wise cosine between two matrices of the same texts."""
    return float(((a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


def calibrate(
    backbone: Backbone,
    precisions: list[Precision],
    texts: pd.DataFrame,
    token_budget: int,
    threads: int,
    fingerprint: dict,
    excluded: dict | None = None,
    evidence: dict | None = None,
) -> PrecisionDecision:
    """Time fp32 and each candidate precision on `texts` in alternating rounds on `threads` torch threads, compare
    their vectors to fp32's, and choose the fastest candidate within the cosine floor and the speed margin."""
    from .device import Placement
    from .encoders import load_encoder

    evidence = load_evidence() if evidence is None else evidence
    encoders = {p: load_encoder(backbone, Placement("cpu", p, token_budget)) for p in ["fp32", *precisions]}
    warm = texts.iloc[:4]
    vectors = {p: encoder.embed(warm, threads=threads) for p, encoder in encoders.items()}  # kernel set-up, untimed
    seconds: dict[str, list[float]] = {p: [] for p in encoders}
    for round_number in range(ROUNDS):
        for precision, encoder in encoders.items():
            if round_number and seconds[precision][0] > HOPELESS * seconds["fp32"][0]:
                continue
            started = time.perf_counter()
            vectors[precision] = encoder.embed(texts, threads=threads)
            seconds[precision].append(round(time.perf_counter() - started, 4))
    cosines = {p: round(min_cosine(vectors[p], vectors["fp32"]), 5) for p in precisions}
    decision = PrecisionDecision(
        precision="fp32",
        reason="",
        fingerprint=fingerprint,
        seconds=seconds,
        min_cosine=cosines,
        task_deltas={
            p: evidence[backbone.name][p]["max_task_delta"] for p in precisions if p in evidence.get(backbone.name, {})
        },
        excluded=dict(excluded or {}),
        texts=len(texts),
        threads=threads,
        decided_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    speedups = decision.speedups()
    floor = backbone.fast_path.min_cosine
    within = [p for p in precisions if cosines[p] >= floor and speedups[p] >= SPEED_MARGIN]
    for p in precisions:
        if cosines[p] < floor:
            decision.excluded[p] = f"min cosine to fp32 {cosines[p]:.4f} < {floor}"
        elif speedups[p] < SPEED_MARGIN:
            decision.excluded[p] = f"{speedups[p]:.2f}x fp32's speed here, below the {SPEED_MARGIN}x margin"
    if within:
        decision.precision = max(within, key=speedups.get)
        decision.reason = (
            f"{speedups[decision.precision]:.2f}x fp32's speed on {len(texts)} real summaries, "
            f"min cosine {cosines[decision.precision]:.4f}"
        )
    else:
        decision.reason = "no allowed precision beats fp32 here within the accuracy bar"
    return decision

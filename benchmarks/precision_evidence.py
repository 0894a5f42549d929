"""Task evidence for reduced CPU precisions: how far the gene-task suite's primary metrics move when a backbone's
vectors are made at bf16 or int8 instead of fp32. Writes gene_assets/embeddings/precision_evidence.json, which the
calibration reads (a reduced precision without evidence within TASK_DELTA_BAR is never chosen).

    python -m benchmarks.precision_evidence [backbone ...] [--precisions PRECISION ...]
        (default: all-MiniLM-L6-v2, every reduced precision its registry entry allows; named precisions are
        measured again and the others' stored evidence kept)

Scope: the Geneformer tasks small enough to embed three times on a laptop CPU (every task of GENEFORMER_TASKS but
the genome-wide bivalent one), summary view, all-genes universe, the results assets' engine."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from dagster import DagsterInstance, materialize

from gene_assets.definitions import all_asset_checks, all_assets
from gene_assets.embeddings.cache import EmbeddingCache
from gene_assets.embeddings.calibration import EVIDENCE_FILE, TASK_DELTA_BAR, min_cosine
from gene_assets.embeddings.device import Placement
from gene_assets.embeddings.encoders import idle_cores, load_encoder, vector_settings
from gene_assets.embeddings.registry import get_backbone
from gene_assets.leaderboard.report import PRIMARY_CLASSIFIER
from gene_assets.resources import temporary_resources
from gene_assets.results import GeneMatrix
from gene_assets.storage import write_bytes_atomic
from gene_assets.tasks.assets import TaskEvaluationConfig, labels_of, restrict, score_task, task_genes
from gene_assets.tasks.geneformer import GENEFORMER_TASKS
from gene_assets.tasks.spec import PRIMARY_METRIC

from .harness import machine_description

VIEW = "summary"
TASKS = [task for task in GENEFORMER_TASKS if "genomewide" not in task.name]
COMMAND = "python -m benchmarks.precision_evidence"


def task_inputs() -> tuple[pd.DataFrame, list]:
    """The summary texts of the tasks' genes and each task's labels, materialized from the real data."""
    with tempfile.TemporaryDirectory() as scratch, DagsterInstance.ephemeral() as instance:
        resources = temporary_resources(
            Path(scratch), release_repo=Path(scratch) / "repo", remote=Path(scratch) / "remote"
        )
        sources = materialize(
            [*all_assets, *all_asset_checks],
            selection=["gene_catalog", "gene_summaries", "gene_texts", "geneformer_labels"],
            instance=instance,
            resources=resources,
            run_config={"ops": {"gene_texts": {"config": {"views": [VIEW]}}}},
        )
        texts = sources.output_for_node("gene_texts")
        labels = sources.output_for_node("geneformer_labels")
    texts = texts[texts["view"] == VIEW]
    genes = set(texts["entrez_id"])
    tasks = [(task, restrict(task, labels_of(task, labels), genes)[0]) for task in TASKS]
    needed = set(np.concatenate([task_genes(task, rows) for task, rows in tasks]))
    return texts[texts["entrez_id"].isin(needed)].reset_index(drop=True), tasks


def primary_metrics(vectors: np.ndarray, texts: pd.DataFrame, tasks: list, seed: int = 0) -> dict[str, float]:
    """{'task/classifier': primary metric estimate} on these vectors (`seed`: the protocol's folds and forests)."""
    protocol = TaskEvaluationConfig(seed=seed).evaluation_protocol()
    genes = GeneMatrix(pd.Index(texts["entrez_id"]), vectors)
    estimates = {}
    for task, labels in tasks:
        rows, _ = score_task(task, labels, genes, protocol)
        for row in rows:
            if row["metric"] == PRIMARY_METRIC[task.kind]:
                estimates[f"{task.name}/{row['classifier']}"] = float(row["estimate"])
    return estimates


def measure(backbone_name: str, texts: pd.DataFrame, tasks: list, precisions: list[str] | None = None) -> dict:
    """Per reduced precision (`precisions`, default: every one the entry allows): every task's primary metric |Δ| against fp32 vectors. The bar is judged on the
    leaderboard's primary classifier of each task (logistic regression for binary tasks); the other classifiers'
    |Δ| (random forests) is shown beside their spread on fp32 vectors between two protocol seeds."""
    backbone = get_backbone(backbone_name)
    vectors = {}
    for precision in ["fp32", *(precisions or [p for p in backbone.fast_path.precisions if p != "fp32"])]:
        encoder = load_encoder(backbone, Placement("cpu", precision, backbone.fast_path.token_budget))
        cache = EmbeddingCache(vector_settings(backbone, precision))  # the vectors a run at this precision reuses
        started = time.perf_counter()
        vectors[precision] = cache.embed(texts, VIEW, partial(encoder.embed, threads=idle_cores())).matrix
        print(f"{backbone.name} {precision}: {len(texts)} texts in {time.perf_counter() - started:.1f} s", flush=True)
    primary = {f"{task.name}/{PRIMARY_CLASSIFIER[task.kind]}" for task, _ in tasks}
    reference = primary_metrics(vectors["fp32"], texts, tasks)
    reseeded = primary_metrics(vectors["fp32"], texts, tasks, seed=1)
    spread = {key: round(abs(reseeded[key] - reference[key]), 4) for key in reference if key not in primary}
    evidence = {}
    for precision in vectors:
        if precision == "fp32":
            continue
        metrics = primary_metrics(vectors[precision], texts, tasks)
        deltas = {key: round(abs(metrics[key] - reference[key]), 4) for key in reference}
        judged = {key: delta for key, delta in deltas.items() if key in primary}
        other = {key: delta for key, delta in deltas.items() if key not in primary}
        evidence[precision] = {
            "revision": backbone.revision,
            "max_task_delta": max(judged.values()),
            "task_deltas": judged,
            "within_bar": max(judged.values()) <= TASK_DELTA_BAR,
            "other_classifier_deltas": other,
            "max_other_classifier_delta": max(other.values()),
            "max_other_classifier_seed_spread": max(spread.values()),
            "min_cosine": round(min_cosine(vectors[precision], vectors["fp32"]), 5),
            "texts": len(texts),
            "machine": machine_description(),
        }
    return evidence


def main(backbones: list[str], precisions: list[str] | None = None) -> None:
    texts, tasks = task_inputs()
    print(f"{len(texts)} summary texts for {len(tasks)} tasks", flush=True)
    existing = json.loads(EVIDENCE_FILE.read_text()) if EVIDENCE_FILE.exists() else {"backbones": {}}
    for name in backbones:
        kept = existing["backbones"].get(name, {}) if precisions else {}
        existing["backbones"][name] = {**kept, **measure(name, texts, tasks, precisions)}
    existing.update(
        command=COMMAND,
        tasks=[task.name for task in TASKS],
        view=VIEW,
        universe="all_genes",
        bar=TASK_DELTA_BAR,
        judged_on="each task's primary classifier (leaderboard.report."
        "PRIMARY_CLASSIFIER); the other classifiers shown beside their fp32 seed spread",
        machine=machine_description(),
    )
    write_bytes_atomic(EVIDENCE_FILE, (json.dumps(existing, indent=1, sort_keys=True) + "\n").encode())
    print(json.dumps(existing["backbones"], indent=1))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backbones", nargs="*", default=["all-MiniLM-L6-v2"])
    parser.add_argument("--precisions", nargs="+", help="measure only these reduced precisions (fp32 is the reference)")
    arguments = parser.parse_args()
    main(arguments.backbones, arguments.precisions)

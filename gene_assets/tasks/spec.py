"""What a gene task is: its kind, its label source (for the leakage audit) and its family (for summaries)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import pandas as pd

from ..errors import GeneAssetsError

TaskKind = Literal[
    "binary", "multiclass", "multilabel", "pairs", "cells", "perturbation_signature", "perturbation_mean_shift"
]

PRIMARY_METRIC = {
    "binary": "roc_auc",
    "pairs": "roc_auc",
    "multiclass": "balanced_accuracy",
    "multilabel": "mean_roc_auc",
    "cells": "macro_f1",
    "perturbation_signature": "average_precision",
    "perturbation_mean_shift": "pearson_top20_de",
}
"""Primary metric per task kind; `cells` is the cell-type kind (kNN on cell embeddings, gene_assets/cells/)."""
LOWER_IS_BETTER = {"relative_mae"}


@dataclass(frozen=True)
class GeneTask:
    name: str
    family: str
    kind: TaskKind
    label_sources: tuple[str, ...]
    """Where the labels come from (GO, KEGG, HGNC, gene_type, location, literature, …); a text view that
    contains one of these is flagged by the leakage audit."""
    description: str
    positive: str | None = None
    """Binary tasks: the label value of the positive class."""
    min_class_genes: int = 0
    max_classes: int | None = None
    """Multiclass tasks: classes kept after restricting to a gene universe (the largest first)."""
    label_size_range: tuple[int, int] = (20, 1000)
    """Multilabel tasks: a label is scored when this many genes of the universe carry it."""


class TaskLabelError(GeneAssetsError, ValueError):
    """Task labels are unusable (missing columns, a single class, too few examples, nothing maps)."""


def require_mapped(task: str, path, entrez_ids, tried: dict) -> None:
    """A task none of whose genes maps to a catalog gene is an error naming the identifiers that were tried
    ({kind: the file's identifiers of that kind}, in the order they were tried)."""
    if pd.Series(entrez_ids).notna().any():
        return
    attempts = ", then ".join(
        f"{kind} (e.g. {', '.join(map(str, pd.Series(ids).dropna().unique()[:3]))})" for kind, ids in tried.items()
    )
    raise TaskLabelError(
        f"Task {task}: no gene of {path} maps to a catalog gene; tried {attempts}. Check that the file lists human "
        "genes by these identifiers, and that gene_catalog holds every human gene (org.Hs.eg.db and NCBI gene_info)."
    )


def mapping_counts(n_source: int, n_mapped: int, **extra) -> dict:
    return {"n_source": int(n_source), "n_unmapped": int(n_source - n_mapped), "n_mapped": int(n_mapped), **extra}


def label_key(value) -> str:
    """A label value as compared: case, surrounding whitespace and '-', '_' or spaces between words do not count."""
    return re.sub(r"[\s_-]+", " ", str(value)).strip().casefold()


def canonical_labels(values: pd.Series, allowed: list[str], path, what: str) -> tuple[pd.Series, int]:
    """`values` spelled as in `allowed` (respelling only what label_key ignores); any other value, a missing one
    included, is a TaskLabelError naming the file, the value and its count. Returns the labels and how many rows
    were respelled."""
    lookup = {label_key(label): label for label in allowed}
    keys = values.map(label_key).where(values.notna())
    unknown = values[~keys.isin(lookup)]
    if len(unknown):
        listed = ", ".join(f"{value!r} ({n} rows)" for value, n in unknown.fillna("<missing>").value_counts().items())
        raise TaskLabelError(
            f"{path}: {what} has {len(unknown)} rows with unknown label values: {listed}. Expected "
            f"one of {allowed} (case, spaces and -/_ may differ); fix or remove those rows."
        )
    labels = keys.map(lookup)
    return labels, int((labels != values).sum())


def dropped_rows(counts: dict, n_rows: int, n_kept: int, n_respelled: int) -> dict:
    """Add to a task's mapping counts how many label rows it read, respelled and dropped (unmapped, duplicate or
    conflicting), so metadata accounts for every row."""
    return {
        **counts,
        "n_rows": int(n_rows),
        "n_rows_respelled": int(n_respelled),
        "n_rows_dropped": int(n_rows - n_kept),
    }

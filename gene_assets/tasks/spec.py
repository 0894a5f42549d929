"""What a gene task is: its kind, its label source (for the leakage audit) and its family (for summaries)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd

TaskKind = Literal["binary", "multiclass", "multilabel", "pairs", "cells", "perturbation_signature",
                   "perturbation_mean_shift"]

PRIMARY_METRIC = {"binary": "roc_auc", "pairs": "roc_auc", "multiclass": "balanced_accuracy", "multilabel": "mean_roc_auc",
                  "cells": "macro_f1", "perturbation_signature": "average_precision",
                  "perturbation_mean_shift": "pearson_top20_de"}
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


class TaskLabelError(ValueError):
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

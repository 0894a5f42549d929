"""The Geneformer / GenePT binary gene classification tasks."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..catalog.resolver import GeneResolver


@dataclass(frozen=True)
class BinaryGeneTask:
    name: str
    source_task: str
    positive: str
    negative: str
    label_source: str
    description: str


GENEFORMER_TASKS = {
    t.name: t
    for t in (
        BinaryGeneTask("dosage_sensitive_tfs", "dosage_sensitive_vs_insensitive_tf", "Dosage-sensitive TFs",
                       "Dosage-insensitive TFs", "literature",
                       "Dosage-sensitive vs dosage-insensitive transcription factors (Geneformer)."),
        BinaryGeneTask("bivalent_vs_lys4_only", "bivalent_vs_lys4_only", "bivalent", "lys4_only", "chromatin_state",
                       "Bivalent (H3K4me3 + H3K27me3) vs H3K4me3-only promoters in ES cells (Geneformer)."),
        BinaryGeneTask("bivalent_vs_no_methylation", "bivalent_vs_no_methylation", "bivalent", "no_methylation",
                       "chromatin_state", "Bivalent vs unmethylated promoters in ES cells (Geneformer)."),
        BinaryGeneTask("long_vs_short_range_tfs", "long_vs_short_range_tf", "long_range", "short_range",
                       "literature", "Long- vs short-range transcription factors (Geneformer labels)."),
    )
}


class TaskLabelError(ValueError):
    """Task labels are unusable (unknown task, single class, nothing maps)."""


def map_binary_task_labels(labels: pd.DataFrame, task: BinaryGeneTask, resolver: GeneResolver) -> tuple[pd.DataFrame, dict]:
    """entrez_id, label (1 = positive class) for one task, and counts of what was dropped."""
    rows = labels[labels["task"] == task.source_task]
    if rows.empty:
        raise TaskLabelError(f"Task {task.name}: no rows with task == {task.source_task!r} in the label file.")
    rows = rows[rows["label"].isin([task.positive, task.negative])]
    resolution = resolver.ensembl(rows["ensembl_id"])
    by_symbol = resolver.symbols(rows["gene_name"])
    entrez = resolution.entrez_ids.fillna(by_symbol.entrez_ids)
    mapped = pd.DataFrame({"entrez_id": entrez.to_numpy(), "label": (rows["label"] == task.positive).astype(int).to_numpy()})
    n_unmapped_ids = int(rows["ensembl_id"].nunique() - rows.loc[entrez.notna().to_numpy(), "ensembl_id"].nunique())
    mapped = mapped.dropna(subset=["entrez_id"]).drop_duplicates()
    conflicting = mapped["entrez_id"].duplicated(keep=False)
    n_conflicting = int(mapped.loc[conflicting, "entrez_id"].nunique())
    mapped = mapped[~conflicting].astype({"entrez_id": "int64"}).reset_index(drop=True)
    counts = {
        "n_source_genes": int(rows["ensembl_id"].nunique()),
        "n_unmapped": n_unmapped_ids,
        "n_conflicting": n_conflicting,
        "n_mapped": len(mapped),
        "n_positive": int(mapped["label"].sum()),
        "n_negative": int((mapped["label"] == 0).sum()),
    }
    if counts["n_positive"] == 0 or counts["n_negative"] == 0:
        raise TaskLabelError(f"Task {task.name}: after mapping to the gene catalog only one class is left ({counts}).")
    return mapped.assign(task=task.name), counts

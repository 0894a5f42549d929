"""The seven Geneformer gene classification tasks and the Chen 2020 long/short-range TF list."""

from __future__ import annotations

import pandas as pd

from ..catalog.resolver import GeneResolver
from .spec import GeneTask, TaskLabelError, canonical_labels, dropped_rows, label_key, mapping_counts, require_mapped

# (task, column value in the label file, positive class, negative class)
GENEFORMER_SOURCES = {
    "dosage_sensitive_tfs": ("dosage_sensitive_vs_insensitive_tf", "Dosage-sensitive TFs", "Dosage-insensitive TFs"),
    "bivalent_vs_lys4_only": ("bivalent_vs_lys4_only", "bivalent", "lys4_only"),
    "bivalent_vs_no_methylation": ("bivalent_vs_no_methylation", "bivalent", "no_methylation"),
    "bivalent_vs_lys4_only_genomewide": ("bivalent_vs_lys4_only_genomewide", "bivalent", "lys4_only"),
    "tf_range_geneformer": ("long_vs_short_range_tf", "long_range", "short_range"),
    "n1_network_central": ("notch1_network_central_vs_peripheral", "n1_central", "n1_peripheral"),
    "n1_target_activated": ("notch1_target_activated_vs_nontarget", "n1_activated", "n1_nontarget"),
}

GENEFORMER_TASKS = [
    GeneTask(
        "dosage_sensitive_tfs",
        "regulation",
        "binary",
        ("literature",),
        "Dosage-sensitive vs dosage-insensitive transcription factors (Geneformer).",
        "Dosage-sensitive TFs",
    ),
    GeneTask(
        "bivalent_vs_lys4_only",
        "chromatin",
        "binary",
        ("chromatin_state",),
        "Bivalent (H3K4me3 + H3K27me3) vs H3K4me3-only promoters in ES cells (Geneformer).",
        "bivalent",
    ),
    GeneTask(
        "bivalent_vs_no_methylation",
        "chromatin",
        "binary",
        ("chromatin_state",),
        "Bivalent vs unmethylated promoters in ES cells (Geneformer).",
        "bivalent",
    ),
    GeneTask(
        "bivalent_vs_lys4_only_genomewide",
        "chromatin",
        "binary",
        ("chromatin_state",),
        "Bivalent vs H3K4me3-only promoters, genome-wide (Geneformer).",
        "bivalent",
    ),
    GeneTask(
        "tf_range_geneformer",
        "regulation",
        "binary",
        ("literature",),
        "Long- vs short-range transcription factors, Geneformer's labels.",
        "long_range",
    ),
    GeneTask(
        "n1_network_central",
        "regulation",
        "binary",
        ("network",),
        "Central vs peripheral genes of the NOTCH1 network in endothelial cells (Geneformer).",
        "n1_central",
    ),
    GeneTask(
        "n1_target_activated",
        "regulation",
        "binary",
        ("network",),
        "NOTCH1-activated targets vs non-targets (Geneformer).",
        "n1_activated",
    ),
    GeneTask(
        "tf_range_chen2020",
        "regulation",
        "binary",
        ("literature",),
        "Long- vs short-range TFs, Chen et al. 2020 supplementary list by symbol (GenePT's labels; "
        "14 of its long-range TFs are short-range in Geneformer's list).",
        "long-range TF",
    ),
]

GENEFORMER_COLUMNS = ["task", "label", "ensembl_id", "gene_name"]


def drop_conflicts(mapped: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Deduplicate (gene, label) and drop genes carrying both classes; returns the number dropped."""
    mapped = mapped.dropna(subset=["entrez_id"]).drop_duplicates(["entrez_id", "label"])
    conflicting = mapped["entrez_id"].duplicated(keep=False)
    n = int(mapped.loc[conflicting, "entrez_id"].nunique())
    return mapped[~conflicting].astype({"entrez_id": "int64"}).reset_index(drop=True), n


def map_geneformer_labels(labels: pd.DataFrame, resolver: GeneResolver, path="label file") -> tuple[pd.DataFrame, dict]:
    """task, entrez_id, label for the seven Geneformer tasks: by Ensembl id, then by symbol."""
    missing = [c for c in GENEFORMER_COLUMNS if c not in labels.columns]
    if missing:
        raise TaskLabelError(f"{path} lacks columns {missing}; expected {GENEFORMER_COLUMNS}.")
    frames, counts = [], {}
    tasks = labels["task"].map(label_key)
    for task, (source_task, positive, negative) in GENEFORMER_SOURCES.items():
        rows = labels[(tasks == label_key(source_task)).to_numpy()]
        if rows.empty:
            raise TaskLabelError(f"{path}: no rows for task {source_task!r} with labels {positive!r}/{negative!r}.")
        values, n_respelled = canonical_labels(rows["label"], [positive, negative], path, f"task {source_task!r}")
        entrez = resolver.ensembl(rows["ensembl_id"]).entrez_ids.fillna(resolver.symbols(rows["gene_name"]).entrez_ids)
        require_mapped(task, path, entrez, {"Ensembl ids": rows["ensembl_id"], "symbols": rows["gene_name"]})
        mapped = pd.DataFrame({"entrez_id": entrez.to_numpy(), "label": values.to_numpy()})
        n_mapped_ids = rows.loc[entrez.notna().to_numpy(), "ensembl_id"].nunique()
        mapped, n_conflicting = drop_conflicts(mapped)
        counts[task] = dropped_rows(
            mapping_counts(rows["ensembl_id"].nunique(), n_mapped_ids, n_conflicting=n_conflicting),
            len(rows),
            len(mapped),
            n_respelled,
        )
        frames.append(mapped.assign(task=task))
    return pd.concat(frames, ignore_index=True), counts


def map_chen2020_labels(
    table: pd.DataFrame, resolver: GeneResolver, path="Chen 2020 file"
) -> tuple[pd.DataFrame, dict]:
    """task, entrez_id, label for the Chen 2020 long/short-range TF list (first column: symbol)."""
    if "assignment" not in table.columns:
        raise TaskLabelError(f"{path} has no 'assignment' column (expected 'long-range TF' / 'short-range TF').")
    symbols = table.iloc[:, 0]
    values, n_respelled = canonical_labels(
        table["assignment"], ["long-range TF", "short-range TF"], path, "column 'assignment'"
    )
    entrez = resolver.symbols(symbols).entrez_ids
    require_mapped("tf_range_chen2020", path, entrez, {"symbols": symbols})
    mapped, n_conflicting = drop_conflicts(pd.DataFrame({"entrez_id": entrez.to_numpy(), "label": values.to_numpy()}))
    n_mapped_symbols = symbols[entrez.notna().to_numpy()].nunique()
    counts = {
        "tf_range_chen2020": dropped_rows(
            mapping_counts(symbols.nunique(), n_mapped_symbols, n_conflicting=n_conflicting),
            len(table),
            len(mapped),
            n_respelled,
        )
    }
    return mapped.assign(task="tf_range_chen2020"), counts

"""GenePT's gene functionality task: the gene_type of Geneformer's gene_info_table, 15 most common classes."""

from __future__ import annotations

import pandas as pd

from ..catalog.resolver import GeneResolver
from .spec import GeneTask, TaskLabelError, mapping_counts, require_mapped

GENE_TYPE_TASK = GeneTask(
    "gene_type",
    "gene_type",
    "multiclass",
    ("gene_type",),
    "Gene functionality (GenePT): Ensembl gene biotype, the 15 most common classes with more than 75 genes.",
    min_class_genes=76,
    max_classes=15,
)


def map_gene_type_labels(
    table: pd.DataFrame, resolver: GeneResolver, path="gene_info_table"
) -> tuple[pd.DataFrame, dict]:
    """task, entrez_id, label (gene_type) for every mappable gene; class selection happens per universe."""
    missing = [c for c in ("ensembl_id", "gene_name", "gene_type") if c not in table.columns]
    if missing:
        raise TaskLabelError(f"{path} lacks columns {missing}; expected ensembl_id, gene_name, gene_type.")
    entrez = resolver.ensembl(table["ensembl_id"]).entrez_ids.fillna(resolver.symbols(table["gene_name"]).entrez_ids)
    require_mapped("gene_type", path, entrez, {"Ensembl ids": table["ensembl_id"], "symbols": table["gene_name"]})
    mapped = pd.DataFrame({"entrez_id": entrez.to_numpy(), "label": table["gene_type"].to_numpy()}).dropna()
    mapped = mapped.drop_duplicates(["entrez_id", "label"])
    ambiguous = mapped["entrez_id"].duplicated(keep=False)
    n_conflicting = int(mapped.loc[ambiguous, "entrez_id"].nunique())
    mapped = mapped[~ambiguous].astype({"entrez_id": "int64"})
    n_mapped_ids = table.loc[entrez.notna().to_numpy(), "ensembl_id"].nunique()
    counts = {"gene_type": mapping_counts(table["ensembl_id"].nunique(), n_mapped_ids, n_conflicting=n_conflicting)}
    return mapped.assign(task="gene_type").reset_index(drop=True), counts

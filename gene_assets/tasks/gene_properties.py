"""Gene-property tasks in the style of the gene-property benchmark: TF vs non-TF, HGNC gene groups,
KEGG / GO-BP / OMIM gene sets and chromosome."""

from __future__ import annotations

import gzip
import re

import pandas as pd

from ..catalog.resolver import GeneResolver
from .spec import GeneTask, TaskLabelError, canonical_labels, dropped_rows, mapping_counts, require_mapped

GENE_PROPERTY_TASKS = [
    GeneTask(
        "tf_vs_non_tf",
        "regulation",
        "binary",
        ("literature",),
        "Curated transcription factors vs curated non-TF candidates (Lambert 2018 Human TFs).",
        "TF",
    ),
    GeneTask(
        "hgnc_group",
        "gene_groups",
        "multiclass",
        ("HGNC",),
        "HGNC gene group of genes in exactly one large group (groups with at least 50 such genes).",
        min_class_genes=50,
    ),
    GeneTask(
        "hgnc_groups",
        "gene_groups",
        "multilabel",
        ("HGNC",),
        "Membership in each HGNC gene group with 20 to 1,000 genes (one binary AUC per group).",
    ),
    GeneTask(
        "kegg_pathways",
        "pathways",
        "multilabel",
        ("KEGG",),
        "Membership in each KEGG pathway (ConsensusPathDB) with 20 to 1,000 genes.",
    ),
    GeneTask(
        "go_bp_experimental",
        "biological_process",
        "multilabel",
        ("GO",),
        "Membership in each GO biological process (experimental evidence, propagated) with 20 to 1,000 genes.",
    ),
    GeneTask(
        "omim_disease",
        "disease",
        "multilabel",
        ("OMIM",),
        "Association with each OMIM disease (DOID, propagated) with 20 to 1,000 genes.",
    ),
    GeneTask(
        "chromosome",
        "genomic_location",
        "multiclass",
        ("location",),
        "Chromosome of protein-coding genes on a single chromosome (1-22, X, Y).",
        min_class_genes=20,
    ),
]

MULTICLASS_MIN_GENES = 50
CHROMOSOMES = [str(i) for i in range(1, 23)] + ["X", "Y"]


def tf_labels(table: pd.DataFrame, resolver: GeneResolver, path="Human TFs file") -> tuple[pd.DataFrame, dict]:
    """TF (Is TF? == Yes) vs non-TF (== No) among the 2,765 curated candidates; Entrez id, then Ensembl, then symbol."""
    required = ["Ensembl ID", "HGNC symbol", "Is TF?", "EntrezGene ID"]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise TaskLabelError(f"{path} lacks columns {missing}; expected the Human TFs DatabaseExtract table.")
    is_tf, n_respelled = canonical_labels(table["Is TF?"], ["Yes", "No"], path, "column 'Is TF?'")
    by_entrez = pd.to_numeric(table["EntrezGene ID"], errors="coerce")
    known = set(resolver.catalog["entrez_id"])
    by_entrez = by_entrez.where(by_entrez.isin(known)).astype("Int64").reset_index(drop=True)
    entrez = by_entrez.fillna(resolver.ensembl(table["Ensembl ID"]).entrez_ids).fillna(
        resolver.symbols(table["HGNC symbol"]).entrez_ids
    )
    tried = {"Entrez ids": table["EntrezGene ID"], "Ensembl ids": table["Ensembl ID"], "symbols": table["HGNC symbol"]}
    require_mapped("tf_vs_non_tf", path, entrez, tried)
    labels = is_tf.map({"Yes": "TF", "No": "non_TF"}).to_numpy()
    mapped = pd.DataFrame({"entrez_id": entrez.to_numpy(), "label": labels}).dropna().drop_duplicates()
    mapped = mapped[~mapped["entrez_id"].duplicated(keep=False)].astype({"entrez_id": "int64"})
    counts = dropped_rows(mapping_counts(len(table), entrez.notna().sum()), len(table), len(mapped), n_respelled)
    return mapped.assign(task="tf_vs_non_tf"), {"tf_vs_non_tf": counts}


def hgnc_group_labels(
    groups: pd.DataFrame, resolver: GeneResolver, path="HGNC gene groups"
) -> tuple[pd.DataFrame, dict]:
    """hgnc_group (multiclass) and hgnc_groups (multilabel) from the long (gene, group) table."""
    missing = [c for c in ("symbol", "entrez_id", "gene_group") if c not in groups.columns]
    if missing:
        raise TaskLabelError(f"{path} lacks columns {missing}; expected hgnc_id, symbol, entrez_id, gene_group.")
    known = set(resolver.catalog["entrez_id"])
    entrez = pd.to_numeric(groups["entrez_id"], errors="coerce")
    entrez = entrez.where(entrez.isin(known)).astype("Int64").reset_index(drop=True)
    entrez = entrez.fillna(resolver.symbols(groups["symbol"]).entrez_ids)
    require_mapped("hgnc_groups", path, entrez, {"Entrez ids": groups["entrez_id"], "symbols": groups["symbol"]})
    pairs = pd.DataFrame({"entrez_id": entrez.to_numpy(), "label": groups["gene_group"].to_numpy()}).dropna()
    pairs = pairs.drop_duplicates().astype({"entrez_id": "int64"})
    counts = {"hgnc_groups": mapping_counts(groups["symbol"].nunique(), pairs["entrez_id"].nunique())}
    single = pairs[~pairs["entrez_id"].duplicated(keep=False)]
    sizes = single["label"].value_counts()
    multiclass = single[single["label"].isin(sizes[sizes >= MULTICLASS_MIN_GENES].index)]
    counts["hgnc_group"] = mapping_counts(counts["hgnc_groups"]["n_source"], len(multiclass))
    return pd.concat(
        [multiclass.assign(task="hgnc_group"), pairs.assign(task="hgnc_groups")], ignore_index=True
    ), counts


def read_gmt(path) -> pd.DataFrame:
    """Long (label, term_name, entrez_id) table from a gzipped GMT file (term id, name, Entrez ids); the name as the
    file writes it (term_names cleans it)."""
    rows = []
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                fields = line.rstrip("\n").split("\t")
                if len(fields) < 3:
                    raise TaskLabelError(f"{path}, line {number}: a GMT line needs a term id, a name and genes.")
                rows.extend((fields[0], fields[1], gene) for gene in fields[2:] if gene)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise TaskLabelError(
            f"{path} is not a readable gzipped GMT file ({exc}); restore it from the data directory's source."
        ) from exc
    table = pd.DataFrame(rows, columns=["label", "term_name", "entrez_id"])
    table["entrez_id"] = pd.to_numeric(table["entrez_id"], errors="coerce")
    return table


GENE_SET_FILES = {
    "kegg_pathways": "kegg_gene_sets",
    "go_bp_experimental": "go_bp_gene_sets",
    "omim_disease": "omim_gene_sets",
}
"""The GMT file (data directory name) of each gene-set task."""
GMT_NAME_SUFFIX = re.compile(r"(\s+\(\d+\)|\s+-\s+Homo sapiens \(human\))$")


def term_names(table: pd.DataFrame) -> pd.Series:
    """Term id → term name of a read_gmt table, without what the files append to names: GO's gene count (' (396)'),
    KEGG's species (' - Homo sapiens (human)')."""
    names = table.drop_duplicates("label").set_index("label")["term_name"]
    return names.str.replace(GMT_NAME_SUFFIX, "", regex=True).str.strip()


def gene_set_labels(path, task: str, resolver: GeneResolver) -> tuple[pd.DataFrame, dict]:
    """task, entrez_id, label (term id) for one GMT file, restricted to genes in the catalog."""
    table = read_gmt(path)
    known = table["entrez_id"].isin(set(resolver.catalog["entrez_id"]))
    require_mapped(task, path, table["entrez_id"].where(known), {"Entrez ids": table["entrez_id"]})
    mapped = table.loc[known, ["label", "entrez_id"]].drop_duplicates().astype({"entrez_id": "int64"})
    counts = {
        task: mapping_counts(
            table["entrez_id"].nunique(), mapped["entrez_id"].nunique(), n_terms=table["label"].nunique()
        )
    }
    return mapped.assign(task=task), counts


def chromosome_labels(catalog: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Chromosome of protein-coding genes placed on exactly one of 1-22, X, Y."""
    coding = catalog[catalog["gene_type"] == "protein-coding"]
    placed = coding[coding["chromosome"].isin(CHROMOSOMES)]
    labels = pd.DataFrame({"entrez_id": placed["entrez_id"].astype("int64"), "label": placed["chromosome"]})
    return labels.assign(task="chromosome"), {"chromosome": mapping_counts(len(coding), len(labels))}

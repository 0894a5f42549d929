"""gene_catalog: Entrez genes from org.Hs.eg.db, with NCBI gene_info cross-references added."""

import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity, AssetExecutionContext, MetadataValue, asset, asset_check

from ..roles import SHARED_INPUT, role_tags
from ..sources.bioconductor import PACKAGES, AnnotationDatabases
from ..sources.data_directory import DataDirectory, read_data_csv

ORG_HS_QUERY = """
SELECT CAST(g.gene_id AS INTEGER) AS entrez_id, gi.symbol, gi.gene_name AS full_name, gt.gene_type,
  (SELECT group_concat(chromosome, '|') FROM chromosomes c WHERE c._id = g._id) AS chromosome,
  (SELECT group_concat(cytogenetic_location, '|') FROM cytogenetic_locations l WHERE l._id = g._id) AS map_location,
  (SELECT group_concat(alias_symbol, '|') FROM alias a WHERE a._id = g._id) AS aliases,
  (SELECT group_concat(ensembl_id, '|') FROM ensembl e WHERE e._id = g._id) AS ensembl_ids
FROM genes g JOIN gene_info gi ON gi._id = g._id LEFT JOIN genetype gt ON gt._id = g._id
"""

CATALOG_COLUMNS = [
    "entrez_id",
    "symbol",
    "full_name",
    "gene_type",
    "chromosome",
    "map_location",
    "aliases",
    "ensembl_ids",
    "hgnc_id",
    "catalog_source",
]


def read_org_hs_genes(annotation_databases: AnnotationDatabases) -> pd.DataFrame:
    with annotation_databases.connect("org.Hs.eg.db") as con:
        return pd.read_sql_query(ORG_HS_QUERY, con)


def read_ncbi_gene_info(path) -> pd.DataFrame:
    """NCBI gene_info → entrez_id, symbol, full_name, gene_type, chromosome, map_location, aliases, ensembl_ids, hgnc_id."""
    info = read_data_csv(path, sep="\t", dtype=str, na_values=["-"], keep_default_na=False)
    if "GeneID" not in info.columns or "Symbol" not in info.columns:
        raise ValueError(f"{path} is not an NCBI gene_info table (columns GeneID and Symbol are missing).")
    xrefs = info["dbXrefs"].fillna("").str.split("|")
    return pd.DataFrame(
        {
            "entrez_id": info["GeneID"].astype(int),
            "symbol": info["Symbol"],
            "full_name": info["Full_name_from_nomenclature_authority"].fillna(info["description"]),
            "gene_type": info["type_of_gene"],
            "chromosome": info["chromosome"],
            "map_location": info["map_location"],
            "aliases": info["Synonyms"],
            "ensembl_ids": xrefs.map(
                lambda xs: "|".join(x.removeprefix("Ensembl:") for x in xs if x.startswith("Ensembl:")) or None
            ),
            "hgnc_id": xrefs.map(lambda xs: next((x.removeprefix("HGNC:") for x in xs if x.startswith("HGNC:")), None)),
        }
    )


def build_catalog(org_hs: pd.DataFrame, gene_info: pd.DataFrame) -> pd.DataFrame:
    """org.Hs.eg.db rows, their aliases and Ensembl ids extended by gene_info, plus genes only gene_info has."""
    info = gene_info.set_index("entrez_id")
    catalog = org_hs.copy()
    matched = info.reindex(catalog["entrez_id"])
    for column in ("aliases", "ensembl_ids"):
        catalog[column] = [_union(a, b) for a, b in zip(catalog[column], matched[column])]
    catalog["hgnc_id"] = matched["hgnc_id"].to_numpy()
    catalog["catalog_source"] = "org.Hs.eg.db"
    extra = gene_info[~gene_info["entrez_id"].isin(catalog["entrez_id"])].assign(catalog_source="ncbi_gene_info")
    catalog = pd.concat([catalog, extra], ignore_index=True)[CATALOG_COLUMNS]
    return catalog.sort_values("entrez_id", ignore_index=True)


def _union(a, b) -> str | None:
    items = []
    for value in (a, b):
        if isinstance(value, str) and value:
            items += [x for x in value.split("|") if x and x not in items]
    return "|".join(items) or None


@asset(group_name="sources", kinds={"sqlite"}, tags=role_tags(SHARED_INPUT))
def gene_catalog(
    context: AssetExecutionContext, annotation_databases: AnnotationDatabases, data_directory: DataDirectory
) -> pd.DataFrame:
    """One row per human gene: Entrez id, symbol, full name, type, location, aliases, Ensembl ids."""
    org_hs = read_org_hs_genes(annotation_databases)
    gene_info = read_ncbi_gene_info(data_directory.file("ncbi_gene_info"))
    catalog = build_catalog(org_hs, gene_info)
    pkg = PACKAGES["org.Hs.eg.db"]
    context.add_output_metadata(
        {
            "n_genes": len(catalog),
            "n_from_org_hs_eg_db": int((catalog["catalog_source"] == "org.Hs.eg.db").sum()),
            "n_with_ensembl": int(catalog["ensembl_ids"].notna().sum()),
            "org_hs_eg_db": f"{pkg.name} {pkg.version} (sqlite sha256 {pkg.sqlite_sha256[:12]})",
            "gene_types": MetadataValue.json(catalog["gene_type"].value_counts().to_dict()),
        }
    )
    return catalog


@asset_check(asset=gene_catalog, blocking=True, description="Entrez ids are unique and every gene has a symbol.")
def gene_catalog_ids_unique(gene_catalog: pd.DataFrame) -> AssetCheckResult:
    duplicated = int(gene_catalog["entrez_id"].duplicated().sum())
    no_symbol = int(gene_catalog["symbol"].isna().sum())
    return AssetCheckResult(
        passed=duplicated == 0 and no_symbol == 0,
        metadata={"duplicated_entrez_ids": duplicated, "genes_without_symbol": no_symbol},
    )


@asset_check(asset=gene_catalog, description="Symbols name one gene each (duplicates are resolved by Entrez id only).")
def gene_catalog_symbols_unique(gene_catalog: pd.DataFrame) -> AssetCheckResult:
    duplicated = gene_catalog["symbol"].str.upper().duplicated(keep=False)
    return AssetCheckResult(
        passed=not duplicated.any(),
        severity=AssetCheckSeverity.WARN,
        metadata={
            "genes_sharing_a_symbol": int(duplicated.sum()),
            "examples": ", ".join(sorted(gene_catalog.loc[duplicated, "symbol"].unique()[:10])),
        },
    )

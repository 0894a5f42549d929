"""gene_summaries (RefSeq summaries) and gene_texts (every text view of every gene in the universe)."""

import hashlib
from pathlib import Path
from typing import Literal

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    Config,
    DataVersion,
    MetadataValue,
    Output,
    asset,
    asset_check,
)
from pydantic import Field

from ..roles import SHARED_INPUT, role_tags
from ..sources.bioconductor import AnnotationDatabases
from ..sources.data_directory import DataDirectory, DataFileError, read_data_parquet
from ..sources.ncbi_eutils import NcbiEutils
from .views import GO_ASPECTS, VIEWS, build_view

DEFAULT_GENE_TYPES = ["protein-coding", "ncRNA", "pseudo", "snoRNA", "snRNA", "rRNA", "tRNA", "scRNA", "other"]


def read_refseq_summaries(path) -> pd.DataFrame:
    """entrez_id, summary, review_status, summary_source: the data directory's table, one row per gene with a summary.
    A gene listed twice with the same summary is kept once; a gene with two different summaries is an error."""
    table = read_data_parquet(path, columns=["entrez_id", "refseq_summary", "refseq_review_status"])
    summaries = table.rename(columns={"refseq_summary": "summary", "refseq_review_status": "review_status"})
    summaries = summaries.assign(summary=summaries["summary"].str.strip())
    summaries = summaries[summaries["summary"].fillna("") != ""].drop_duplicates(["entrez_id", "summary"])
    conflicting = summaries.loc[summaries["entrez_id"].duplicated(), "entrez_id"].unique()
    if len(conflicting):
        raise DataFileError(
            f"{path}: {len(conflicting)} genes have more than one summary (Entrez ids "
            f"{', '.join(map(str, conflicting[:5]))}). Keep one row per gene, the summary of the best RefSeq review "
            "status (as PROVENANCE.md describes)."
        )
    return summaries.assign(summary_source=f"refseq:{Path(path).name}")


class GeneSummariesConfig(Config):
    source: Literal["data_directory", "ncbi_eutils"] = Field(
        default="data_directory",
        description=(
            "data_directory: the RefSeq summaries file of the data directory; ncbi_eutils: fetched live from NCBI "
            "esummary (network)."
        ),
    )


@asset(group_name="sources", kinds={"pandas"}, tags=role_tags(SHARED_INPUT))
def gene_summaries(
    context: AssetExecutionContext,
    config: GeneSummariesConfig,
    gene_catalog: pd.DataFrame,
    data_directory: DataDirectory,
    ncbi_eutils: NcbiEutils,
) -> pd.DataFrame:
    """RefSeq summary per gene: from the data directory's table, or fetched live from NCBI E-utilities."""
    if config.source == "ncbi_eutils":
        ids = gene_catalog.loc[gene_catalog["gene_type"].isin(DEFAULT_GENE_TYPES), "entrez_id"]
        fetched = ncbi_eutils.gene_summaries(
            ids, progress=lambda done, total: context.log.info(f"esummary {done}/{total}")
        )
        summaries = fetched.dropna(subset=["summary"])[["entrez_id", "summary"]].assign(
            review_status=None, summary_source="ncbi_eutils_esummary"
        )
    else:
        summaries = read_refseq_summaries(data_directory.file("refseq_summaries"))
    summaries = summaries.assign(
        entrez_id=summaries["entrez_id"].astype("int64"), summary=summaries["summary"].str.strip()
    )
    summaries = summaries[summaries["summary"] != ""].drop_duplicates("entrez_id").reset_index(drop=True)
    in_catalog = summaries["entrez_id"].isin(gene_catalog["entrez_id"])
    context.add_output_metadata(
        {"n_summaries": len(summaries), "n_not_in_catalog": int((~in_catalog).sum()), "source": config.source}
    )
    return summaries


class GeneTextsConfig(Config):
    views: list[str] = Field(
        default=list(VIEWS),
        description="Text views built for every gene (each becomes a view partition of gene_embeddings).",
    )
    gene_types: list[str] = Field(
        default=DEFAULT_GENE_TYPES,
        description="NCBI gene types in the universe; genes with a RefSeq summary are kept whatever their type.",
    )
    symbols: list[str] | None = Field(
        default=None,
        description="Restrict the universe to these symbols (for quick runs); None keeps every gene of `gene_types`.",
    )


def read_go_annotations(annotation_databases: AnnotationDatabases) -> dict[str, pd.DataFrame]:
    """Per GO aspect (GO_ASPECTS column), the distinct (entrez_id, go_id) direct annotations of org.Hs.eg.db, all
    evidence codes."""
    with annotation_databases.connect("org.Hs.eg.db") as org:
        return {
            column: pd.read_sql_query(
                f"SELECT DISTINCT CAST(g.gene_id AS INTEGER) AS entrez_id, t.go_id FROM {column} t JOIN genes g ON g._id = t._id",
                org,
            )
            for column, _ in GO_ASPECTS
        }


def read_go_terms(annotation_databases: AnnotationDatabases) -> pd.DataFrame:
    """Per gene, '; '-joined GO term names for each aspect (direct annotations, all evidence codes)."""
    with annotation_databases.connect("GO.db") as go:
        names = dict(go.execute("SELECT go_id, term FROM go_term").fetchall())
    frames = []
    for column, pairs in read_go_annotations(annotation_databases).items():
        pairs["term"] = pairs["go_id"].map(names)
        joined = pairs.dropna(subset=["term"]).sort_values("term").groupby("entrez_id")["term"].agg("; ".join)
        frames.append(joined.rename(column))
    return pd.concat(frames, axis=1).rename_axis("entrez_id").reset_index()


def go_annotation_counts(annotation_databases: AnnotationDatabases) -> pd.Series:
    """Number of distinct GO terms (all three aspects) each gene is directly annotated with, by entrez_id."""
    pairs = pd.concat(read_go_annotations(annotation_databases).values(), ignore_index=True)
    return pairs.drop_duplicates().groupby("entrez_id").size()


@asset(group_name="texts", kinds={"pandas"}, tags=role_tags(SHARED_INPUT))
def gene_texts(
    context: AssetExecutionContext,
    config: GeneTextsConfig,
    gene_catalog: pd.DataFrame,
    gene_summaries: pd.DataFrame,
    annotation_databases: AnnotationDatabases,
) -> Output[pd.DataFrame]:
    """One row per (gene, view): the text a backbone embeds, its source and its sha256."""
    unknown = sorted(set(config.views) - set(VIEWS))
    if unknown:
        raise ValueError(f"Unknown text view(s) {unknown}; known views: {sorted(VIEWS)}.")
    genes = gene_catalog[
        gene_catalog["gene_type"].isin(config.gene_types) | gene_catalog["entrez_id"].isin(gene_summaries["entrez_id"])
    ]
    if config.symbols is not None:
        genes = genes[genes["symbol"].str.upper().isin({s.upper() for s in config.symbols})]
    genes = genes.merge(gene_summaries[["entrez_id", "summary"]], on="entrez_id", how="left")
    if "go" in config.views:
        genes = genes.merge(read_go_terms(annotation_databases), on="entrez_id", how="left")
    texts = pd.concat([build_view(genes, view) for view in config.views], ignore_index=True)
    texts["text_sha256"] = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts["text"]]
    per_view = texts.groupby("view").agg(
        genes=("entrez_id", "size"), mean_chars=("text", lambda t: round(t.str.len().mean(), 1))
    )
    sources = texts.groupby(["view", "source"]).size().rename("genes").reset_index()
    return Output(
        texts,
        # A digest of the content: automation re-embeds existing partitions only when the texts really changed.
        data_version=DataVersion(texts_digest(texts)),
        metadata={
            "n_genes": int(texts["entrez_id"].nunique()),
            "per_view": MetadataValue.md(per_view.to_markdown()),
            "sources": MetadataValue.md(sources.to_markdown(index=False)),
            "view_contents": MetadataValue.json({name: list(VIEWS[name].contains) for name in config.views}),
        },
    )


def texts_digest(texts: pd.DataFrame) -> str:
    """sha256 over (view, Entrez id, text sha256) in a fixed order."""
    rows = texts.sort_values(["view", "entrez_id"])[["view", "entrez_id", "text_sha256"]].astype(str)
    return hashlib.sha256("\n".join("\t".join(r) for r in rows.itertuples(index=False)).encode()).hexdigest()


@asset_check(asset=gene_texts, blocking=True, description="No empty text; one text per gene and view.")
def gene_texts_well_formed(gene_texts: pd.DataFrame) -> AssetCheckResult:
    empty = int((gene_texts["text"].str.strip() == "").sum())
    duplicated = int(gene_texts.duplicated(["entrez_id", "view"]).sum())
    return AssetCheckResult(
        passed=empty == 0 and duplicated == 0 and len(gene_texts) > 0,
        metadata={"empty_texts": empty, "duplicated_gene_views": duplicated, "rows": len(gene_texts)},
    )

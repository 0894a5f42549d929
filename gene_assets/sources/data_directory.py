"""The configurable directory of real input files (never copied into the repository)."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from dagster import ConfigurableResource
from pydantic import Field

from ..errors import GeneAssetsError
from ..settings import DATA_DIR_ENV

# Every file the assets read, with what it must contain (shown when it is missing).
DATA_FILES = {
    "refseq_summaries": (
        "gene_text/human_genes_ncbi_refseq_summaries.parquet",
        "one row per human NCBI GeneID with columns entrez_id, symbol, full_name, refseq_summary",
    ),
    "ncbi_gene_info": (
        "gene_annotation/ncbi_Homo_sapiens.gene_info.2022-11.gz",
        "the NCBI Homo_sapiens.gene_info table (TSV.gz, 16 columns)",
    ),
    "geneformer_tasks": (
        "gene_tasks/geneformer/geneformer_gene_tasks_long.csv",
        "Geneformer gene classification labels with columns task, label, ensembl_id, gene_name",
    ),
    "chen2020_tf_range": (
        "gene_tasks/geneformer/chen2020_natcommun_41467_2020_16106_MOESM4_ESM.csv",
        "Chen et al. 2020 TF table: first column the TF symbol, column assignment (long-range TF / short-range TF)",
    ),
    "gene_type_table": (
        "gene_tasks/genept_geneformer_gene_info_table.csv.gz",
        "Geneformer's gene_info_table (CSV.gz) with columns ensembl_id, gene_name, gene_type",
    ),
    "human_tfs": (
        "gene_tasks/other/lambert2018_humantfs_DatabaseExtract_v_1.01.txt",
        "the Human TFs v1.01 DatabaseExtract TSV with columns Ensembl ID, HGNC symbol, Is TF?, EntrezGene ID",
    ),
    "hgnc_gene_groups": (
        "gene_annotation/hgnc_gene_groups_long.2019-01.csv.gz",
        "HGNC (gene, gene group) pairs (CSV.gz) with columns symbol, entrez_id, gene_group",
    ),
    "kegg_gene_sets": (
        "gene_tasks/other/ylab_gmt/KEGG_CPDB.gmt.gz",
        "KEGG pathways as a gzipped GMT file of Entrez ids",
    ),
    "go_bp_gene_sets": (
        "gene_tasks/other/ylab_gmt/hsa_EXP_ALL_BP_propagated.gmt.gz",
        "GO biological process sets (experimental evidence, propagated) as a gzipped GMT file of Entrez ids",
    ),
    "omim_gene_sets": (
        "gene_tasks/other/ylab_gmt/omim.20231030.prop.gmt.gz",
        "OMIM disease gene sets as a gzipped GMT file",
    ),
    "replogle_signatures": (
        "perturbation/replogle2022_k562_rpe1_deseq2_up_signatures.parquet",
        "Replogle 2022 CRISPRi up-regulated signatures (parquet) with columns cell_line, perturbation, rank, gene, in_up_set",
    ),
    **{
        f"single_cell_{name}": (
            f"single_cell/{file}.h5ad",
            f"{description}: an AnnData h5ad with cells × genes X (gene "
            "symbols as var names) and the cell type in obs['cell_type']",
        )
        for name, file, description in (
            ("pbmc3k", "pbmc3k_seurat_lognorm", "10x PBMC3k, Seurat LogNormalize values"),
            ("xin", "xin", "Xin et al. 2016 human islets, log-scaled values"),
            ("wang", "wang", "Wang et al. 2016 human pancreas, log-scaled values"),
            ("headneck", "headneck", "Puram et al. 2017 head-and-neck tumour microenvironment, log-scaled values"),
        )
    },
    **{
        f"ggi_{split}_{part}": (f"ggi/gene2vec_predictionData/{split}_{part}.txt", description)
        for split in ("train", "test")
        for part, description in (
            ("text", "Gene2vec gene pairs, two space-separated symbols per line"),
            ("label", "Gene2vec pair labels, 0 or 1 per line, aligned with the pairs file"),
        )
    },
}


class DataDirectoryError(GeneAssetsError, FileNotFoundError):
    """A data directory or one of its files is missing."""


class DataFileError(GeneAssetsError, ValueError):
    """A data file is present but unusable: truncated or corrupt, not UTF-8 text, or contradicting itself."""


RESTORE = "restore it from its source (the data directory's PROVENANCE.md names the origin of every file)"


def utf8_error_position(path) -> str:
    """'line N, byte M' of the first byte of a text file (gzipped or not) that is not UTF-8; M counts uncompressed bytes."""
    offset = 0
    with (gzip.open if str(path).endswith(".gz") else open)(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                return f"line {number}, byte {offset + exc.start}"
            offset += len(line)
    return "no line (the file decodes as UTF-8)"


def read_data_csv(path, **kwargs) -> pd.DataFrame:
    """pd.read_csv of a data file; a truncated or corrupt gzip file or a non-UTF-8 byte is a DataFileError."""
    try:
        return pd.read_csv(path, **kwargs)
    except UnicodeDecodeError as exc:
        raise DataFileError(
            f"{path}, {utf8_error_position(path)}: not UTF-8 text ({exc.reason}). Convert the file to UTF-8 "
            f"(e.g. `iconv -f latin1 -t utf-8`) or {RESTORE}."
        ) from exc
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataFileError(f"{path} is truncated or corrupt ({exc}): {RESTORE}.") from exc
    except pd.errors.ParserError as exc:
        raise DataFileError(f"{path} cannot be parsed ({' '.join(str(exc).split())}): {RESTORE}.") from exc


def read_data_parquet(path, columns: list[str] | None = None) -> pd.DataFrame:
    """A parquet data file, validated (a truncated file or a string that is not UTF-8 is a DataFileError)."""
    try:
        missing = sorted(set(columns or []) - set(pq.read_schema(path).names))
        if missing:
            raise DataFileError(
                f"{path} has no column {', '.join(missing)} (its columns: "
                f"{', '.join(pq.read_schema(path).names[:12])}): it is not the expected file, or a column was "
                f"renamed; {RESTORE}."
            )
        table = pq.read_table(path, columns=columns)
        table.validate(full=True)
    except pa.ArrowException as exc:
        raise DataFileError(f"{path} cannot be read as parquet ({exc}): {RESTORE}.") from exc
    return table.to_pandas()


class DataDirectory(ConfigurableResource):
    """Root of the input data (see PROVENANCE.md inside it). Set by GENE_ASSETS_DATA_DIR."""

    path: str = Field(
        description="Root of the input data (see PROVENANCE.md inside it); default $GENE_ASSETS_DATA_DIR."
    )

    def root(self) -> Path:
        root = Path(self.path).expanduser()
        if not root.is_dir():
            raise DataDirectoryError(
                f"Data directory {root} does not exist. Point {DATA_DIR_ENV} (or the data_directory resource's "
                "`path`) at the gene_assets data directory: it holds gene_text/, gene_annotation/, gene_tasks/ "
                "and a PROVENANCE.md describing each file."
            )
        return root

    def check(self, names) -> None:
        """Every named file is present: one error listing all the missing ones, before a run starts."""
        missing = [
            (self.root() / DATA_FILES[n][0], DATA_FILES[n][1])
            for n in names
            if not (self.root() / DATA_FILES[n][0]).is_file()
        ]
        if missing:
            listing = "; ".join(f"{path} ({contents})" for path, contents in missing)
            raise DataDirectoryError(
                f"{len(missing)} input files are missing: {listing}. Restore them in the data directory {self.root()} "
                f"(see its PROVENANCE.md) or point {DATA_DIR_ENV} at a complete copy."
            )

    def file(self, name: str) -> Path:
        """Path of a known input file; a clear error names the path and what it should contain."""
        relative, contents = DATA_FILES[name]
        path = self.root() / relative
        if not path.is_file():
            raise DataDirectoryError(
                f"Missing input file {path}: it should contain {contents}. Restore it in the data directory "
                f"{self.root()} (see its PROVENANCE.md) or point {DATA_DIR_ENV} at a complete copy."
            )
        return path

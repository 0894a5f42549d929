"""The configurable directory of real input files (never copied into the repository)."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource

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
}


class DataDirectoryError(FileNotFoundError):
    """A data directory or one of its files is missing."""


class DataDirectory(ConfigurableResource):
    """Root of the input data (see PROVENANCE.md inside it). Set by GENE_ASSETS_DATA_DIR."""

    path: str

    def root(self) -> Path:
        root = Path(self.path).expanduser()
        if not root.is_dir():
            raise DataDirectoryError(
                f"Data directory {root} does not exist. Point {DATA_DIR_ENV} (or the data_directory resource's "
                "`path`) at the gene_assets data directory: it holds gene_text/, gene_annotation/, gene_tasks/ "
                "and a PROVENANCE.md describing each file."
            )
        return root

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

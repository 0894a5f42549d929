"""Single-cell datasets with cell-type labels: the registry, row-chunked reading, gene harmonization, cell selection.

Every dataset is an AnnData whose expression matrix is read in row chunks (backed h5ad, sparse CSR), so a dataset
is never densified or loaded whole; only obs (labels) and var (gene names) are read into memory."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy import sparse

from ..catalog.resolver import GeneResolver
from ..errors import GeneAssetsError
from ..storage import sha256_file

InputScale = Literal["counts", "log_normalized", "unlogged"]

TARGET_SUM = 10_000
"""GenePT-w normalizes counts to this many per cell before log1p."""
LOG_SCALE_MAX = 30.0
"""Non-integer values that never exceed this are taken as already log-normalized (log1p of 1e4-scaled counts
stays below ~12; raw counts and TPM/RPKM values exceed it)."""
SCALE_CHUNK_CELLS = 10_000
"""Cells read at a time while the input scale is checked over the whole matrix."""


class CellDatasetError(GeneAssetsError, ValueError):
    """A single-cell dataset is unusable: missing file or label column, CSC storage, negative values, too few genes."""


@dataclass(frozen=True)
class CellDatasetSpec:
    """Where a dataset's h5ad is and which obs column holds its labels."""

    name: str
    label_key: str
    data_file: str | None = None
    """Key of the file in the data directory (sources/data_directory.py DATA_FILES)."""
    scanpy_dataset: str | None = None
    """A dataset shipped inside scanpy (`scanpy.datasets.<name>()`)."""
    use_raw: bool = False
    """Read `.raw` (e.g. the log-normalized matrix kept beside scaled values in X)."""
    description: str = ""


CELL_DATASETS: dict[str, CellDatasetSpec] = {
    spec.name: spec
    for spec in (
        CellDatasetSpec(
            "pbmc68k_reduced",
            "bulk_labels",
            scanpy_dataset="pbmc68k_reduced",
            use_raw=True,
            description="700 PBMCs, 10 bulk-sorted types, 765 genes (scanpy; log-normalized .raw)",
        ),
        CellDatasetSpec(
            "pbmc3k",
            "cell_type",
            data_file="single_cell_pbmc3k",
            description="2,638 PBMCs, 9 types, 13,714 genes (10x; Seurat LogNormalize)",
        ),
        CellDatasetSpec(
            "xin",
            "cell_type",
            data_file="single_cell_xin",
            description="674 islet cells, 4 types, 980 genes (Xin 2016)",
        ),
        CellDatasetSpec(
            "wang",
            "cell_type",
            data_file="single_cell_wang",
            description="501 pancreas cells, 7 types, 219 genes (Wang 2016)",
        ),
        CellDatasetSpec(
            "headneck",
            "cell_type",
            data_file="single_cell_headneck",
            description="180 tumour-microenvironment cells, 9 types, 7,943 genes (Puram 2017)",
        ),
    )
}


def open_anndata(source: dict):
    """The AnnData a dataset record points at: backed (read-only) for files, in memory for scanpy's datasets."""
    import anndata as ad

    if source.get("scanpy_dataset"):
        import scanpy as sc

        return getattr(sc.datasets, source["scanpy_dataset"])()
    path = Path(source["path"])
    if not path.is_file():
        raise CellDatasetError(
            f"Cell dataset {source['name']!r}: {path} does not exist. Give the path of an h5ad file."
        )
    try:
        return ad.read_h5ad(path, backed="r")
    except OSError as exc:
        raise CellDatasetError(
            f"Cell dataset {source['name']!r}: {path} is not a readable h5ad file ({exc}); it is truncated or corrupt. "
            "Write it again with `adata.write_h5ad(path)` (or restore it from its source)."
        ) from exc


class CellMatrix:
    """Row chunks of a dataset's expression matrix (X or .raw.X) as CSR blocks; never the whole matrix."""

    def __init__(self, adata, use_raw: bool, name: str, layer: str | None = None, gene_column: str | None = None):
        """X, `.raw.X` (use_raw) or `.layers[layer]`; gene names from var_names, or from the var column
        `gene_column`."""
        if use_raw and adata.raw is None:
            raise CellDatasetError(f"Cell dataset {name!r} has no .raw matrix; set use_raw to false to read X.")
        var = adata.raw.var if use_raw else adata.var
        if layer is not None and layer not in adata.layers:
            raise CellDatasetError(
                f"Cell dataset {name!r} has no layer {layer!r} (layers: {', '.join(adata.layers) or 'none'}); "
                "give one of those, or layer=None for X."
            )
        if gene_column is not None and gene_column not in var.columns:
            raise CellDatasetError(
                f"Cell dataset {name!r} has no var column {gene_column!r} (columns: "
                f"{', '.join(map(str, var.columns)) or 'none'}); give the column that holds gene identifiers, or "
                "None for var_names."
            )
        self.name = name
        self.matrix = adata.layers[layer] if layer is not None else adata.raw.X if use_raw else adata.X
        names = var[gene_column] if gene_column is not None else (adata.raw.var_names if use_raw else adata.var_names)
        self.var_names = pd.Index(names).astype(str)
        self.n_obs = adata.n_obs
        positions = pd.Index(np.arange(len(self.var_names)).astype(str))
        if (self.var_names.str.strip() == "").all() or self.var_names.equals(positions):
            examples = ", ".join(map(repr, self.var_names[:3]))
            raise CellDatasetError(
                f"Cell dataset {name!r} has no gene names (var names {examples}, …). Set them to human gene symbols or "
                "Ensembl gene ids (e.g. `adata.var_names = adata.var[column]`; var columns: "
                f"{', '.join(map(str, var.columns)) or 'none'}) and write the h5ad again."
            )
        if getattr(self.matrix, "format", None) == "csc":
            raise CellDatasetError(
                f"Cell dataset {name!r}: the matrix is stored column-compressed (CSC) on disk; reading cells in row "
                "chunks needs CSR. Rewrite it once with `adata.X = adata.X.tocsr(); adata.write_h5ad(path)`."
            )

    def block(self, start: int, stop: int) -> sparse.csr_matrix:
        rows = self.matrix[start:stop]
        return (
            sparse.csr_matrix(rows, dtype=np.float32)
            if not sparse.issparse(rows)
            else rows.tocsr().astype(np.float32, copy=False)
        )

    def chunks(self, rows: np.ndarray, chunk_cells: int) -> Iterator[tuple[slice, sparse.csr_matrix]]:
        """(positions in `rows`, CSR block of those cells) for the sorted cell indices `rows`, one window of
        `chunk_cells` consecutive cells of the file at a time."""
        rows = np.asarray(rows)
        done = 0
        for start in range(0, self.n_obs, chunk_cells):
            stop = min(start + chunk_cells, self.n_obs)
            end = done + int(np.searchsorted(rows[done:], stop))
            if end > done:
                block = self.block(start, stop)
                yield slice(done, end), block[rows[done:end] - start]
            done = end


def detect_input_scale(
    source: sparse.csr_matrix | CellMatrix, name: str, chunk_cells: int = SCALE_CHUNK_CELLS
) -> InputScale:
    """counts (integers), log_normalized (non-integer, at most LOG_SCALE_MAX) or unlogged (larger non-integers), from
    every value of every cell: a CellMatrix is read in chunks of `chunk_cells` cells, never whole. Negative, NaN or
    infinite values anywhere are refused with their count and the first cell that holds one."""
    blocks = (
        [(0, source)]
        if sparse.issparse(source)
        else (
            (start, source.block(start, min(start + chunk_cells, source.n_obs)))
            for start in range(0, source.n_obs, chunk_cells)
        )
    )
    n_values, integers, largest = 0, True, 0.0
    bad = {"negative": [0, None], "NaN or infinite": [0, None]}
    n_cells = 0
    for start, block in blocks:
        block = sparse.csr_matrix(block)
        values, n_cells = block.data, n_cells + block.shape[0]
        for kind, mask in (("negative", values < 0), ("NaN or infinite", ~np.isfinite(values))):
            if mask.any():
                first = int(np.searchsorted(block.indptr, np.flatnonzero(mask)[0], side="right")) - 1
                bad[kind][0] += int(mask.sum())
                bad[kind][1] = bad[kind][1] if bad[kind][1] is not None else start + first
        finite = values[np.isfinite(values)]
        if finite.size:
            n_values += finite.size
            integers = integers and bool(np.all(finite == np.round(finite)))
            largest = max(largest, float(finite.max()))
    count, cell = bad["NaN or infinite"]
    if count:
        raise CellDatasetError(
            f"Cell dataset {name!r} has {count:,} NaN or infinite values (the first in cell {cell:,}): "
            "give finite counts or log-normalized values."
        )
    count, cell = bad["negative"]
    if count:
        raise CellDatasetError(
            f"Cell dataset {name!r} has negative values: the matrix looks scaled (z-scores). Give counts or "
            f"log-normalized values (for example .raw, with use_raw). {count:,} values are negative, the first in "
            f"cell {cell:,}."
        )
    if n_values == 0:
        raise CellDatasetError(f"Cell dataset {name!r}: its {n_cells:,} cells have no non-zero value.")
    if integers:
        return "counts"
    return "log_normalized" if largest <= LOG_SCALE_MAX else "unlogged"


def log_normalize(block: sparse.csr_matrix, scale: InputScale) -> sparse.csr_matrix:
    """log1p of counts scaled to TARGET_SUM per cell (totals over every gene); log-normalized input is kept.
    The result shares the block's indices (only a new data array is allocated)."""
    if scale == "log_normalized":
        return block
    totals = np.asarray(block.sum(axis=1), dtype=np.float32).ravel()
    factors = np.divide(TARGET_SUM, totals, out=np.zeros_like(totals), where=totals > 0)
    data = block.data * np.repeat(factors, np.diff(block.indptr))
    np.log1p(data, out=data)
    return sparse.csr_matrix((data, block.indices, block.indptr), shape=block.shape, copy=False)


MIN_MATCHED_GENES = 100
"""A dataset is refused when fewer of its genes match a gene with an embedding …"""
MIN_MATCH_FRACTION = 0.3
"""… or when a smaller fraction of its genes does."""


def match_genes(var_names: pd.Index, resolver: GeneResolver, embeddable: set[int]) -> pd.DataFrame:
    """One row per var column: var_index, name, entrez_id, catalog symbol and how it matched (the resolver's
    identifiers: entrez, ensembl, symbol, alias; unmapped; no_text when the gene has no text to embed)."""
    names = pd.Series(var_names, dtype=str)
    resolution = resolver.identifiers(names.tolist())
    entrez = pd.Series(resolution.entrez_ids.to_numpy(), index=names.index, dtype="Int64")
    method = pd.Series(resolution.methods.to_numpy(), index=names.index, dtype="string")
    outside = entrez.notna() & ~entrez.isin(list(embeddable))
    method[outside] = "no_text"
    entrez[outside] = pd.NA
    symbols = resolver.catalog.drop_duplicates("entrez_id").set_index("entrez_id")["symbol"]
    return pd.DataFrame(
        {
            "var_index": np.arange(len(names)),
            "name": names,
            "entrez_id": entrez,
            "symbol": entrez.map(symbols).fillna(names).astype(str),
            "match": method,
        }
    )


def require_gene_match(
    genes: pd.DataFrame,
    name: str,
    min_matched_genes: int = MIN_MATCHED_GENES,
    min_match_fraction: float = MIN_MATCH_FRACTION,
    matched_what: str = "a catalog gene with a text",
) -> tuple[int, float]:
    """(matched genes, fraction) of match_genes' table; refused with the counts, examples and what the identifiers
    look like when either is below its minimum."""
    n_matched = int(genes["entrez_id"].notna().sum())
    fraction = n_matched / max(len(genes), 1)
    if n_matched >= min_matched_genes and fraction >= min_match_fraction:
        return n_matched, fraction
    unmatched = genes.loc[genes["entrez_id"].isna(), "name"]
    examples = ", ".join(unmatched.head(8))
    kind = identifier_shape(unmatched.tolist())
    if n_matched == 0:
        raise CellDatasetError(
            f"Cell dataset {name!r}: none of its {len(genes):,} genes matches {matched_what} (tried as human gene "
            f"symbols, aliases, Entrez and Ensembl ids; they look like {kind}, e.g. {examples}). Give human gene "
            "symbols or Ensembl gene ids, as var names or in a var column."
        )
    raise CellDatasetError(
        f"Cell dataset {name!r}: only {n_matched:,} of {len(genes):,} genes ({fraction:.1%}) match {matched_what} "
        f"(need {min_matched_genes} and {min_match_fraction:.0%}); the unmatched look like {kind}, e.g. "
        f"{examples}. var names (or the var column given) must be human gene symbols or Ensembl gene ids."
    )


MOUSE_SYMBOL = re.compile(r"^[A-Z][a-z0-9-]*[a-z][a-z0-9-]*$")
"""Capitalized with some lower case (Cd3e, Gapdh): how mouse gene symbols are written."""
ENSEMBL_SPECIES = {"ENSG": "human", "ENSMUSG": "mouse", "ENSRNOG": "rat", "ENSDARG": "zebrafish"}


def identifier_shape(identifiers: list[str]) -> str:
    """What most identifiers look like, and their share: Ensembl ids (with the species their prefix names), Entrez
    ids, mouse-style symbols (Cd3e), human-style symbols (CD3E) or other names."""
    if not identifiers:
        return "nothing"
    counts = pd.Series([_shape(str(x)) for x in identifiers[:1000]]).value_counts()
    return f"{counts.index[0]} ({counts.iloc[0] / counts.sum():.0%} of them)"


def _shape(identifier: str) -> str:
    from ..catalog.resolver import identifier_kind

    kind = identifier_kind(identifier)
    if kind == "Ensembl ids":
        prefix = re.match(r"ENS[A-Z]*?G", identifier.upper()).group(0)
        species = ENSEMBL_SPECIES.get(prefix)
        return f"{species + ' ' if species else ''}Ensembl ids ({prefix}…)"
    if kind == "Entrez ids":
        return kind
    if MOUSE_SYMBOL.match(identifier):
        return "mouse-style symbols like Cd3e"
    if identifier == identifier.upper() and identifier[:1].isalpha():
        return "human-style symbols like CD3E"
    return "other names"


def select_cells(
    labels: pd.Series, max_cells: int, min_class_cells: int, seed: int, name: str = "dataset"
) -> tuple[np.ndarray, dict]:
    """Sorted positions of the cells to score: labelled, in classes of at least `min_class_cells`, and a
    class-stratified sample of `max_cells` when there are more; with the counts of what was left out. Fewer than
    two such classes, or a cap below their number, is a CellDatasetError."""
    labels = labels.astype("string")
    labelled = labels.notna().to_numpy()
    sizes = labels[labelled].value_counts()
    small = sizes[sizes < min_class_cells].index
    keep = labelled & ~labels.isin(small).fillna(False).to_numpy()
    positions = np.flatnonzero(keep)
    classes = sizes.index.difference(small)
    if len(classes) < 2:
        counts = ", ".join(f"{label}: {n}" for label, n in sizes.head(5).items()) or "no labelled cells"
        raise CellDatasetError(
            f"Cell dataset {name!r}: {len(labels)} cells, {len(classes)} cell types with at least {min_class_cells} "
            f"cells ({counts}); scoring needs two or more. Check the label column, or lower min_class_cells."
        )
    if max_cells < len(classes):
        raise CellDatasetError(
            f"Cell dataset {name!r}: max_cells {max_cells} is below its {len(classes)} cell types, so a sample cannot "
            "hold every type: raise max_cells."
        )
    capped = len(positions) > max_cells
    if capped:
        from sklearn.model_selection import train_test_split

        positions, _ = train_test_split(
            positions, train_size=max_cells, random_state=seed, stratify=labels.to_numpy()[positions]
        )
        positions = np.sort(positions)
    excluded = {
        "unlabelled": int((~labelled).sum()),
        "in_small_classes": int(labels.isin(small).fillna(False).sum()),
        "over_cap": int(keep.sum() - len(positions)),
        "small_classes": [str(c) for c in small],
    }
    return positions, excluded


def reread_command(name: str, source: dict) -> str:
    """The command that reads a dataset's file again (`cell_datasets` of its partition), with its h5ad config."""
    command = f"gene-assets materialize cell_datasets --dataset {name}"
    if name in CELL_DATASETS:
        return command
    config = {"ops": {"cell_datasets": {"config": {"h5ad_path": source["path"], "label_key": source["label_key"]}}}}
    return f"{command} --config-json '{json.dumps(config)}'"


@dataclass
class CellDataset:
    """The cells to score (file position, obs name, label), the matched genes, and how to read the matrix."""

    cells: pd.DataFrame
    genes: pd.DataFrame
    attrs: dict = field(default_factory=dict)

    @property
    def matched(self) -> pd.DataFrame:
        return self.genes[self.genes["entrez_id"].notna()]

    def matrix(self) -> CellMatrix:
        """The dataset's matrix, re-read from its file: refused unless the file is the one `cell_datasets` read (its
        sha256), since the stored cells are positions in that file."""
        source = self.attrs["source"]
        if source.get("path"):
            recorded = source.get("sha256")
            actual = sha256_file(Path(source["path"])) if Path(source["path"]).is_file() else "missing"
            if actual != recorded:
                if recorded is None:
                    found = "recorded no sha256 (stored before digests were kept)"
                elif actual == "missing":
                    found = "the file is gone"
                else:
                    found = f"recorded sha256 {recorded[:12]}…, the file now has {actual[:12]}…"
                raise CellDatasetError(
                    f"Cell dataset {self.attrs['name']!r}: {source['path']} is not the file cell_datasets read "
                    f"({found}); its stored cells are row positions in that file, so nothing was computed from it. "
                    f"Re-read it first: {reread_command(self.attrs['name'], source)}"
                )
        return CellMatrix(open_anndata(source), source["use_raw"], self.attrs["name"])

    def to_arrow(self) -> pa.Table:
        table = pa.Table.from_pandas(self.cells, preserve_index=False)
        genes = self.genes.astype({"entrez_id": "float64"}).to_dict(orient="list")
        metadata = {
            **(table.schema.metadata or {}),
            b"gene_assets.attrs": json.dumps(self.attrs).encode(),
            b"gene_assets.genes": json.dumps(genes).encode(),
        }
        return table.replace_schema_metadata(metadata)

    @classmethod
    def from_arrow(cls, table: pa.Table) -> CellDataset:
        metadata = table.schema.metadata or {}
        genes = pd.DataFrame(json.loads(metadata[b"gene_assets.genes"]))
        genes["entrez_id"] = genes["entrez_id"].astype("Int64")
        cells = table.to_pandas()
        return cls(cells=cells, genes=genes, attrs=json.loads(metadata[b"gene_assets.attrs"]))

"""Cell embeddings from gene embeddings: GenePT-w (expression-weighted mean of gene vectors) and GenePT-s (the
cell as a sentence of gene symbols, embedded by the backbone's text model).

GenePT-w is computed one row chunk at a time with a gene × dims matrix that has a zero row for every gene without
an embedding, so neither the expression matrix nor a column-subset copy of it is ever held whole."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
from scipy import sparse

from ..embeddings.table import GeneEmbeddings
from .datasets import CellDataset, CellMatrix, InputScale, log_normalize

METHODS = {"genept_w": "X_genept_w", "genept_s": "X_genept_s"}
"""Cell embedding method → AnnData obsm key."""
SENTENCE_VIEW = "cell_sentences"
"""Embedding-cache view of GenePT-s sentences (keyed by the sentence's sha256 like any other text)."""


@dataclass(frozen=True)
class GeneWeights:
    """Gene vectors aligned to a dataset's var columns: a zero row (and weight mask 0) where a gene is unmatched."""

    vectors: np.ndarray
    matched: np.ndarray

    @classmethod
    def for_dataset(cls, dataset: CellDataset, embeddings: GeneEmbeddings) -> GeneWeights:
        return cls.for_genes(dataset.genes, embeddings)

    @classmethod
    def for_genes(cls, genes: pd.DataFrame, embeddings: GeneEmbeddings) -> GeneWeights:
        """From match_genes' table (one row per var column: var_index, entrez_id)."""
        matched_genes = genes[genes["entrez_id"].notna()]
        rows = pd.Index(embeddings.genes["entrez_id"]).get_indexer(matched_genes["entrez_id"].astype(int))
        present = rows >= 0
        vectors = np.zeros((len(genes), embeddings.dims), dtype=np.float32)
        columns = matched_genes["var_index"].to_numpy()[present]
        vectors[columns] = embeddings.matrix[rows[present]]
        matched = np.zeros(len(genes), dtype=np.float32)
        matched[columns] = 1
        return cls(vectors=vectors, matched=matched)


def genept_w_block(block: sparse.csr_matrix, scale: InputScale, weights: GeneWeights) -> np.ndarray:
    """GenePT-w of a block of cells: log-normalized expression times the gene vectors over matched genes, divided by
    the cell's total weight on those genes, then l2-normalized (a cell with no matched expression stays zero)."""
    expression = log_normalize(block, scale)
    vectors = np.asarray(expression @ weights.vectors, dtype=np.float32)
    totals = expression @ weights.matched
    vectors /= np.where(totals > 0, totals, 1)[:, None]
    return unit_rows(vectors)


def unit_rows(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit l2 norm (all-zero rows stay zero)."""
    X = np.asarray(X, dtype=np.float32)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return np.divide(X, norms, out=np.zeros_like(X), where=norms > 0)


@dataclass
class StreamStats:
    cells: int = 0
    chunks: int = 0
    zero_weight_cells: int = 0
    peak_rss_bytes: int = 0
    """Largest resident set size of the process sampled after each chunk."""


def stream_genept_w(
    matrix: CellMatrix,
    rows: np.ndarray,
    scale: InputScale,
    weights: GeneWeights,
    chunk_cells: int,
    out=None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, StreamStats]:
    """GenePT-w of the cells `rows` (sorted file positions), one chunk of the file at a time, written into `out`
    (any array with row-slice assignment, e.g. an h5py dataset; a new float32 array by default)."""
    if out is None:
        out = np.zeros((len(rows), weights.vectors.shape[1]), dtype=np.float32)
    process, stats = psutil.Process(), StreamStats()
    for positions, block in matrix.chunks(rows, chunk_cells):
        vectors = genept_w_block(block, scale, weights)
        out[positions] = vectors
        stats.cells += block.shape[0]
        stats.chunks += 1
        stats.zero_weight_cells += int((~vectors.any(axis=1)).sum())
        stats.peak_rss_bytes = max(stats.peak_rss_bytes, process.memory_info().rss)
        if progress:
            progress(stats.cells, len(rows))
    return out, stats


def cell_sentences(block: sparse.csr_matrix, symbols: np.ndarray, top_genes: int) -> list[str]:
    """Each cell as its gene symbols by decreasing expression (zeros omitted, ties in var order), at most `top_genes`."""
    sentences = []
    for i in range(block.shape[0]):
        start, stop = block.indptr[i], block.indptr[i + 1]
        values, columns = block.data[start:stop], block.indices[start:stop]
        expressed = values > 0
        values, columns = values[expressed], columns[expressed]
        order = np.lexsort((columns, -values))[:top_genes]
        sentences.append(" ".join(symbols[columns[order]]))
    return sentences


def embed_cell_sentences(backbone, sentences: list[str], embedding_device, log=None):
    """GenePT-s: the sentences embedded by the backbone's text model through the embedding cache, as unit rows;
    with the cache's result (how many came from the cache)."""
    from ..embeddings.cache import EmbeddingCache
    from ..embeddings.encoders import load_encoder, vector_settings

    placement = embedding_device.placement(backbone)
    cache = EmbeddingCache(vector_settings(backbone, placement.precision), **({"log": log} if log else {}))
    result = cache.embed(
        sentence_table(sentences), SENTENCE_VIEW, lambda missing: load_encoder(backbone, placement).embed(missing)
    )
    return unit_rows(result.matrix), result


def sentence_table(sentences: list[str]) -> pd.DataFrame:
    """Sentences in the texts-table shape the encoders and the embedding cache take."""
    return pd.DataFrame(
        {"text": sentences, "text_sha256": [hashlib.sha256(s.encode("utf-8")).hexdigest() for s in sentences]}
    )


@dataclass
class CellEmbeddings:
    """Cells (obs name, label) and their embedding per method, stored as parquet and as an h5ad with obsm keys."""

    cells: pd.DataFrame
    embeddings: dict[str, np.ndarray]
    attrs: dict = field(default_factory=dict)

    def to_arrow(self) -> pa.Table:
        table = pa.Table.from_pandas(self.cells[["obs_name", "label"]], preserve_index=False)
        for method, matrix in self.embeddings.items():
            flat = pa.array(np.ascontiguousarray(matrix, dtype=np.float32).reshape(-1), type=pa.float32())
            table = table.append_column(method, pa.FixedSizeListArray.from_arrays(flat, matrix.shape[1]))
        return table.replace_schema_metadata(
            {**(table.schema.metadata or {}), b"gene_assets.attrs": json.dumps(self.attrs).encode()}
        )

    @classmethod
    def from_arrow(cls, table: pa.Table) -> CellEmbeddings:
        attrs = json.loads((table.schema.metadata or {}).get(b"gene_assets.attrs", b"{}"))
        embeddings = {}
        for method in METHODS:
            if method in table.column_names:
                column = table.column(method).combine_chunks()
                embeddings[method] = column.flatten().to_numpy().reshape(-1, column.type.list_size)
        cells = table.select(["obs_name", "label"]).to_pandas()
        return cls(cells=cells, embeddings=embeddings, attrs=attrs)

    def to_anndata(self):
        """obs: labels; obsm: one key per method (X_genept_w, X_genept_s); uns: provenance."""
        import anndata as ad

        obs = pd.DataFrame(
            {"label": pd.Categorical(self.cells["label"])}, index=self.cells["obs_name"].astype(str).to_numpy()
        )
        return ad.AnnData(
            obs=obs,
            obsm={METHODS[m]: matrix for m, matrix in self.embeddings.items()},
            uns={"gene_assets": json.dumps(self.attrs)},
        )

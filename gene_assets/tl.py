"""Tools on your own AnnData in scanpy's style (write `obsm`, record parameters and the gene match in `uns`, return
None unless copy=True): GenePT-w and GenePT-s cell embeddings from released gene embeddings, computed by the code
the `cell_embeddings` asset runs, and a gene's nearest genes."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .catalog.resolver import GeneResolver
from .cells.datasets import CellMatrix, detect_input_scale, match_genes, require_gene_match
from .embeddings.table import GeneEmbeddings
from .errors import GeneAssetsError
from .release.published import load_embeddings

if TYPE_CHECKING:
    from anndata import AnnData

    from .embeddings.device import EmbeddingDevice

CHUNK_CELLS = 10_000
"""Cells read and embedded at a time (the asset's default): a backed AnnData is never loaded whole."""


class EmbeddingInputError(GeneAssetsError, ValueError):
    """The embeddings or the gene given to a tool are not usable; the message says what to pass instead."""


def genept_w(
    adata: AnnData,
    embeddings: pd.DataFrame,
    *,
    layer: str | None = None,
    gene_symbols: str | None = None,
    key_added: str = "X_genept_w",
    chunk_cells: int = CHUNK_CELLS,
    copy: bool = False,
) -> AnnData | None:
    """GenePT-w: each cell's expression-weighted mean of its genes' embeddings, l2-normalized.

    Counts (and other unlogged values) are normalized to 10,000 per cell and log1p-transformed; log-normalized
    values are used as they are; negative, NaN or infinite values are refused. Genes are matched by the catalog's
    resolver (symbols, aliases, Entrez ids, Ensembl ids with or without version); a dataset with fewer than 100
    matched genes or 30% of its genes matched is refused, as the pipeline refuses it. A backed AnnData is read in
    row chunks.

    Args:
        adata: The cells (in memory or backed).
        embeddings: A table from `gene_assets.load_embeddings`.
        layer: Read this layer instead of X.
        gene_symbols: The var column holding gene identifiers (default: var_names).
        key_added: The obsm key written; `uns[key_added without "X_"]` gets the parameters and the gene match.
        chunk_cells: Cells read at a time.
        copy: Return a copy with the result instead of writing into `adata`.

    Returns:
        None, or the annotated copy when copy=True. On any error `adata` is unchanged.
    """
    from .cells.embedding import GeneWeights, stream_genept_w

    table = gene_embeddings(embeddings)
    matrix, genes, scale, report = _match(adata, embeddings, table, layer, gene_symbols)
    vectors, stats = stream_genept_w(
        matrix, np.arange(matrix.n_obs), scale, GeneWeights.for_genes(genes, table), chunk_cells
    )
    report["zero_weight_cells"] = stats.zero_weight_cells
    return _write(adata, key_added, vectors, _params(embeddings, layer, gene_symbols), report, copy)


def genept_s(
    adata: AnnData,
    backbone: str,
    *,
    embeddings: pd.DataFrame | None = None,
    view: str = "summary",
    version: str | None = None,
    repo: str | None = None,
    remote: str | None = None,
    layer: str | None = None,
    gene_symbols: str | None = None,
    n_genes: int = 100,
    key_added: str = "X_genept_s",
    chunk_cells: int = CHUNK_CELLS,
    device: EmbeddingDevice | None = None,
    copy: bool = False,
) -> AnnData | None:
    """GenePT-s: each cell as a sentence of its `n_genes` most expressed gene symbols (catalog symbols for matched
    genes), embedded by the backbone's text model and l2-normalized.

    Genes are matched as `genept_w` matches them, against the genes of `embeddings` (a load_embeddings table of the
    view; default: `load_embeddings(backbone, view, version, repo, remote)`). Only text models embed sentences.
    `device`: an `EmbeddingDevice` (where and at what precision the model runs; default: the pipeline's automatic
    choice).

    Returns:
        None, or the annotated copy when copy=True. On any error `adata` is unchanged.
    """
    from .cells.embedding import cell_sentences, embed_cell_sentences
    from .embeddings.device import EmbeddingDevice
    from .embeddings.registry import all_backbones, get_backbone

    model = get_backbone(backbone)
    if not model.kind_spec.embeds_sentences:
        text_models = sorted(name for name, b in all_backbones().items() if b.kind_spec.embeds_sentences)
        raise EmbeddingInputError(
            f"{backbone} ({model.kind}) does not embed sentences, so it has no GenePT-s; use genept_w with it, or "
            f"a text model: {', '.join(text_models)}."
        )
    if embeddings is None:
        embeddings = load_embeddings(backbone, view, version, repo, remote)
    matrix, genes, _, report = _match(adata, embeddings, gene_embeddings(embeddings), layer, gene_symbols)
    symbols = genes["symbol"].to_numpy(dtype=object)
    sentences = [
        sentence
        for _, block in matrix.chunks(np.arange(matrix.n_obs), chunk_cells)
        for sentence in cell_sentences(block, symbols, n_genes)
    ]
    vectors, _ = embed_cell_sentences(model, sentences, device or EmbeddingDevice())
    params = {**_params(embeddings, layer, gene_symbols), "backbone": backbone, "n_genes": n_genes}
    return _write(adata, key_added, vectors, params, report, copy)


def similar_genes(embeddings: pd.DataFrame, gene: str | int, n: int = 10) -> pd.DataFrame:
    """The `n` genes nearest to `gene` (a symbol, alias, Entrez or Ensembl id) by cosine similarity.

    Returns:
        Indexed by symbol, with entrez_id and cosine, most similar first (the gene itself left out).
    """
    table = gene_embeddings(embeddings)
    resolution = resolver_of(embeddings).identifiers([str(gene)])
    entrez = resolution.entrez_ids.iloc[0]
    where = _name(embeddings)
    if pd.isna(entrez):
        raise EmbeddingInputError(
            f"{gene!r} is not a human gene symbol, alias, Entrez id or Ensembl gene id the catalog knows; "
            f"give one of those (e.g. TP53, 7157 or ENSG00000141510)."
        )
    row = np.flatnonzero(table.genes["entrez_id"].to_numpy() == int(entrez))
    if not len(row):
        raise EmbeddingInputError(
            f"{gene!r} (Entrez {entrez}) has no vector in {where}: the gene has no text in this view. Try another "
            "view or backbone (gene_assets.list_embeddings())."
        )
    norms = np.linalg.norm(table.matrix, axis=1)
    unit = np.divide(table.matrix, norms[:, None], out=np.zeros_like(table.matrix), where=norms[:, None] > 0)
    cosine = unit @ unit[row[0]]
    cosine[row[0]] = -np.inf
    nearest = np.argsort(-cosine, kind="stable")[:n]
    return pd.DataFrame(
        {"entrez_id": table.genes["entrez_id"].to_numpy()[nearest], "cosine": cosine[nearest]},
        index=pd.Index(table.genes["symbol"].to_numpy()[nearest], name="symbol"),
    )


def gene_embeddings(embeddings: pd.DataFrame) -> GeneEmbeddings:
    """The GeneEmbeddings of a load_embeddings table (its rows may have been subset)."""
    if not isinstance(embeddings, pd.DataFrame) or "entrez_id" not in embeddings.columns:
        raise EmbeddingInputError(
            f"embeddings must be a table from gene_assets.load_embeddings (got {type(embeddings).__name__}); "
            "e.g. gene_assets.load_embeddings('bag-of-words')."
        )
    dims = [c for c in embeddings.columns if isinstance(c, int | np.integer)]
    genes = pd.DataFrame({"entrez_id": embeddings["entrez_id"].astype(int).to_numpy(), "symbol": embeddings.index})
    attrs = {key: embeddings.attrs[key] for key in ("backbone", "view") if key in embeddings.attrs}
    return GeneEmbeddings(genes=genes, matrix=embeddings[dims].to_numpy(dtype=np.float32), attrs=attrs)


def resolver_of(embeddings: pd.DataFrame) -> GeneResolver:
    """The catalog resolver of the release the table came from (its gene_identifiers.parquet); for a table without
    one, its own symbols and Entrez ids."""
    path = embeddings.attrs.get("gene_identifiers")
    if path:
        return _release_resolver(path)
    catalog = pd.DataFrame(
        {"entrez_id": embeddings["entrez_id"].astype(int), "symbol": embeddings.index.astype(str)}
    ).assign(aliases="", ensembl_ids="")
    return GeneResolver(catalog)


@functools.lru_cache(maxsize=4)
def _release_resolver(path: str) -> GeneResolver:
    return GeneResolver(pd.read_parquet(path))


def _match(
    adata: AnnData, embeddings: pd.DataFrame, table: GeneEmbeddings, layer: str | None, gene_symbols: str | None
):
    """The matrix (X or the layer, read in chunks), match_genes' table against the table's genes, the input scale
    and the gene-match report; refused as the pipeline refuses a dataset (too few matched genes, negative values)."""
    name = str(adata.filename.name) if getattr(adata, "isbacked", False) else "adata"
    matrix = CellMatrix(adata, False, name, layer=layer, gene_column=gene_symbols)
    genes = match_genes(matrix.var_names, resolver_of(embeddings), set(table.genes["entrez_id"].astype(int)))
    n_matched, fraction = require_gene_match(genes, name, matched_what=f"a gene of {_name(embeddings)}")
    scale = detect_input_scale(matrix, name)
    unmatched = genes.loc[genes["entrez_id"].isna(), "name"]
    report = {
        "n_vars": len(genes),
        "n_matched": n_matched,
        "match_fraction": round(fraction, 6),
        "matched_by": {str(k): int(v) for k, v in genes["match"].value_counts().items()},
        "unmatched_examples": unmatched.head(20).tolist(),
        "input_scale": scale,
    }
    return matrix, genes, scale, report


def _name(embeddings: pd.DataFrame) -> str:
    receipt = embeddings.attrs.get("receipt", {})
    what = "/".join(str(embeddings.attrs[k]) for k in ("backbone", "view") if k in embeddings.attrs)
    return f"the {what or 'given'} embeddings" + (f" ({receipt['version']})" if "version" in receipt else "")


def _params(embeddings: pd.DataFrame, layer: str | None, gene_symbols: str | None) -> dict:
    receipt = embeddings.attrs.get("receipt", {})
    params = {
        "backbone": embeddings.attrs.get("backbone"),
        "view": embeddings.attrs.get("view"),
        "version": receipt.get("version"),
        "sha256": receipt.get("sha256"),
        "layer": layer,
        "gene_symbols": gene_symbols,
    }
    return {key: value for key, value in params.items() if value is not None}


def _write(
    adata: AnnData, key_added: str, vectors: np.ndarray, params: dict, report: dict, copy: bool
) -> AnnData | None:
    if copy:
        adata = adata.to_memory() if adata.isbacked else adata.copy()
    adata.obsm[key_added] = vectors
    adata.uns[key_added.removeprefix("X_")] = {"params": params, "genes": report}
    return adata if copy else None

"""gene_embeddings: one float32 table per (backbone, text view) partition."""


import time

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    MetadataValue,
    Output,
    asset,
)

from .cache import CHECKPOINT_TEXTS, CachedEmbedding, EmbeddingCache
from .encoders import load_encoder, vector_settings
from .partitions import backbone_view_partitions
from .registry import get_backbone
from .table import GeneEmbeddings

CACHED_KINDS = {"sentence_transformers"}
"""Kinds whose vector depends on the text alone and is costly: cached per text. Bag-of-words depends on the whole
corpus (its vocabulary), so it is never cached per text; the controls are cheaper to compute than to look up."""


class GeneEmbeddingsConfig(Config):
    checkpoint_texts: int = CHECKPOINT_TEXTS
    """Texts encoded between two writes to the embedding cache: what an interrupted run can lose."""


@asset(
    group_name="embeddings",
    partitions_def=backbone_view_partitions,
    compute_kind="torch",
    check_specs=[AssetCheckSpec("nonzero_vectors", asset="gene_embeddings", description="No gene has an all-zero vector.")],
)
def gene_embeddings(context: AssetExecutionContext, config: GeneEmbeddingsConfig, gene_texts: pd.DataFrame):
    """Every gene's text in this view, embedded by this backbone (float32, one row per gene)."""
    keys = context.partition_key.keys_by_dimension
    backbone, view = get_backbone(keys["backbone"]), keys["view"]
    texts = gene_texts[gene_texts["view"] == view].reset_index(drop=True)
    if texts.empty:
        raise ValueError(f"gene_texts has no texts for view {view!r}: materialize gene_texts with this view enabled.")
    context.log.info(f"Embedding {len(texts)} {view} texts with {backbone.name}")

    def encode(missing: pd.DataFrame):
        return load_encoder(backbone).embed(
            missing,
            progress=lambda done, total: context.log.info(f"{backbone.name}/{view}: {done}/{total} texts embedded"),
        )

    started = time.perf_counter()
    attrs = {
        "backbone": backbone.name, "kind": backbone.kind, "model_id": backbone.model_id, "revision": backbone.revision,
        "view": view, "dims": backbone.dims,
    }
    if backbone.kind in CACHED_KINDS:
        cache = EmbeddingCache(vector_settings(backbone), log=context.log)
        result = cache.embed(texts, view, encode, checkpoint_texts=config.checkpoint_texts)
        attrs["precision"] = cache.settings["precision"]
        cache_metadata = {"embedding_cache": MetadataValue.path(str(cache.directory))}
    else:
        result = CachedEmbedding(matrix=encode(texts), from_cache=0, embedded=len(texts))
        cache_metadata = {}
    seconds = time.perf_counter() - started
    table = GeneEmbeddings(genes=texts[["entrez_id", "symbol", "text_sha256"]], matrix=result.matrix, attrs=attrs)
    yield Output(
        table,
        metadata={
            **{k: MetadataValue.text(str(v)) for k, v in attrs.items()},
            "n_genes": len(texts),
            "seconds": round(seconds, 2),
            "texts_per_second": round(len(texts) / max(seconds, 1e-9), 1),
            "texts_from_cache": result.from_cache,
            "texts_embedded": result.embedded,
            **cache_metadata,
        },
    )
    zero = ~table.matrix.any(axis=1)
    yield AssetCheckResult(
        check_name="nonzero_vectors",
        passed=not zero.any(),
        severity=AssetCheckSeverity.WARN,
        metadata={"zero_vectors": int(zero.sum()), "examples": ", ".join(texts.loc[zero, "symbol"].astype(str).head(10))},
    )

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
from pydantic import Field

from ..automation.conditions import EMBEDDINGS_CONDITION
from ..progress import ProgressLog
from .backbone import OPENVINO_INT8
from .cache import CHECKPOINT_TEXTS, CachedEmbedding, EmbeddingCache
from .device import GPU_POOL, EmbeddingDevice, k8s_gpu_tags
from .encoders import load_encoder, vector_settings
from .openvino_int8 import quantized_model_record
from .partitions import backbone_view_partitions
from .precomputed import import_precomputed
from .registry import get_backbone
from .table import GeneEmbeddings


class GeneEmbeddingsConfig(Config):
    checkpoint_texts: int = Field(
        default=CHECKPOINT_TEXTS,
        description="Texts encoded between two writes to the embedding cache: what an interrupted run can lose.",
    )


def gene_embeddings_asset(pool: str | None = GPU_POOL):
    """The gene_embeddings asset; its step runs in `pool` (None: no pool, for executors that cannot carry one)."""

    @asset(
        name="gene_embeddings",
        group_name="embeddings",
        partitions_def=backbone_view_partitions,
        kinds={"torch"},
        pool=pool,
        automation_condition=EMBEDDINGS_CONDITION,
        op_tags=k8s_gpu_tags(),
        description="Every gene's text in this view, embedded by this backbone (float32, one row per gene); a "
        "precomputed backbone contributes the genes its file covers.",
        check_specs=[
            AssetCheckSpec("nonzero_vectors", asset="gene_embeddings", description="No gene has an all-zero vector.")
        ],
    )
    def _gene_embeddings(
        context: AssetExecutionContext,
        config: GeneEmbeddingsConfig,
        gene_texts: pd.DataFrame,
        gene_catalog: pd.DataFrame,
        embedding_device: EmbeddingDevice,
    ):
        yield from embed_partition(context, gene_texts, gene_catalog, embedding_device, config.checkpoint_texts)

    return _gene_embeddings


def embed_partition(
    context: AssetExecutionContext,
    gene_texts: pd.DataFrame,
    gene_catalog: pd.DataFrame,
    embedding_device: EmbeddingDevice,
    checkpoint_texts: int = CHECKPOINT_TEXTS,
):
    """The partition's table with device, dtype (and on CPU the precision decision with its calibration evidence),
    throughput and cache use in its metadata; the nonzero_vectors check."""
    keys = context.partition_key.keys_by_dimension
    backbone, view = get_backbone(keys["backbone"]), keys["view"]
    texts = gene_texts[gene_texts["view"] == view].reset_index(drop=True)
    if texts.empty:
        raise ValueError(f"gene_texts has no texts for view {view!r}: materialize gene_texts with this view enabled.")
    context.log.info(f"Embedding {len(texts)} {view} texts with {backbone.name}")
    placement = embedding_device.placement(backbone)
    progress = ProgressLog(context.log, f"{backbone.name}/{view}", "texts embedded", total=len(texts))

    def encode(missing: pd.DataFrame):
        base, work_base = progress.done, progress.work_done
        vectors = load_encoder(backbone, placement).embed(missing, progress=progress.part())
        progress.update(base + len(missing), work_done=work_base + int(missing["text"].str.len().sum()))
        return vectors

    started = time.perf_counter()
    attrs = {
        "backbone": backbone.name,
        "kind": backbone.kind,
        "model_id": backbone.model_id,
        "revision": backbone.revision,
        "view": view,
        "dims": backbone.dims,
    }
    extra_metadata = {}
    genes = texts[["entrez_id", "symbol", "text_sha256"]]
    if backbone.kind_spec.from_file:
        imported = import_precomputed(backbone, gene_catalog, texts)
        genes, result = (
            imported.genes,
            CachedEmbedding(matrix=imported.matrix, from_cache=0, embedded=len(imported.genes)),
        )
        attrs["source_path"] = backbone.source_path
        extra_metadata["symbol_mapping"] = MetadataValue.json(imported.mapping)
    elif backbone.kind_spec.cached:
        cache = EmbeddingCache(vector_settings(backbone, placement.precision), log=context.log)
        result = cache.embed(texts, view, encode, checkpoint_texts=checkpoint_texts, expect=progress.expect)
        attrs["precision"] = placement.precision
        if placement.precision == OPENVINO_INT8:  # the recipe and sha256 of the quantized model that made the vectors
            attrs["quantized_model"] = quantized_model_record(backbone)
        if placement.decision is not None:  # without `remembered`, so a re-run on this machine gives the same table
            attrs["precision_decision"] = {k: v for k, v in placement.decision.items() if k != "remembered"}
            extra_metadata["precision_decision_remembered"] = placement.decision["remembered"]
        extra_metadata["embedding_cache"] = MetadataValue.path(str(cache.directory))
    else:
        result = CachedEmbedding(matrix=encode(texts), from_cache=0, embedded=len(texts))
    seconds = time.perf_counter() - started
    table = GeneEmbeddings(genes=genes, matrix=result.matrix, attrs=attrs)
    yield Output(
        table,
        metadata={
            **{
                k: MetadataValue.json(v) if isinstance(v, dict) else MetadataValue.text(str(v))
                for k, v in attrs.items()
            },
            "device": placement.device,
            "dtype": placement.precision,
            "token_budget": placement.token_budget,
            "n_genes": len(genes),
            "seconds": round(seconds, 2),
            "texts_per_second": round(len(genes) / max(seconds, 1e-9), 1),
            "embedded_per_second": round(result.embedded / max(seconds, 1e-9), 1),
            "texts_from_cache": result.from_cache,
            "texts_embedded": result.embedded,
            **extra_metadata,
        },
    )
    zero = ~table.matrix.any(axis=1)
    yield AssetCheckResult(
        check_name="nonzero_vectors",
        passed=not zero.any(),
        severity=AssetCheckSeverity.WARN,
        metadata={
            "zero_vectors": int(zero.sum()),
            "examples": ", ".join(genes.loc[zero, "symbol"].astype(str).head(10)),
        },
    )


gene_embeddings = gene_embeddings_asset()

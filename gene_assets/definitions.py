"""All gene_assets definitions: sources → catalog → texts → embeddings → tasks, cells and perturbation → leaderboard →
release, with the discovery sensor, the weekly refresh and declarative automation, for one deployment profile
(deployment.py)."""

from dagster import (
    AssetDep,
    AssetKey,
    AssetsDefinition,
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    Definitions,
    In,
    MultiToSingleDimensionPartitionMapping,
    Nothing,
    define_asset_job,
    load_asset_checks_from_modules,
    load_assets_from_modules,
)
from dagster._core.definitions.assets.definition.assets_definition import stringify_asset_key_to_input_name

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
from .sources.observations import (
    DATA_FILE_READERS,
    OBSERVED,
    backbone_inputs,
    backbone_inputs_observation_job,
    data_file_key,
    data_files_observation_job,
    input_observation_sensor,
)
from .tasks import assets as task_assets
from .texts import assets as text_assets
from .versions import SourceTree, code_versions

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


def input_deps(key: AssetKey) -> list[AssetDep]:
    """The observed inputs an asset reads besides its upstream assets: data-directory files, a backbone's inputs."""
    deps = [AssetDep(data_file_key(name)) for name in DATA_FILE_READERS.get(key.to_user_string(), [])]
    if key == AssetKey("gene_embeddings"):
        deps.append(AssetDep(backbone_inputs.key, partition_mapping=MultiToSingleDimensionPartitionMapping("backbone")))
    return deps


def versioned(assets_def: AssetsDefinition, versions: dict[AssetKey, str]) -> AssetsDefinition:
    """The asset with its code version (versions.py) and its observed inputs as dependencies, so that Dagster's stale
    status follows the code that computes it and the content of the files it reads. (AssetsDefinition.map_asset_specs
    cannot add a dependency here: in Dagster 1.13 it retypes every argument-backed input as Nothing.)"""
    specs = [
        spec.replace_attributes(code_version=versions[spec.key], deps=[*spec.deps, *input_deps(spec.key)])
        for spec in assets_def.specs
    ]
    added = {dep.asset_key for spec in assets_def.specs for dep in input_deps(spec.key)}
    if not added:
        return assets_def.map_asset_specs(lambda spec: spec.replace_attributes(code_version=versions[spec.key]))
    ins = {
        **assets_def.node_def.input_dict,
        **{stringify_asset_key_to_input_name(key): In(dagster_type=Nothing) for key in added},
    }
    return AssetsDefinition.dagster_internal_init(
        **{
            **assets_def.get_attributes_dict(),
            "node_def": assets_def.op.with_replaced_properties(name=assets_def.op.name, ins=ins),
            "specs": specs,
        }
    )


def assets_for(profile: str, source: SourceTree | None = None) -> list:
    """Every asset, versioned from `source` (the package's own by default), and the observed inputs. On Dask the
    embedding step has no pool: dagster-dask 0.29.27 cannot send runs that carry pool limits to its workers (the
    cluster's workers bound concurrency there)."""
    assets = load_assets_from_modules(MODULES)
    if profile == "dask":
        assets = [gene_embeddings_asset(pool=None) if a.key == AssetKey("gene_embeddings") else a for a in assets]
    versions = code_versions(MODULES, source)
    return [*(versioned(a, versions) for a in assets), *OBSERVED]


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
            data_files_observation_job,
            backbone_inputs_observation_job,
        ],
        schedules=[weekly_refresh(sources_job, running)],
        sensors=[
            discovery_sensor(sensor_status),
            input_observation_sensor,
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

"""The discovery sensor: new models from mteb's registry become backbone partitions, embedded in the gene_embeddings
job; declarative automation (conditions.py) takes it from there to the task results, the leaderboard and a release."""

from __future__ import annotations

import json

from dagster import (
    AssetSelection,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    sensor,
)

from ..embeddings.discovered import DiscoveredRegistry
from ..embeddings.partitions import backbone_partitions, backbone_view_key, backbone_view_partitions
from ..runs import recover_dead_runs
from ..settings import DISCOVERY_INTERVAL_ENV, int_setting
from .discovery import ModelDiscovery

WEEK_SECONDS = 7 * 24 * 3600

embedding_job = define_asset_job(
    "embedding_job",
    selection=AssetSelection.assets("gene_embeddings"),
    partitions_def=backbone_view_partitions,
    description="Embed one (backbone, view) partition; automation then scores it and refreshes the leaderboard.",
)


def read_cursor(cursor: str | None) -> set[str]:
    return set(json.loads(cursor)["known"]) if cursor else set()


def discovery_sensor(default_status: DefaultSensorStatus):
    @sensor(
        name="model_discovery_sensor",
        job=embedding_job,
        minimum_interval_seconds=int_setting(DISCOVERY_INTERVAL_ENV, WEEK_SECONDS, 1),
        default_status=default_status,
        description="Adds models that mteb's registry (and optionally a Hub search) lists and the discovery rules "
        "admit as backbone partitions, and embeds them. Known models are never re-added; vanished ones are kept.",
    )
    def model_discovery_sensor(context: SensorEvaluationContext, model_discovery: ModelDiscovery) -> SensorResult:
        # Known: handled on an earlier tick, or already a partition. The registry file is not consulted here, so a
        # tick that wrote it but failed before its partitions were added is completed by the next one.
        known = read_cursor(context.cursor) | set(context.instance.get_dynamic_partitions(backbone_partitions.name))
        candidates = model_discovery.candidates()
        new = [b for b in candidates if b.name not in known][: model_discovery.max_new_per_tick]
        DiscoveredRegistry().add(new)  # before the partitions exist, so every partition key resolves to its entry
        cursor = json.dumps({"known": sorted(known | {b.name for b in new})})
        if not new:
            return SensorResult(skip_reason=f"No new model among {len(candidates)} candidates.", cursor=cursor)
        context.log.info(f"New backbones: {', '.join(f'{b.model_id}@{b.revision}' for b in new)}")
        return SensorResult(
            run_requests=[
                RunRequest(run_key=f"{b.name}|{view}", partition_key=backbone_view_key(b.name, view))
                for b in new
                for view in model_discovery.views
            ],
            dynamic_partitions_requests=[backbone_partitions.build_add_request([b.name for b in new])],
            cursor=cursor,
        )

    return model_discovery_sensor


@sensor(
    name="dead_run_recovery",
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Marks runs whose process on this machine died (SIGKILL, out of memory) as failed and frees "
    "their pool slots, so later embedding runs do not wait for the gpu pool forever.",
)
def dead_run_recovery(context: SensorEvaluationContext) -> SkipReason:
    recovered = recover_dead_runs(context.instance)
    for run in recovered:
        context.log.warning(f"Run {run.run_id} ({run.job_name}) lost its process {run.pids}: marked failed")
    return SkipReason(f"{len(recovered)} dead runs recovered." if recovered else "No dead run.")

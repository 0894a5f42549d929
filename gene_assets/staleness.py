"""Whether an asset partition is fresh, stale or missing, and why: the one answer `gene-assets run`, `gene-assets
status`, the UI and the automation share.

Dagster's stale status decides (code version, upstream data versions, observed input files). Three checks cover what
it does not:
- a stored file deleted from storage: the partition is missing (Dagster only knows its materialization event);
- the output settings (the asset's config with its defaults, e.g. the evaluation protocol, and the resource settings
  that change outputs) differ from those recorded on the latest materialization: stale, cause "config changed";
- a fan-in of SKIP_PARTITION_DATA_VERSION_DEPENDENCY_THRESHOLD or more upstream partitions (the leaderboard reading
  every backbone × view), which Dagster leaves unchecked: stale when one of those partitions has a new data version
  since the asset's materialization.
An asset partition that is fresh but has a stale or missing upstream within the same plan is reported as fresh with
that upstream named: it runs again only if the upstream's new output differs."""

from __future__ import annotations

import json
from dataclasses import dataclass

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.data_version import (
    SKIP_PARTITION_DATA_VERSION_DEPENDENCY_THRESHOLD,
    CachingStaleStatusResolver,
    StaleCauseCategory,
    StaleStatus,
    extract_data_version_from_entry,
)
from dagster._core.definitions.observe import observe
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._time import get_current_datetime

from .sources.observations import backbone_inputs, data_directory_files
from .storage import storage_path
from .versions import output_settings

FRESH, STALE, MISSING = "fresh", "stale", "missing"


@dataclass(frozen=True)
class PartitionState:
    """One asset partition's status and its causes (empty when fresh)."""

    asset: str
    partition: str | None
    status: str
    causes: tuple[str, ...] = ()

    @property
    def needs_run(self) -> bool:
        return self.status != FRESH

    @property
    def label(self) -> str:
        return self.asset + (f"[{self.partition}]" if self.partition else "")


def observe_inputs(instance: DagsterInstance, resources: dict) -> None:
    """Record the content digest of every data-directory file and every backbone's inputs (observations.py)."""
    observe([data_directory_files], instance=instance, resources={"data_directory": resources["data_directory"]})
    observe([backbone_inputs], instance=instance)


def latest_materialization(instance: DagsterInstance, key: AssetKey, partition: str | None):
    """The record of the asset (partition)'s latest materialization, or None."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None), limit=1
    ).records
    return records[0] if records else None


def label(key: AssetKey, partition: str | None) -> str:
    return key.to_user_string() + (f"[{partition}]" if partition else "")


class Staleness:
    """Stale status of asset partitions on `instance` for the assets of `defs`; `refresh` after runs."""

    def __init__(self, defs, instance: DagsterInstance):
        self.defs, self.instance = defs, instance
        self.graph = defs.resolve_asset_graph()
        self.refresh()

    def refresh(self) -> None:
        view = AssetGraphView(
            temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
            instance=self.instance,
            asset_graph=self.graph,
        )
        self.resolver = CachingStaleStatusResolver(self.instance, self.graph, view)

    def state(self, key: AssetKey, partition: str | None, run_config: dict | None = None) -> PartitionState:
        """The partition's status under the run config it would be launched with."""
        partition = partition if self.graph.get(key).partitions_def else None
        name = key.to_user_string()
        with partition_loading_context(dynamic_partitions_store=self.instance):
            status = self.resolver.get_status(key, partition)
            if status == StaleStatus.MISSING:
                return PartitionState(name, partition, MISSING, ("never materialized",))
            record = latest_materialization(self.instance, key, partition)
            metadata = record.asset_materialization.metadata if record else {}
            stored = metadata.get("path")
            if stored is not None and not storage_path(stored.value).is_file():
                return PartitionState(name, partition, MISSING, (f"stored file deleted: {stored.value}",))
            causes = [self.describe(cause) for cause in self.resolver.get_stale_causes(key, partition)]
            causes += self.settings_changes(key, metadata, run_config)
            causes += self.fan_in_changes(key, partition, record)
        return PartitionState(name, partition, STALE if causes else FRESH, tuple(causes))

    @staticmethod
    def describe(cause) -> str:
        if cause.category == StaleCauseCategory.CODE:
            return "code changed"
        if cause.category == StaleCauseCategory.DATA and cause.dependency:
            return f"upstream data changed: {label(cause.dependency.asset_key, cause.dependency.partition_key)}"
        return cause.reason

    def settings_changes(self, key: AssetKey, metadata, run_config: dict | None) -> list[str]:
        """'config changed: …' when the output settings of the run differ from the recorded ones."""
        recorded = metadata.get("output_settings")
        if recorded is None:
            return []
        fn = self.defs.resolve_assets_def(key).op.compute_fn.decorated_fn
        op_config = ((run_config or {}).get("ops", {}).get(key.to_user_string()) or {}).get("config")
        wanted = output_settings(fn, op_config, self.defs.resources)
        before = recorded.data
        if wanted == before:
            return []
        changed = [
            f"{section}.{field}: {json.dumps(before.get(section, {}).get(field))} → {json.dumps(value)}"
            for section, values in wanted.items()
            for field, value in values.items()
            if before.get(section, {}).get(field) != value
        ]
        return [f"config changed: {', '.join(changed) or 'settings recorded differently'}"]

    def fan_in_changes(self, key: AssetKey, partition: str | None, record) -> list[str]:
        """Upstream partitions with a new data version since `record`, for the parents Dagster leaves unchecked."""
        if record is None:
            return []
        changed = []
        for parent in sorted(self.graph.get(key).parent_keys):
            parent_node = self.graph.get(parent)
            if not parent_node.is_partitioned or parent_node.is_external:
                continue
            keys = self.graph.get_parent_partition_keys_for_child(partition, parent, key).partitions_subset
            keys = list(keys.get_partition_keys())
            if len(keys) < SKIP_PARTITION_DATA_VERSION_DEPENDENCY_THRESHOLD:
                continue  # Dagster checks these itself
            for parent_partition in keys:
                newer = self.instance.get_latest_data_version_record(
                    parent, False, parent_partition, after_cursor=record.storage_id
                )
                if newer is None:
                    continue
                older = self.instance.get_latest_data_version_record(
                    parent, False, parent_partition, before_cursor=record.storage_id
                )
                if older is None or extract_data_version_from_entry(
                    older.event_log_entry
                ) != extract_data_version_from_entry(newer.event_log_entry):
                    changed.append(label(parent, parent_partition))
        return [f"upstream data changed: {', '.join(changed)}"] if changed else []

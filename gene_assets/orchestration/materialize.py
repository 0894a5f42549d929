"""`gene-assets materialize`: one in-process run of selected assets for one partition, as the UI launches it, with
the selection, the partition key and the run config checked before the run starts."""

from __future__ import annotations

import json
import typing

from dagster import AssetKey, Config, DagsterInstance, ExecuteInProcessResult, materialize
from pydantic import ValidationError

from ..cells.partitions import cell_dataset_partitions
from ..embeddings.partitions import backbone_view_key
from ..errors import UsageError
from ..staleness import latest_materialization, observe_inputs
from ..texts.views import VIEWS
from .partitions import check_partitioning, register_backbones, register_partitions


def require_view_texts(defs, instance: DagsterInstance, view: str) -> None:
    """The stored gene_texts holds `view`; else refuse before any run, with the one command that adds the view (the
    stored texts' own config, the view added)."""
    io_manager = defs.resources["io_manager"]
    if not io_manager.stored_path(["gene_texts"]).exists():
        return  # the run says that gene_texts is not materialized
    stored = set(io_manager.load(["gene_texts"], columns=["view"])["view"].unique())
    if view in stored:
        return
    record = latest_materialization(instance, AssetKey("gene_texts"), None)
    run = instance.get_run_by_id(record.run_id) if record else None
    config = (run.run_config if run else {}).get("ops", {}).get("gene_texts", {}).get("config") or {}
    config = {**config, "views": [v for v in VIEWS if v in stored | {view}]}
    command = json.dumps({"ops": {"gene_texts": {"config": config}}})
    raise UsageError(
        f"materialize: the stored gene_texts holds the views {', '.join(sorted(stored))}, not {view!r}. Add "
        f"it first: gene-assets materialize gene_texts --config-json '{command}'"
    )


def require_view_embeddings(defs, backbone: str, run_config: dict | None) -> None:
    """The gene embeddings of the view cell_embeddings reads (its `view` config, default summary) are stored; else
    refuse before any run, with the command that makes them."""
    config = ((run_config or {}).get("ops", {}).get("cell_embeddings", {}) or {}).get("config") or {}
    view = config.get("view", "summary")
    if not defs.resources["io_manager"].stored_path(["gene_embeddings"], backbone_view_key(backbone, view)).exists():
        raise UsageError(
            f"materialize: cell_embeddings of {backbone} reads its {view!r} gene embeddings, which are not stored. "
            f"Make them first: gene-assets materialize gene_embeddings --backbone {backbone} --view {view}"
        )


def parse_run_config(defs, text: str | None) -> dict | None:
    """--config-json as a run config whose entries and values each selected asset's Config accepts (unknown or
    misspelled fields, wrong types, out-of-range numbers), checked before any run starts."""
    if not text:
        return None
    try:
        run_config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"materialize: --config-json is not JSON ({exc}).") from exc
    ops = run_config.get("ops", {}) if isinstance(run_config, dict) else None
    if not isinstance(ops, dict) or set(run_config) - {"ops", "resources", "execution", "loggers"}:
        raise UsageError('materialize: --config-json must look like {"ops": {"ASSET": {"config": {...}}}}.')
    assets = {k.to_user_string() for k in defs.resolve_asset_graph().materializable_asset_keys}
    for name, entry in ops.items():
        if name not in assets:
            raise UsageError(
                f"materialize: --config-json configures {name!r}, which is not an asset; assets: "
                f"{', '.join(sorted(assets))}."
            )
        fn = defs.resolve_assets_def(AssetKey(name)).op.compute_fn.decorated_fn
        config_class = typing.get_type_hints(fn).get("config")
        if config_class is None or not issubclass(config_class, Config):
            raise UsageError(f"materialize: {name} takes no config; drop it from --config-json.")
        fields = entry.get("config", {}) if isinstance(entry, dict) else None
        if not isinstance(fields, dict):
            raise UsageError(f'materialize: --config-json: give {name}\'s config as {{"config": {{"FIELD": VALUE}}}}.')
        unknown = sorted(set(fields) - set(config_class.model_fields))
        if unknown:
            raise UsageError(
                f"materialize: --config-json: {name} has no config field {', '.join(map(repr, unknown))}; "
                f"its fields: {', '.join(config_class.model_fields)}."
            )
        try:
            config_class(**fields)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e['input']!r})" for e in exc.errors()
            )
            raise UsageError(f"materialize: --config-json: {name} config {problems}.") from None
    return run_config


def materialize_selection(
    defs,
    instance: DagsterInstance,
    selection: list[str],
    partition: str | None,
    config_json: str | None = None,
    backbone: str | None = None,
    dataset: str | None = None,
) -> ExecuteInProcessResult:
    """One in-process run of the selected assets (and their checks) for one partition, as the UI would launch it; a
    new `backbone` or `dataset` of the partition is registered first, and the input files are observed."""
    keys, partition_values = check_partitioning(defs, selection, partition)
    if "view" in partition_values and AssetKey("gene_texts") not in keys:
        require_view_texts(defs, instance, partition_values["view"])
    run_config = parse_run_config(defs, config_json)
    if AssetKey("cell_embeddings") in keys:
        require_view_embeddings(defs, partition_values["backbone"], run_config)
    if backbone:
        register_backbones(instance, [backbone])
    if dataset:
        register_partitions(instance, cell_dataset_partitions.name, [dataset])
    observe_inputs(instance, defs.resources)  # the run records the input files' current digests as its provenance
    return materialize(
        [*defs.assets, *defs.asset_checks],
        selection=selection,
        partition_key=partition,
        instance=instance,
        resources=defs.resources,
        run_config=run_config,
        raise_on_error=False,
    )

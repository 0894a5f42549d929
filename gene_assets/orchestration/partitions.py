"""Dynamic partitions (backbones, cell datasets) registered on the instance, and partition keys checked against the
selected assets before any run starts."""

from __future__ import annotations

from pathlib import Path

from dagster import AssetSelection, DagsterInstance, DagsterInvalidSubsetError, MultiPartitionsDefinition

from ..cells.partitions import backbone_dataset_key
from ..embeddings.backbone import PARTITION_KEY_PATTERN, Backbone
from ..embeddings.partitions import backbone_partitions, backbone_view_key
from ..embeddings.registry import all_backbones, get_backbone
from ..errors import UsageError
from ..texts.views import VIEWS


def register_partitions(instance: DagsterInstance, dimension: str, names: list[str]) -> list[str]:
    """Add keys to a dynamic partition dimension; returns the ones that were new."""
    known = set(instance.get_dynamic_partitions(dimension))
    new = [n for n in names if n not in known]
    if new:
        instance.add_dynamic_partitions(dimension, new)
    return new


def register_backbones(instance: DagsterInstance, names: list[str]) -> list[str]:
    """Add backbones as partitions; returns the ones that were new."""
    for name in names:
        get_backbone(name)
    return register_partitions(instance, backbone_partitions.name, names)


def add_backbone(instance: DagsterInstance, backbone: Backbone) -> int | None:
    """Write the entry to the persisted registry (after checking a precomputed file) and add its partition; returns
    the number of vectors of a precomputed file."""
    from ..embeddings.discovered import DiscoveredRegistry
    from ..embeddings.precomputed import read_gene_vectors

    vectors = None
    if backbone.kind_spec.from_file:
        symbols, _ = read_gene_vectors(Path(backbone.source_path or ""), backbone.dims, backbone.symbol_column)
        vectors = len(symbols)
    elif not backbone.model_id:
        raise UsageError("add-backbone: --model-id is needed for a sentence_transformers backbone.")
    if backbone.name in all_backbones():
        raise UsageError(f"add-backbone: {backbone.name!r} is already a backbone; choose another name.")
    DiscoveredRegistry().add([backbone])
    register_backbones(instance, [backbone.name])
    return vectors


def partition_key(partition: str | None, backbone: str | None, view: str | None, dataset: str | None) -> str | None:
    """A partition key as given, or built from a backbone with a view or a dataset, or a dataset alone."""
    if partition:
        return partition
    if not backbone:
        return dataset
    if bool(view) == bool(dataset):
        raise UsageError("materialize: --backbone needs one of --view (gene assets) or --dataset (cells).")
    return backbone_view_key(backbone, view) if view else backbone_dataset_key(backbone, dataset)


def check_partitioning(defs, selection: list[str], partition: str | None) -> tuple[set, dict[str, str]]:
    """The selected assets exist, share one partitioning, and get a partition key exactly when they have one;
    returns the selected asset keys and the partition's {dimension: value}."""
    graph = defs.resolve_asset_graph()
    try:
        keys = AssetSelection.from_coercible(selection).resolve(graph)
    except DagsterInvalidSubsetError as exc:
        raise UsageError(
            f"materialize: {str(exc).split('. ')[0]}. Assets: "
            f"{', '.join(sorted(k.to_user_string() for k in graph.get_all_asset_keys()))}."
        ) from exc
    partitioned = {k.to_user_string(): graph.get(k).partitions_def for k in keys if graph.get(k).partitions_def}
    kinds = {str(p) for p in partitioned.values()}
    if len(kinds) > 1:
        raise UsageError(
            "materialize: the selection mixes partitionings ("
            + "; ".join(f"{name}: {' '.join(str(p).split())}" for name, p in sorted(partitioned.items()))
            + "). Materialize assets that share one partitioning per run."
        )
    if partitioned and not partition:
        raise UsageError(
            f"materialize: {', '.join(sorted(partitioned))} "
            f"{'is' if len(partitioned) == 1 else 'are'} partitioned: give --backbone with --view or "
            "--dataset, --dataset alone, or --partition."
        )
    if partition and not partitioned:
        raise UsageError("materialize: none of the selected assets is partitioned; drop the partition.")
    return keys, check_partition_key(next(iter(partitioned.values())), partition) if partition else {}


def check_partition_key(partitions_def, partition) -> dict[str, str]:
    """A partition key names a known backbone, a text view and a dataset name that can be a partition key."""
    if isinstance(partitions_def, MultiPartitionsDefinition):
        dimensions = partitions_def.partition_dimension_names
        parts = str(partition).split("|")
        if len(parts) != len(dimensions):
            raise UsageError(
                f"materialize: partition {str(partition)!r} is not a {' | '.join(dimensions)} key: give "
                f"{'|'.join(d.upper() for d in dimensions)}, e.g. 'bag-of-words|summary', or use --backbone "
                "with --view or --dataset."
            )
        values = dict(zip(dimensions, parts))
    else:
        values = {partitions_def.name: str(partition)}
    if "backbone" in values:
        get_backbone(values["backbone"])
    if "view" in values and values["view"] not in VIEWS:
        raise UsageError(f"materialize: {values['view']!r} is not a text view; views: {', '.join(VIEWS)}.")
    for dimension in set(values) - {"backbone", "view"}:
        if not PARTITION_KEY_PATTERN.match(values[dimension]):
            raise UsageError(
                f"materialize: {values[dimension]!r} is not a valid {dimension} name: use letters, digits, "
                "'.', '_' or '-'."
            )
    return values

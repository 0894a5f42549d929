"""Partitions of the per-backbone assets: backbone (dynamic) × text view (static)."""

from dagster import (
    DynamicPartitionsDefinition,
    MultiPartitionKey,
    MultiPartitionsDefinition,
    StaticPartitionsDefinition,
)

from ..texts.views import VIEWS

backbone_partitions = DynamicPartitionsDefinition(name="backbone")
view_partitions = StaticPartitionsDefinition(list(VIEWS))
backbone_view_partitions = MultiPartitionsDefinition({"backbone": backbone_partitions, "view": view_partitions})


def backbone_view_key(backbone: str, view: str) -> MultiPartitionKey:
    return MultiPartitionKey({"backbone": backbone, "view": view})

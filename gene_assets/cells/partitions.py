"""Partitions of the cell assets: cell dataset (dynamic: built-in and user datasets) and backbone × cell dataset."""

from dagster import DynamicPartitionsDefinition, MultiPartitionKey, MultiPartitionsDefinition

from ..embeddings.partitions import backbone_partitions

cell_dataset_partitions = DynamicPartitionsDefinition(name="cell_dataset")
backbone_dataset_partitions = MultiPartitionsDefinition(
    {"backbone": backbone_partitions, "cell_dataset": cell_dataset_partitions}
)


def backbone_dataset_key(backbone: str, dataset: str) -> MultiPartitionKey:
    return MultiPartitionKey({"backbone": backbone, "cell_dataset": dataset})

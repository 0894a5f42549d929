"""Partitions of the cell assets: cell dataset (dynamic: built-in and user datasets), backbone × cell dataset, and
study pair (two datasets of one tissue, for the batch effect)."""

from dagster import (
    DynamicPartitionsDefinition,
    MultiPartitionKey,
    MultiPartitionsDefinition,
    StaticPartitionsDefinition,
)

from ..embeddings.partitions import backbone_partitions
from .batch import STUDY_PAIRS

cell_dataset_partitions = DynamicPartitionsDefinition(name="cell_dataset")
backbone_dataset_partitions = MultiPartitionsDefinition(
    {"backbone": backbone_partitions, "cell_dataset": cell_dataset_partitions}
)
study_pair_partitions = StaticPartitionsDefinition(list(STUDY_PAIRS))


def backbone_dataset_key(backbone: str, dataset: str) -> MultiPartitionKey:
    return MultiPartitionKey({"backbone": backbone, "cell_dataset": dataset})

"""gene_task_labels (mapped once) and gene_task_results (per backbone × view)."""


import pandas as pd
from dagster import AssetExecutionContext, Config, MetadataValue, asset

from ..catalog.resolver import GeneResolver
from ..embeddings.partitions import backbone_view_partitions
from ..embeddings.table import GeneEmbeddings
from ..sources.data_directory import DataDirectory
from .evaluation import cross_validated_auc
from .geneformer import GENEFORMER_TASKS, map_binary_task_labels

LABEL_COLUMNS = ["task", "label", "ensembl_id", "gene_name"]


@asset(group_name="tasks", compute_kind="pandas")
def gene_task_labels(context: AssetExecutionContext, gene_catalog: pd.DataFrame, data_directory: DataDirectory) -> pd.DataFrame:
    """Binary labels per task, mapped to Entrez ids through the catalog (Ensembl id, then symbol)."""
    path = data_directory.file("geneformer_tasks")
    labels = pd.read_csv(path, dtype=str)
    missing = [c for c in LABEL_COLUMNS if c not in labels.columns]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}; expected {LABEL_COLUMNS}.")
    resolver = GeneResolver(gene_catalog)
    frames, summary = [], {}
    for task in GENEFORMER_TASKS.values():
        mapped, counts = map_binary_task_labels(labels, task, resolver)
        frames.append(mapped)
        summary[task.name] = counts
    context.add_output_metadata(
        {"tasks": MetadataValue.md(pd.DataFrame(summary).T.to_markdown()), "label_file": str(path)}
    )
    return pd.concat(frames, ignore_index=True)[["task", "entrez_id", "label"]]


class TaskEvaluationConfig(Config):
    n_splits: int = 5
    seed: int = 0


@asset(group_name="tasks", partitions_def=backbone_view_partitions, compute_kind="scikit-learn")
def gene_task_results(
    context: AssetExecutionContext,
    config: TaskEvaluationConfig,
    gene_embeddings: GeneEmbeddings,
    gene_task_labels: pd.DataFrame,
) -> pd.DataFrame:
    """ROC-AUC per task, classifier and fold; genes without an embedding are dropped and counted."""
    keys = context.partition_key.keys_by_dimension
    embedded = set(gene_embeddings.genes["entrez_id"])
    frames = []
    for task_name, labels in gene_task_labels.groupby("task", sort=False):
        usable = labels[labels["entrez_id"].isin(embedded)]
        X = gene_embeddings.aligned(usable["entrez_id"])
        folds = cross_validated_auc(X, usable["label"].to_numpy(), n_splits=config.n_splits, seed=config.seed)
        frames.append(
            folds.assign(
                task=task_name,
                n_genes=len(usable),
                n_positive=int(usable["label"].sum()),
                n_negative=int((usable["label"] == 0).sum()),
                n_without_embedding=len(labels) - len(usable),
            )
        )
    results = pd.concat(frames, ignore_index=True).assign(backbone=keys["backbone"], view=keys["view"])
    summary = results.groupby(["task", "classifier"])["roc_auc"].agg(["mean", "std"]).round(3)
    context.add_output_metadata(
        {"roc_auc": MetadataValue.md(summary.to_markdown()),
         "genes_without_embedding": int(results.drop_duplicates("task")["n_without_embedding"].sum())}
    )
    return results

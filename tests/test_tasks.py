"""Task label mapping and the cross-validation engine."""

import numpy as np
import pandas as pd
import pytest

from gene_assets.catalog.resolver import GeneResolver
from gene_assets.tasks.evaluation import cross_validated_auc
from gene_assets.tasks.geneformer import GENEFORMER_TASKS, TaskLabelError, map_binary_task_labels

CATALOG = pd.DataFrame(
    {"entrez_id": [1, 2, 3, 4, 5], "symbol": ["A", "B", "C", "D", "E"], "aliases": [None] * 5,
     "ensembl_ids": ["ENSG1", "ENSG2", "ENSG3", "ENSG4", None]}
)


def labels(rows):
    return pd.DataFrame(rows, columns=["task", "label", "ensembl_id", "gene_name"])


def test_mapping_drops_conflicts_and_counts_unmapped():
    task = GENEFORMER_TASKS["bivalent_vs_lys4_only"]
    table = labels([
        ("bivalent_vs_lys4_only", "bivalent", "ENSG1", "A"),
        ("bivalent_vs_lys4_only", "bivalent", "ENSG2", "B"),
        ("bivalent_vs_lys4_only", "lys4_only", "ENSG2", "B"),  # in both classes
        ("bivalent_vs_lys4_only", "lys4_only", "ENSG3", "C"),
        ("bivalent_vs_lys4_only", "lys4_only", "ENSG99", "E"),  # Ensembl unknown, symbol maps
        ("bivalent_vs_lys4_only", "lys4_only", "ENSG98", "ZZZ"),  # maps nowhere
    ])
    mapped, counts = map_binary_task_labels(table, task, GeneResolver(CATALOG))
    assert sorted(mapped["entrez_id"]) == [1, 3, 5]
    assert counts == {"n_source_genes": 5, "n_unmapped": 1, "n_conflicting": 1, "n_mapped": 3, "n_positive": 1, "n_negative": 2}


def test_mapping_with_one_class_left_is_an_error():
    task = GENEFORMER_TASKS["bivalent_vs_lys4_only"]
    table = labels([("bivalent_vs_lys4_only", "bivalent", "ENSG1", "A"), ("bivalent_vs_lys4_only", "lys4_only", "ENSG77", "Q")])
    with pytest.raises(TaskLabelError, match="only one class"):
        map_binary_task_labels(table, task, GeneResolver(CATALOG))


def test_real_task_labels_map_to_the_catalog(data_dir):
    real = pd.read_csv(data_dir / "gene_tasks/geneformer/geneformer_gene_tasks_long.csv", dtype=str)
    catalog = pd.DataFrame({"entrez_id": range(len(real)), "symbol": real["gene_name"].fillna("").to_numpy(),
                            "aliases": None, "ensembl_ids": real["ensembl_id"].to_numpy()}).drop_duplicates("ensembl_ids")
    mapped, counts = map_binary_task_labels(real, GENEFORMER_TASKS["dosage_sensitive_tfs"], GeneResolver(catalog))
    assert counts["n_positive"] == 122 and counts["n_negative"] == 368


def test_cv_separable_data_scores_one_and_noise_scores_near_half():
    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 100)
    separable = rng.normal(size=(200, 8)) + y[:, None] * 4
    folds = cross_validated_auc(separable, y)
    assert set(folds["classifier"]) == {"logistic_regression", "random_forest"} and len(folds) == 10
    assert folds["roc_auc"].min() > 0.99
    noise = cross_validated_auc(rng.normal(size=(200, 8)), y)
    assert 0.35 < noise["roc_auc"].mean() < 0.65


def test_cv_is_reproducible_with_a_fixed_seed():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(60, 5)), np.array([0, 1] * 30)
    assert cross_validated_auc(X, y, seed=3).equals(cross_validated_auc(X, y, seed=3))


def test_cv_needs_enough_genes_per_class():
    with pytest.raises(TaskLabelError, match="at least 5 genes per class"):
        cross_validated_auc(np.zeros((8, 2)), np.array([0, 0, 0, 0, 0, 1, 1, 1]))

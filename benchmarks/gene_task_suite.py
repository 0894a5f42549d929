"""Gene-task suite: every task the four results assets score, for one 1,024-dim backbone (bag-of-words summary
vectors) on the all-genes universe. Baseline: the straightforward protocol, one scikit-learn fit per task (per
label of a multilabel task) and fold, through cross_validate on built features (as the gene-property benchmark runs its probes), with default
forests. Project: the results assets' engine, bootstrap replicates included."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from dagster import DagsterInstance, materialize
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold, StratifiedKFold, cross_validate

from gene_assets.definitions import all_asset_checks, all_assets
from gene_assets.embeddings.partitions import backbone_view_key
from gene_assets.orchestration.partitions import register_backbones
from gene_assets.parallel import run_units, worker_count
from gene_assets.resources import temporary_resources
from gene_assets.results import FeatureDraws, GeneMatrix
from gene_assets.tasks.assets import (
    TaskEvaluationConfig,
    label_matrix,
    labels_of,
    restrict,
    score_task,
    task_genes,
)
from gene_assets.tasks.evaluation import Protocol
from gene_assets.tasks.gene_properties import GENE_PROPERTY_TASKS
from gene_assets.tasks.gene_type import GENE_TYPE_TASK
from gene_assets.tasks.geneformer import GENEFORMER_TASKS
from gene_assets.tasks.interaction import GGI_TASK
from gene_assets.tasks.spec import GeneTask

from .harness import Row, median, timed_rounds
from .multilabel_probe import mean_auc, per_label_probabilities

BACKBONE, VIEW, UNIVERSE = "bag-of-words", "summary", "all_genes"
FAMILIES = {
    "geneformer_labels": GENEFORMER_TASKS,
    "gene_type_labels": [GENE_TYPE_TASK],
    "gene_property_labels": GENE_PROPERTY_TASKS,
    "gene_interaction_pairs": [GGI_TASK],
}
SOURCES = ["gene_catalog", "gene_summaries", "gene_texts", "gene_universes"]
REPEATS = 2


def suite_inputs() -> tuple[FeatureDraws, list[tuple[GeneTask, pd.DataFrame]]]:
    """The backbone's embeddings and every task's labels inside the universe, materialized from the real data into
    a temporary instance and storage."""
    with tempfile.TemporaryDirectory() as scratch, DagsterInstance.ephemeral() as instance:
        resources = temporary_resources(
            Path(scratch), release_repo=Path(scratch) / "repo", remote=Path(scratch) / "remote"
        )
        everything = [*all_assets, *all_asset_checks]
        sources = materialize(
            everything,
            selection=[*SOURCES, *FAMILIES],
            instance=instance,
            resources=resources,
            run_config={"ops": {"gene_texts": {"config": {"views": [VIEW]}}}},
        )
        register_backbones(instance, [BACKBONE])
        embedded = materialize(
            everything,
            selection=["gene_embeddings"],
            instance=instance,
            resources=resources,
            partition_key=backbone_view_key(BACKBONE, VIEW),
        )
        features = FeatureDraws(embedded.output_for_node("gene_embeddings"), draws=1)
        universes = sources.output_for_node("gene_universes")
        genes = set(universes.loc[universes[UNIVERSE], "entrez_id"]) & set(features.index)
        tasks = [
            (task, restrict(task, labels_of(task, sources.output_for_node(family)), genes)[0])
            for family, family_tasks in FAMILIES.items()
            for task in family_tasks
        ]
    return features, tasks


def straightforward(task: GeneTask, labels: pd.DataFrame, Z: GeneMatrix, protocol: Protocol) -> dict:
    """{(classifier, metric): estimate} from plain scikit-learn fits of the suite's models, one per fold, on the
    backbone's vectors Z."""
    if task.kind == "pairs":
        train, test = labels[labels["split"] == "train"], labels[labels["split"] == "test"]
        built = {
            name: Z.rows(part["entrez_a"]) + Z.rows(part["entrez_b"])
            for name, part in (("train", train), ("test", test))
        }
        models = {
            "logistic_regression": LogisticRegression(max_iter=5000),  # one fit: the forest takes both cores
            "random_forest": RandomForestClassifier(random_state=protocol.seed, n_jobs=-1),
        }
        return {
            (name, "roc_auc"): roc_auc_score(
                test["label"], model.fit(built["train"], train["label"]).predict_proba(built["test"])[:, 1]
            )
            for name, model in models.items()
        }
    if task.kind == "multilabel":
        genes, Y = label_matrix(task, labels)
        folds = list(KFold(protocol.n_splits, shuffle=True, random_state=protocol.seed).split(Z.rows(genes)))
        probabilities = per_label_probabilities(Z.rows(genes), Y, folds)
        return {("logistic_regression", "mean_roc_auc"): mean_auc(Y, folds, probabilities)}
    X = Z.rows(labels["entrez_id"])
    if task.kind == "binary":
        y = (labels["label"].to_numpy() == task.positive).astype(int)
        models = {
            "logistic_regression": LogisticRegression(max_iter=5000),
            "random_forest": RandomForestClassifier(random_state=protocol.seed),
        }
        scoring = {"roc_auc": "roc_auc"}
    else:
        y = pd.factorize(labels["label"], sort=True)[0]
        models = {"logistic_regression": LogisticRegression(max_iter=5000)}
        scoring = {"balanced_accuracy": "balanced_accuracy", "macro_f1": "f1_macro", "mcc": "matthews_corrcoef"}
    folds = list(StratifiedKFold(protocol.n_splits, shuffle=True, random_state=protocol.seed).split(X, y))
    estimates = {}
    for name, model in models.items():
        scores = cross_validate(model, X, y, cv=folds, scoring=scoring, n_jobs=-1)
        estimates.update({(name, metric): float(np.mean(scores[f"test_{metric}"])) for metric in scoring})
    return estimates


def gene_task_suite() -> list[Row]:
    features, tasks = suite_inputs()
    protocol = Protocol()
    Z = features.genes(0, features.index)
    estimates: dict[str, dict] = {"baseline": {}, "project": {}}

    def baseline():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence and constant-feature warnings of the plain fits
            for task, labels in tasks:
                for key, value in straightforward(task, labels, Z, protocol).items():
                    estimates["baseline"][(task.name, *key)] = value

    def project():
        engine = TaskEvaluationConfig().evaluation_protocol()
        units = ((task, labels, features.genes(0, task_genes(task, labels)), engine, False) for task, labels in tasks)
        for (task, _), ((rows, _), _) in zip(tasks, run_units(score_task, units, worker_count(), engine.threads)):
            for row in rows:
                estimates["project"][(task.name, row["classifier"], row["metric"])] = row["estimate"]

    seconds = timed_rounds({"baseline": baseline, "project": project}, REPEATS)
    base, fast = median(seconds["baseline"]), median(seconds["project"])
    gaps = {key: abs(estimates["baseline"][key] - estimates["project"][key]) for key in estimates["project"]}
    auc_gaps = {key: gap for key, gap in gaps.items() if "roc_auc" in key[2]}
    worst = max(auc_gaps, key=auc_gaps.get)
    other = max(gap for key, gap in gaps.items() if key not in auc_gaps)
    return [
        Row(
            comparison=f"gene-task suite, {len(tasks)} tasks ({len(auc_gaps)} AUCs), {BACKBONE} {Z.matrix.shape[1]} dims, "
            f"{len(features.index):,} genes, {UNIVERSE} universe",
            case="one scikit-learn fit per task and fold (cross_validate, built pair features, default forests) vs "
            "the results assets' engine with 1,000 bootstrap replicates",
            unit="s",
            baseline=base,
            project=fast,
            speedup=base / fast,
            detail=f"max |ΔAUC| {auc_gaps[worst]:.4f} ({worst[0]}, {worst[1]}); max |Δ| of other metrics {other:.4f}",
        )
    ]

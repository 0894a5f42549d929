"""Multilabel probe: one scikit-learn LogisticRegression(max_iter=5000) per label and fold (the gene-property
benchmark's probe) against the engine's lockstep fit of every label of a fold (tasks/linear_probes.py), on one real
multilabel task: its gene sets, genes with a RefSeq summary (else symbol and full name) as text, optionally a random
sample of them (the task's labels that keep 20 genes or more in it).

    python -m benchmarks multilabel_probe
    (MULTILABEL_BENCH_TASK=omim_disease, MULTILABEL_BENCH_GENES=1000, MULTILABEL_BENCH_BACKBONE=bag-of-words)

Both run as a worker process runs them, on one BLAS thread, on the task's 5 folds."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold
from threadpoolctl import threadpool_limits

from gene_assets.catalog.assets import read_ncbi_gene_info
from gene_assets.catalog.resolver import GeneResolver
from gene_assets.settings import default_data_dir
from gene_assets.sources.data_directory import DataDirectory, read_data_csv
from gene_assets.tasks.assets import label_matrix, labels_of, restrict
from gene_assets.tasks.evaluation import column_aucs
from gene_assets.tasks.gene_properties import GENE_PROPERTY_TASKS, gene_set_labels, hgnc_group_labels
from gene_assets.tasks.linear_probes import label_logistic_fold_probabilities

from .gene_type_probe import vectors
from .harness import Row, median, timed_rounds

GENE_SETS = {
    "kegg_pathways": "kegg_gene_sets",
    "go_bp_experimental": "go_bp_gene_sets",
    "omim_disease": "omim_gene_sets",
}
REPEATS = 1


def multilabel_task(name: str, n_genes: int | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """A real multilabel task on the genes with text (a random sample of n_genes of them): their (entrez_id, text)
    rows and gene × label membership."""
    data = DataDirectory(path=default_data_dir())
    resolver = GeneResolver(read_ncbi_gene_info(data.file("ncbi_gene_info")))
    if name == "hgnc_groups":
        path = data.file("hgnc_gene_groups")
        labels, _ = hgnc_group_labels(read_data_csv(path, dtype=str), resolver, path)
    else:
        labels, _ = gene_set_labels(data.file(GENE_SETS[name]), name, resolver)
    task = next(t for t in GENE_PROPERTY_TASKS if t.name == name)
    summaries = pd.read_parquet(
        data.file("refseq_summaries"), columns=["entrez_id", "symbol", "full_name", "refseq_summary"]
    )
    summaries = summaries.drop_duplicates("entrez_id").set_index("entrez_id")
    inside, _ = restrict(task, labels_of(task, labels), set(summaries.index))
    genes, Y = label_matrix(task, inside)
    if n_genes is not None and n_genes < len(genes):
        sample = np.sort(np.random.default_rng(0).choice(len(genes), n_genes, replace=False))
        genes, Y = genes[sample], Y[sample]
        Y = Y[:, Y.sum(0) >= task.label_size_range[0]]
    rows = summaries.loc[genes]
    text = rows["refseq_summary"].fillna(rows["symbol"] + " " + rows["full_name"].fillna(""))
    return pd.DataFrame({"entrez_id": genes, "text": text.to_numpy()}), Y


def per_label_probabilities(X: np.ndarray, Y: np.ndarray, folds: list) -> list[np.ndarray]:
    """Test-fold probabilities of LogisticRegression(max_iter=5000) fitted on each label and training fold."""
    return [
        np.column_stack(
            [
                LogisticRegression(max_iter=5000).fit(X[train], Y[train, j]).predict_proba(X[test])[:, 1]
                for j in range(Y.shape[1])
            ]
        )
        for train, test in folds
    ]


def mean_auc(Y: np.ndarray, folds: list, probabilities: list[np.ndarray]) -> float:
    per_fold = np.array([column_aucs(Y[test], p) for (_, test), p in zip(folds, probabilities)])
    return float(np.nanmean(np.nanmean(per_fold, axis=0)))


def multilabel_probe() -> list[Row]:
    name = os.environ.get("MULTILABEL_BENCH_TASK", "omim_disease")
    backbone = os.environ.get("MULTILABEL_BENCH_BACKBONE", "bag-of-words")
    n_genes = int(os.environ.get("MULTILABEL_BENCH_GENES", "1000")) or None  # 0: every gene
    texts, Y = multilabel_task(name, n_genes)
    X = vectors(backbone, texts[["text"]]).astype(np.float64)
    folds = list(KFold(5, shuffle=True, random_state=0).split(X))
    probabilities, steps = {}, {}

    def per_label():
        with threadpool_limits(1):
            probabilities["baseline"] = per_label_probabilities(X, Y, folds)

    def joint():
        with threadpool_limits(1):
            probabilities["project"], steps["warm"] = label_logistic_fold_probabilities(X, Y, folds)

    seconds = timed_rounds({"baseline": per_label, "project": joint}, REPEATS)
    with threadpool_limits(1):  # steps of cold-started fits, which the load does not change
        steps["cold"] = [label_logistic_fold_probabilities(X, Y, [fold])[1][0] for fold in folds]
    gap = max(np.abs(a - b).max() for a, b in zip(probabilities["baseline"], probabilities["project"]))
    aucs = {k: mean_auc(Y, folds, v) for k, v in probabilities.items()}
    base, fast = median(seconds["baseline"]), median(seconds["project"])
    return [
        Row(
            comparison=f"{name}, {len(Y):,} genes{' (random sample)' if n_genes else ''} × {Y.shape[1]} labels, "
            f"{backbone} {X.shape[1]} dims, 5 folds",
            case="LogisticRegression(max_iter=5000) per label and fold vs every label's own L-BFGS in lockstep "
            "(shared eigenbasis, per-label curvature preconditioner), warm-started across folds, 1 thread",
            unit="s",
            baseline=base,
            project=fast,
            speedup=base / fast,
            detail=f"mean AUC {aucs['baseline']:.6f} vs {aucs['project']:.6f}; max |Δ probability| {gap:.1e}; "
            f"lockstep L-BFGS steps per fold {steps['warm']} warm-started vs {steps['cold']} from zero",
        )
    ]

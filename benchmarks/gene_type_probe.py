"""Gene-type probe: what the published multinomial logistic regression costs against the ridge probe it replaces,
and how close the engine's fit is to scikit-learn's, on a stratified sample of the real gene functionality task
(GenePT's gene_info_table mapped through NCBI gene_info; RefSeq summary, else symbol and full name, as text).

    python -m benchmarks gene_type_probe       (GENE_TYPE_BENCH_GENES=4000, GENE_TYPE_BENCH_BACKBONES=bag-of-words,tfidf)

Each probe runs as a worker process runs it: one BLAS thread, 5 stratified folds, 1,000 bootstrap replicates."""

from __future__ import annotations

import os
from functools import partial

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from gene_assets.catalog.assets import read_ncbi_gene_info
from gene_assets.catalog.resolver import GeneResolver
from gene_assets.embeddings.device import Placement
from gene_assets.embeddings.encoders import load_encoder
from gene_assets.embeddings.registry import get_backbone
from gene_assets.settings import default_data_dir
from gene_assets.sources.data_directory import DataDirectory, read_data_csv
from gene_assets.tasks.assets import restrict
from gene_assets.tasks.evaluation import Protocol, evaluate_multiclass
from gene_assets.tasks.gene_type import GENE_TYPE_TASK, map_gene_type_labels
from gene_assets.tasks.linear_probes import logistic_fold_probabilities

from .harness import Row, median, timed_rounds

REPEATS = 1


def gene_type_sample(n_genes: int) -> tuple[pd.DataFrame, pd.Series]:
    """A class-stratified random sample of the task's genes (15 classes) and their texts."""
    data = DataDirectory(path=default_data_dir())
    catalog = read_ncbi_gene_info(data.file("ncbi_gene_info"))
    labels, _ = map_gene_type_labels(read_data_csv(data.file("gene_type_table"), dtype=str), GeneResolver(catalog))
    summaries = pd.read_parquet(
        data.file("refseq_summaries"), columns=["entrez_id", "symbol", "full_name", "refseq_summary"]
    )
    summaries = summaries.drop_duplicates("entrez_id").set_index("entrez_id")
    inside, _ = restrict(GENE_TYPE_TASK, labels, set(summaries.index))
    fraction = min(1.0, n_genes / len(inside))
    sample = inside.groupby("label", group_keys=False).sample(frac=fraction, random_state=0).sort_values("entrez_id")
    genes = summaries.loc[sample["entrez_id"]]
    text = genes["refseq_summary"].fillna(genes["symbol"] + " " + genes["full_name"].fillna(""))
    return pd.DataFrame({"entrez_id": sample["entrez_id"].to_numpy(), "text": text.to_numpy()}), sample[
        "label"
    ].reset_index(drop=True)


def vectors(backbone_name: str, texts: pd.DataFrame) -> np.ndarray:
    """The backbone's vectors of the texts (sentence-transformers models at fp32)."""
    backbone = get_backbone(backbone_name)
    placement = Placement("cpu", "fp32", backbone.fast_path.token_budget) if backbone.kind_spec.on_device else None
    return load_encoder(backbone, placement).embed(texts)


def probe_run(which: str, X: np.ndarray, labels, results: dict) -> None:
    """The gene-type task scored with one multiclass probe on one thread; its rows go into `results[which]`."""
    with threadpool_limits(1):
        results[which] = evaluate_multiclass(GENE_TYPE_TASK, X, labels, Protocol(multiclass_probes=(which,)))[0]


def gene_type_probe() -> list[Row]:
    texts, labels = gene_type_sample(int(os.environ.get("GENE_TYPE_BENCH_GENES", "4000")))
    rows = []
    for name in os.environ.get("GENE_TYPE_BENCH_BACKBONES", "bag-of-words,tfidf").split(","):
        X = vectors(name, texts)
        results = {}
        probes = {p: partial(probe_run, p, X, labels, results) for p in ("ridge", "logistic_regression")}
        seconds = timed_rounds(probes, REPEATS)
        ridge, logistic = median(seconds["ridge"]), median(seconds["logistic_regression"])
        metrics = {p: {r["metric"]: r for r in rows_} for p, rows_ in results.items()}
        cells = "; ".join(
            f"{m} LR {metrics['logistic_regression'][m]['estimate']:.3f} "
            f"[{np.percentile(metrics['logistic_regression'][m]['bootstrap'], 2.5):.3f}, "
            f"{np.percentile(metrics['logistic_regression'][m]['bootstrap'], 97.5):.3f}] vs ridge "
            f"{metrics['ridge'][m]['estimate']:.3f}"
            for m in ("balanced_accuracy", "macro_f1", "mcc")
        )
        rows.append(
            Row(
                comparison=f"gene-type task, {len(labels):,} genes (stratified sample, 15 classes), {name} {X.shape[1]} dims",
                case="ridge probe (the former default) vs the published multinomial logistic regression, 5 folds, 1 thread",
                unit="s",
                baseline=ridge,
                project=logistic,
                speedup=ridge / logistic,
                detail=cells,
            )
        )
        if name == "bag-of-words":
            rows.append(plain_fit_row(X, labels, name))
    return rows


def plain_fit_row(X: np.ndarray, labels: pd.Series, name: str) -> Row:
    """scikit-learn's LogisticRegression(max_iter=5000) fitted afresh on each fold vs the engine's warm-started fits,
    on one thread."""
    names, y = np.unique(labels.to_numpy(), return_inverse=True)
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(X, y))
    probabilities = {}

    def plain():
        with threadpool_limits(1):
            probabilities["baseline"] = [
                LogisticRegression(max_iter=5000).fit(X[train], y[train]).predict_proba(X[test])
                for train, test in folds
            ]

    def project():
        with threadpool_limits(1):
            probabilities["project"] = logistic_fold_probabilities(X, y, folds)

    seconds = timed_rounds({"baseline": plain, "project": project}, REPEATS)
    with threadpool_limits(1):  # L-BFGS steps, which the load does not change: fresh fits vs the engine's warm starts
        fresh = sum(LogisticRegression(max_iter=5000).fit(X[train], y[train]).n_iter_[0] for train, _ in folds)
        warm = LogisticRegression(max_iter=5000, warm_start=True)
        started = sum(warm.fit(X[train], y[train]).n_iter_[0] for train, _ in folds)
    accuracy = {
        k: np.mean([balanced_accuracy_score(y[test], p.argmax(1)) for (_, test), p in zip(folds, v)])
        for k, v in probabilities.items()
    }
    agree = np.mean(
        np.concatenate(
            [a.argmax(1) == b.argmax(1) for a, b in zip(probabilities["baseline"], probabilities["project"])]
        )
    )
    return Row(
        comparison=f"multinomial logistic regression, gene-type task, {len(y):,} genes, {name} {X.shape[1]} dims",
        case="LogisticRegression(max_iter=5000) fitted afresh per fold vs warm-started from the previous fold",
        unit="s",
        baseline=median(seconds["baseline"]),
        project=median(seconds["project"]),
        speedup=median(seconds["baseline"]) / median(seconds["project"]),
        detail=f"L-BFGS steps over the folds {fresh} vs {started}; balanced accuracy {accuracy['baseline']:.4f} vs "
        f"{accuracy['project']:.4f}; same predicted class for {agree:.2%} of genes",
    )

"""Unseen-perturbation protocol: K-fold CV over perturbations, metrics per held-out perturbation, and bootstrap
replicates that resample held-out perturbations with (seed, task, fold) seeds, so that replicate b of every
backbone and of the mean-signature baseline is the same draw of perturbations (paired)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import KFold
from threadpoolctl import threadpool_limits

from ..tasks.evaluation import column_aucs, result_row
from ..tasks.spec import TaskLabelError
from ..tasks.statistics import resample_rng
from .models import MlpSettings, ResponseBasis, mean_response, mlp_response, ridge_response
from .signatures import ResponseTargets

BASELINE = "mean-signature"
"""The backbone name of the training-set mean response (no embedding)."""
MODELS = ("mlp", "ridge")


@dataclass(frozen=True)
class PerturbationProtocol:
    n_splits: int = 9
    seed: int = 0
    n_bootstrap: int = 1000
    top_k: tuple[int, ...] = (20, 50, 100)
    models: tuple[str, ...] = MODELS
    mlp: MlpSettings = field(default_factory=MlpSettings)
    threads: int = 1
    """CPU threads for torch and BLAS (fixed for reproducible sums; one is fastest on a shared machine)."""

    def predict(self, model: str, X_train, basis: ResponseBasis, X_test, fold: int) -> np.ndarray:
        if model == "mlp":
            return mlp_response(
                X_train, basis, X_test, seed=self.seed * 1000 + fold, settings=self.mlp, threads=self.threads
            )
        if model == "ridge":
            return ridge_response(X_train, basis, X_test)
        raise ValueError(f"Unknown perturbation model {model!r}; choose from {MODELS}.")


def average_precision(relevant: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Average precision of each row (ties form one threshold, as scikit-learn computes it); NaN without positives."""
    out = np.full(len(scores), np.nan)
    for i, (hits, score) in enumerate(zip(relevant, scores)):
        if not hits.any():
            continue
        order = np.argsort(-score, kind="mergesort")
        ranked = score[order]
        ends = np.r_[np.flatnonzero(ranked[1:] != ranked[:-1]), len(ranked) - 1]
        true_positives = np.cumsum(hits[order])[ends]
        precision = true_positives / (ends + 1)
        recall = true_positives / true_positives[-1]
        out[i] = np.sum(np.diff(np.r_[0.0, recall]) * precision)
    return out


def precision_at(relevant: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    top = np.argsort(-scores, axis=1, kind="mergesort")[:, :k]
    return np.take_along_axis(relevant, top, axis=1).mean(1)


def signature_metrics(targets: ResponseTargets, rows: np.ndarray, scores: np.ndarray, top_k) -> dict[str, np.ndarray]:
    """Per held-out perturbation: AUROC and average precision of its significant up set among all measured
    genes, and the fraction of the K top-scored genes that are in it."""
    relevant = targets.up_set[rows]
    metrics = {"roc_auc": column_aucs(relevant.T, scores.T), "average_precision": average_precision(relevant, scores)}
    metrics.update({f"precision_at_{k}": precision_at(relevant, scores, k) for k in top_k})
    return metrics


def mean_shift_metrics(
    targets: ResponseTargets, rows: np.ndarray, predicted: np.ndarray, top_k
) -> dict[str, np.ndarray]:
    """Per held-out perturbation: Pearson correlation of predicted and measured Δμ over its K most changed genes
    (largest |Δμ|), and MAE over all genes relative to predicting no change (Σ|Δμ̂ − Δμ| / Σ|Δμ|; lower is better)."""
    truth = targets.values[rows]
    order = np.argsort(-np.abs(truth), axis=1, kind="mergesort")
    metrics = {}
    for k in top_k:
        top = order[:, :k]
        metrics[f"pearson_top{k}_de"] = row_pearson(
            np.take_along_axis(truth, top, 1), np.take_along_axis(predicted, top, 1)
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        metrics["relative_mae"] = np.abs(predicted - truth).sum(1) / np.abs(truth).sum(1)
    return metrics


def row_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


def perturbation_folds(targets: ResponseTargets, protocol: PerturbationProtocol) -> list[tuple[np.ndarray, np.ndarray]]:
    n = len(targets.entrez_ids)
    if n < 2 * protocol.n_splits:
        raise TaskLabelError(
            f"Task {targets.task.name}: {n} perturbations with an embedding; {protocol.n_splits}-fold CV "
            f"needs at least {2 * protocol.n_splits}."
        )
    return list(KFold(protocol.n_splits, shuffle=True, random_state=protocol.seed).split(np.arange(n)))


def evaluate_perturbations(
    targets: ResponseTargets, features: np.ndarray | None, protocol: PerturbationProtocol, bootstrap: bool = True
) -> list[dict]:
    """Result rows (long schema) of every model in `protocol.models`; with `features=None`, the mean-signature
    baseline, repeated under each model's name so that every comparison group holds it."""
    folds = perturbation_folds(targets, protocol)
    score = signature_metrics if targets.task.kind == "perturbation_signature" else mean_shift_metrics
    models = [None] if features is None else list(protocol.models)
    per_model = {model: [] for model in models}
    with threadpool_limits(protocol.threads):
        for fold, (train, test) in enumerate(folds):
            basis = ResponseBasis(targets.values[train])
            for model in models:
                if model is None:
                    predicted = mean_response(basis, len(test))
                else:
                    predicted = protocol.predict(model, features[train], basis, features[test], fold)
                per_model[model].append(score(targets, test, predicted, protocol.top_k))
    counts = (
        [
            resample_rng(protocol.seed, targets.task.name, f).multinomial(
                len(test), np.full(len(test), 1 / len(test)), size=protocol.n_bootstrap
            )
            for f, (_, test) in enumerate(folds)
        ]
        if bootstrap
        else None
    )
    rows = []
    for model, per_fold in per_model.items():
        for metric in per_fold[0]:
            values = [fold[metric] for fold in per_fold]
            replicates = fold_mean_replicates(values, counts) if bootstrap else None
            for name in protocol.models if model is None else [model]:
                rows.append(
                    result_row(
                        targets.task,
                        name,
                        metric,
                        [np.nanmean(v) for v in values],
                        replicates,
                        n_genes=len(targets.entrez_ids),
                        n_classes=len(targets.genes),
                        genes_digest=targets.digest,
                    )
                )
    return rows


def fold_mean_replicates(values: list[np.ndarray], counts: list[np.ndarray]) -> np.ndarray:
    """Per bootstrap replicate: the mean over folds of the resampled held-out perturbations' mean metric."""
    means = []
    for fold_values, fold_counts in zip(values, counts):
        finite = np.isfinite(fold_values)
        with np.errstate(divide="ignore", invalid="ignore"):
            means.append(fold_counts @ np.where(finite, fold_values, 0.0) / (fold_counts @ finite))
    return np.mean(means, axis=0)

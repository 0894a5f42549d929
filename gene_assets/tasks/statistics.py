"""Bootstrap replicates of fold-averaged metrics, computed so that every backbone sees the same resamples.

Resample counts depend only on (seed, task, fold) and the test labels, never on the backbone, so replicate b
of two backbones scored on the same genes is a paired draw: their difference gives paired confidence
intervals and p-values without refitting anything."""

from __future__ import annotations

import zlib

import numpy as np
from scipy import sparse

CHUNK = 128


def resample_rng(seed: int, task: str, fold: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(task.encode()), fold])


def stratified_counts(y: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """n_boot × len(y) multiplicities of a bootstrap that resamples each class separately (keeps AUC defined)."""
    counts = np.zeros((n_boot, len(y)), dtype=np.float32)
    for value in np.unique(y):
        members = np.flatnonzero(y == value)
        counts[:, members] = rng.multinomial(len(members), np.full(len(members), 1 / len(members)), size=n_boot)
    return counts


def weighted_auc(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC-AUC (ties count one half) for each row of `weights` (replicates × items); y is 0/1."""
    weights = np.atleast_2d(weights)
    order = np.argsort(score, kind="mergesort")
    sorted_score, positive = score[order], y[order].astype(np.float32)
    starts = np.flatnonzero(np.r_[True, sorted_score[1:] != sorted_score[:-1]])
    out = np.empty(len(weights))
    for begin in range(0, len(weights), CHUNK):
        w = weights[begin : begin + CHUNK][:, order]
        pos = np.add.reduceat(w * positive, starts, axis=1)
        neg = np.add.reduceat(w * (1 - positive), starts, axis=1)
        below = np.cumsum(neg, axis=1) - neg
        out[begin : begin + CHUNK] = (pos * (below + 0.5 * neg)).sum(1) / (pos.sum(1) * neg.sum(1))
    return out


def weighted_confusions(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, weights: np.ndarray) -> np.ndarray:
    """replicates × k × k confusion matrices (rows: true class) for each row of `weights`."""
    weights = np.atleast_2d(weights)
    codes = y_true * n_classes + y_pred
    onehot = sparse.csr_matrix((np.ones(len(codes)), (np.arange(len(codes)), codes)), shape=(len(codes), n_classes**2))
    return np.asarray((onehot.T @ weights.T).T).reshape(len(weights), n_classes, n_classes)


def classification_metrics(confusions: np.ndarray) -> dict[str, np.ndarray]:
    """Balanced accuracy (macro recall), macro-F1, MCC, accuracy and macro precision (as scikit-learn defines them,
    zero_division=0) from replicates × k × k confusions."""
    diag = np.diagonal(confusions, axis1=1, axis2=2)
    true, pred = confusions.sum(2), confusions.sum(1)
    total = true.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(true > 0, diag / true, np.nan)
        present = (true + pred) > 0
        precision = np.where(present, np.where(pred > 0, diag / pred, 0.0), np.nan)
        f1 = np.where(present, 2 * diag / (true + pred), np.nan)
        covariance = diag.sum(1) * total - (pred * true).sum(1)
        denominator = np.sqrt((total**2 - (pred**2).sum(1)) * (total**2 - (true**2).sum(1)))
        mcc = np.where(denominator > 0, covariance / denominator, 0.0)
    return {
        "balanced_accuracy": np.nanmean(recall, axis=1),
        "macro_f1": np.nanmean(f1, axis=1),
        "mcc": mcc,
        "accuracy": diag.sum(1) / total,
        "macro_precision": np.nanmean(precision, axis=1),
    }


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    low, high = np.nanpercentile(replicates, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


def paired_difference(a, b) -> np.ndarray | None:
    """a − b replicate by replicate; None when a and b were not drawn as pairs (a different number of replicates:
    results scored with another n_bootstrap)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return a - b if a.shape == b.shape else None


def paired_gap(a, b) -> tuple[float, float, float] | None:
    """The paired 95% CI of a − b and its two-sided p-value; None when a and b are not paired."""
    difference = paired_difference(a, b)
    if difference is None:
        return None
    low, high = percentile_interval(difference)
    return low, high, paired_p_value(a, b)


def paired_p_value(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided bootstrap p-value that a and b (paired replicates) differ: twice the smaller tail of a − b at 0;
    NaN when they are not paired."""
    difference = paired_difference(a, b)
    if difference is None:
        return float("nan")
    difference = difference[np.isfinite(difference)]
    if len(difference) == 0:
        return float("nan")
    tail = min((difference <= 0).mean(), (difference >= 0).mean())
    return float(min(1.0, max(2 * tail, 1 / len(difference))))


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p)
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, (len(p) - rank) * p[index])
        adjusted[index] = min(1.0, running)
    return adjusted

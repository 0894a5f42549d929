"""One evaluation engine for binary, multiclass, multilabel and gene-pair tasks.

Every task is scored on fixed, seeded splits; each result row carries the fold values, the point estimate
(mean over folds, or over labels for multilabel tasks) and bootstrap replicates that are paired across
backbones (see statistics.py)."""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from .linear_probes import (
    NestedLogisticRegression,
    PairLogisticRegression,
    label_logistic_fold_probabilities,
    logistic_fold_probabilities,
    ridge_fold_predictions,
)
from .spec import GeneTask, TaskLabelError
from .statistics import (
    classification_metrics,
    resample_rng,
    stratified_counts,
    weighted_auc,
    weighted_confusions,
)
from .subsets import subset_metric

PROTOCOLS = {
    "published": {"forest_universes": ("all_genes",), "forest_draws": 5, "tuned_logistic": False},
    "full": {"forest_universes": ("all_genes", "with_summary"), "forest_draws": None, "tuned_logistic": True},
}
"""What each named protocol fits besides logistic regression. `published` (the default): random forests where the
sources publish them, on the primary universe, and on 5 of the random control's draws; `with_summary` (a confound
control) gets logistic regression only. `full`: forests on both universes and on every draw, and on binary tasks,
wherever forests run, logistic regression with its regularization chosen by nested cross-validation
(`logistic_regression_cv`, Gan & Li) beside the default one. Both fit the same probes otherwise: the sources'
logistic regression (multinomial for multiclass tasks, one per label for multilabel tasks), logistic regression and
forests on gene pairs."""
TUNED_CS = tuple(float(c) for c in np.logspace(-3, 3, 7))
"""Inverse regularization strengths the nested cross-validation chooses from (scikit-learn's default is 1)."""
INNER_SPLITS = 5
"""Inner stratified folds, inside each outer training fold, that choose C by ROC-AUC."""
TUNED_CLASSIFIER = "logistic_regression_cv"
MULTICLASS_PROBES = ("logistic_regression", "ridge")
"""Multiclass probes by name: the multinomial logistic regression GenePT and the leaderboard paper publish, and a
one-vs-rest ridge classifier on standardized features, scored only when asked for by name."""
MULTILABEL_PROBES = ("logistic_regression", "ridge")
"""Multilabel probes by name: one default logistic regression per label, as the gene-property benchmark fits them,
and one ridge regression for every label on standardized features, scored only when asked for by name."""


@dataclass(frozen=True)
class Protocol:
    name: str = "published"
    forest_universes: tuple[str, ...] = PROTOCOLS["published"]["forest_universes"]
    forest_draws: int | None = PROTOCOLS["published"]["forest_draws"]
    """Random-control draws (0, 1, …) whose binary tasks also get forests; None: every draw."""
    tuned_logistic: bool = PROTOCOLS["published"]["tuned_logistic"]
    """Binary tasks also fit `logistic_regression_cv` (C chosen by nested cross-validation) where forests run."""
    multiclass_probes: tuple[str, ...] = ("logistic_regression",)
    multilabel_probes: tuple[str, ...] = ("logistic_regression",)
    n_splits: int = 5
    seed: int = 0
    pca_dims: int | None = None
    """Project to this many dimensions first (PCA fitted on the training fold only); None keeps all."""
    n_bootstrap: int = 1000
    rf_max_samples: int = 50_000
    """Random forests on gene pairs draw at most this many training pairs per tree."""
    band_max_genes: int = 2_000
    """Extra random-control draws score only tasks up to this many genes; a larger task's single draw already
    has a sampling SD below about 0.01 AUC."""
    threads: int = -1
    """Threads per forest (-1: every core); a forest grows the same trees on any number of threads."""

    @classmethod
    def named(cls, name: str, **settings) -> Protocol:
        if name not in PROTOCOLS:
            raise ValueError(f"Unknown evaluation protocol {name!r}; choose one of {', '.join(PROTOCOLS)}.")
        for kind, known in (("multiclass", MULTICLASS_PROBES), ("multilabel", MULTILABEL_PROBES)):
            unknown = sorted(set(settings.get(f"{kind}_probes", ())) - set(known))
            if unknown:
                raise ValueError(f"Unknown {kind} probe(s) {unknown}; choose from {', '.join(known)}.")
        return cls(name=name, **PROTOCOLS[name], **settings)

    def forests(self, universe: str, draw: int) -> bool:
        """Whether binary tasks also fit random forests on this universe and random-control draw."""
        return universe in self.forest_universes and (self.forest_draws is None or draw < self.forest_draws)


def genes_digest(*arrays) -> str:
    """Identity of a task's evaluated genes and labels: equal digests mean a paired comparison is valid."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def with_pca(estimator, protocol: Protocol, dims: int):
    if protocol.pca_dims and dims > protocol.pca_dims:
        return make_pipeline(PCA(protocol.pca_dims, random_state=protocol.seed), estimator)
    return estimator


def binary_classifiers(protocol: Protocol, dims: int, pairs: bool = False) -> dict:
    """scikit-learn defaults as GenePT uses them; logistic regression gets enough iterations to converge. With the
    protocol's `tuned_logistic` (not on gene pairs), also logistic regression whose C is chosen among TUNED_CS by
    ROC-AUC over INNER_SPLITS stratified folds of the training fold only (nested cross-validation)."""

    def forest():
        return RandomForestClassifier(
            random_state=protocol.seed, n_jobs=protocol.threads, max_samples=protocol.rf_max_samples if pairs else None
        )

    def tuned():
        return NestedLogisticRegression(TUNED_CS, INNER_SPLITS, protocol.seed)

    classifiers = {
        "logistic_regression": lambda: with_pca(LogisticRegression(max_iter=5000), protocol, dims),
        "random_forest": lambda: with_pca(forest(), protocol, dims),
    }
    if protocol.tuned_logistic and not pairs:
        classifiers[TUNED_CLASSIFIER] = lambda: with_pca(tuned(), protocol, dims)
    return classifiers


def fitted_scores(model, X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray) -> np.ndarray:
    """Fit a classifier, then return the test rows' positive-class probabilities. A forest trains on column-major
    features (it reads each candidate feature across a node's genes: the same trees, up to 1.5× faster at 1,024
    dimensions) and predicts on one thread (a threaded predict_proba adds the trees in completion order, which
    changes the last bits, and so near-tied ranks and bootstrap bounds, from run to run)."""
    if isinstance(model, RandomForestClassifier):
        X_train = np.asfortranarray(X_train)
    model.fit(X_train, y_train)
    final = model[-1] if isinstance(model, Pipeline) else model
    if isinstance(final, RandomForestClassifier):
        final.set_params(n_jobs=1)
    return model.predict_proba(X_test)[:, 1]


def result_row(task: GeneTask, classifier: str, metric: str, fold_values, replicates, **extra) -> dict:
    fold_values = np.asarray(fold_values, dtype=float)
    return {
        "task": task.name,
        "family": task.family,
        "kind": task.kind,
        "classifier": classifier,
        "metric": metric,
        "estimate": float(np.mean(fold_values)),
        "fold_values": fold_values.tolist(),
        "bootstrap": None if replicates is None else np.asarray(replicates, dtype=np.float32).tolist(),
        **extra,
    }


def subset_row(task: GeneTask, classifier: str, metric: str, subset: str, fold_values, replicates, **extra):
    """The row of a metric on a subset of the task's items (subsets.py), scored from the same test-fold predictions
    and resample counts as the full figure: fold values where the subset's part of a fold defines the metric, their
    mean, and per replicate the mean over those same folds (NaN for a replicate in which one of them is undefined,
    so that no replicate averages fewer folds than the estimate). None when no fold defines it."""
    values = np.asarray(fold_values, dtype=float)
    defined = np.isfinite(values)
    if not defined.any():
        return None
    if replicates is not None:
        block = np.asarray(replicates, dtype=float)[defined]
        replicates = np.where(np.isfinite(block).all(axis=0), block.mean(axis=0), np.nan)
    return result_row(task, classifier, subset_metric(metric, subset), values[defined], replicates, **extra)


SUBSET_CLASS_MIN = 5
"""A class counts in a subset's balanced accuracy when the fold's test part of the subset holds this many of its
genes (fewer: its recall is mostly noise, and resamples drop it)."""


def subset_balanced_accuracy(confusions: np.ndarray) -> np.ndarray:
    """Balanced accuracy of the point confusion (row 0) and of each resampled one over one fixed set of classes: those
    with at least SUBSET_CLASS_MIN genes in the point sample. A resample that loses one of them is NaN rather than an
    average over fewer classes; NaN throughout when no class qualifies."""
    support = confusions.sum(2)
    classes = support[0] >= SUBSET_CLASS_MIN
    if not classes.any():
        return np.full(len(confusions), np.nan)
    diag = np.diagonal(confusions, axis1=1, axis2=2)[:, classes]
    true = support[:, classes]
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = diag / true
    return np.where((true > 0).all(axis=1), recall.mean(axis=1), np.nan)


def subset_auc(y: np.ndarray, score: np.ndarray, mask: np.ndarray, counts: np.ndarray | None) -> tuple:
    """ROC-AUC of the masked items (NaN unless both classes are there) and, given resample counts, its replicates."""
    y, score = y[mask], score[mask]
    if len(np.unique(y)) < 2:
        return np.nan, None if counts is None else np.full(len(counts), np.nan)
    if counts is None:
        return roc_auc_score(y, score), None
    with np.errstate(divide="ignore", invalid="ignore"):
        return roc_auc_score(y, score), weighted_auc(y, score, counts[:, mask])


def auc_subset_rows(task: GeneTask, classifier: str, y: np.ndarray, subsets: dict, scored: dict, bootstrap: bool):
    """ROC-AUC rows of `subsets` (masks over the items of y) from `scored`: per subset, its per-fold values and
    replicates (subset_auc)."""
    return [
        subset_row(
            task,
            classifier,
            "roc_auc",
            subset,
            scored[subset][0],
            scored[subset][1] if bootstrap else None,
            n_genes=int(mask.sum()),
            n_items=int(mask.sum()),
            n_positive=int(y[mask].sum()),
            n_classes=2,
        )
        for subset, mask in subsets.items()
    ]


def _check_classes(task: GeneTask, y: np.ndarray, names, minimum: int) -> None:
    counts = np.bincount(y, minlength=len(names))
    if len(names) < 2 or (counts < minimum).any():
        detail = ", ".join(f"{n}: {c}" for n, c in zip(names, counts))
        raise TaskLabelError(
            f"Task {task.name}: {minimum}-fold CV needs two classes or more with at least {minimum} genes each, got "
            f"{detail or 'no genes'}. Add labelled genes to the small classes, or lower n_splits in the results asset's config."
        )


def evaluate_binary(
    task: GeneTask,
    X: np.ndarray,
    labels: pd.Series,
    protocol: Protocol,
    bootstrap: bool = True,
    forest: bool = True,
    subsets: dict[str, np.ndarray] | None = None,
) -> list[dict]:
    """ROC-AUC of each classifier over stratified folds; also on each of `subsets` (masks over the genes)."""
    subsets = subsets or {}
    y = (labels.to_numpy() == task.positive).astype(int)
    _check_classes(task, y, ["negative", "positive"], protocol.n_splits)
    folds = list(StratifiedKFold(protocol.n_splits, shuffle=True, random_state=protocol.seed).split(X, y))
    counts = (
        [
            stratified_counts(y[test], protocol.n_bootstrap, resample_rng(protocol.seed, task.name, f))
            for f, (_, test) in enumerate(folds)
        ]
        if bootstrap
        else None
    )
    rows = []
    classifiers = binary_classifiers(protocol, X.shape[1])
    if not forest:  # the costly classifiers run only where the protocol fits forests
        classifiers.pop("random_forest")
        classifiers.pop(TUNED_CLASSIFIER, None)
    for name, make in classifiers.items():
        aucs, replicates = [], []
        on_subsets = {subset: ([], []) for subset in subsets}
        for f, (train, test) in enumerate(folds):
            score = fitted_scores(make(), X[train], y[train], X[test])
            aucs.append(roc_auc_score(y[test], score))
            if bootstrap:
                replicates.append(weighted_auc(y[test], score, counts[f]))
            for subset, mask in subsets.items():
                value, resampled = subset_auc(y[test], score, mask[test], counts[f] if bootstrap else None)
                on_subsets[subset][0].append(value)
                on_subsets[subset][1].append(resampled)
        rows.append(
            result_row(
                task,
                name,
                "roc_auc",
                aucs,
                np.mean(replicates, axis=0) if bootstrap else None,
                n_genes=len(y),
                n_positive=int(y.sum()),
                n_classes=2,
            )
        )
        rows += auc_subset_rows(task, name, y, subsets, on_subsets, bootstrap)
    return [row for row in rows if row is not None]


def ridge_predictions(X: np.ndarray, Y: np.ndarray, folds: list, protocol: Protocol) -> list[np.ndarray]:
    """Test-fold outputs of ridge (alpha 1) on standardized features fitted on each training fold: from shared
    fold statistics (linear_probes.py), or through a PCA pipeline per fold when the protocol projects first."""
    if not (protocol.pca_dims and X.shape[1] > protocol.pca_dims):
        return ridge_fold_predictions(X, Y, folds)
    model = with_pca(make_pipeline(StandardScaler(), Ridge(alpha=1.0)), protocol, X.shape[1])
    return [
        model.fit(X[train], Y[train].astype(float)).predict(X[test]).reshape(len(test), -1) for train, test in folds
    ]


def multiclass_scores(
    probe: str, X: np.ndarray, y: np.ndarray, n_classes: int, folds: list, protocol: Protocol
) -> list[np.ndarray]:
    """Each test fold's class scores (argmax: the prediction) from the named probe fitted on its training fold:
    multinomial logistic regression (warm-started across folds; fitted afresh after a per-fold PCA when the protocol
    projects) or the one-vs-rest ridge classifier."""
    if probe == "ridge":
        targets = np.where(np.arange(n_classes) == y[:, None], 1.0, -1.0)  # RidgeClassifier's one-vs-rest coding
        return ridge_predictions(X, targets, folds, protocol)
    if probe != "logistic_regression":
        raise ValueError(f"Unknown multiclass probe {probe!r}; choose from {', '.join(MULTICLASS_PROBES)}.")
    if not (protocol.pca_dims and X.shape[1] > protocol.pca_dims):
        return logistic_fold_probabilities(X, y, folds)
    model = with_pca(LogisticRegression(max_iter=5000), protocol, X.shape[1])
    return [model.fit(X[train], y[train]).predict_proba(X[test]) for train, test in folds]


def evaluate_multiclass(
    task: GeneTask,
    X: np.ndarray,
    labels: pd.Series,
    protocol: Protocol,
    bootstrap: bool = True,
    subsets: dict[str, np.ndarray] | None = None,
):
    """The protocol's multiclass probes (multinomial logistic regression; ridge when named) on the same folds and
    resamples, and their balanced accuracy on each of `subsets` (masks over the genes); returns rows and the pooled
    confusion matrix of the first probe."""
    subsets = subsets or {}
    names, y = np.unique(labels.to_numpy(), return_inverse=True)
    _check_classes(task, y, names, protocol.n_splits)
    folds = list(StratifiedKFold(protocol.n_splits, shuffle=True, random_state=protocol.seed).split(X, y))
    counts = (
        [
            stratified_counts(y[test], protocol.n_bootstrap, resample_rng(protocol.seed, task.name, f))
            for f, (_, test) in enumerate(folds)
        ]
        if bootstrap
        else None
    )
    rows, confusions = [], []
    for probe in protocol.multiclass_probes:
        per_fold = {m: [] for m in ("balanced_accuracy", "macro_f1", "mcc")}
        replicates = {m: [] for m in per_fold}
        confusion = np.zeros((len(names), len(names)))
        on_subsets = {subset: ([], []) for subset in subsets}
        for f, ((_, test), scores) in enumerate(
            zip(folds, multiclass_scores(probe, X, y, len(names), folds, protocol))
        ):
            predicted = scores.argmax(1)
            for subset, mask in subsets.items():
                inside = mask[test]
                weights = np.vstack([np.ones(len(test)), counts[f]]) if bootstrap else np.ones(len(test))
                on_subset = weighted_confusions(y[test][inside], predicted[inside], len(names), weights[..., inside])
                accuracy = subset_balanced_accuracy(on_subset)
                on_subsets[subset][0].append(accuracy[0])
                on_subsets[subset][1].append(accuracy[1:] if bootstrap else None)
            fold_confusion = weighted_confusions(y[test], predicted, len(names), np.ones(len(test)))
            confusion += fold_confusion[0]
            point = classification_metrics(fold_confusion)
            if bootstrap:
                resampled = classification_metrics(weighted_confusions(y[test], predicted, len(names), counts[f]))
            for metric in per_fold:
                per_fold[metric].append(float(point[metric][0]))
                if bootstrap:
                    replicates[metric].append(resampled[metric])
        rows += [
            result_row(
                task,
                probe,
                metric,
                per_fold[metric],
                np.mean(replicates[metric], axis=0) if bootstrap else None,
                n_genes=len(y),
                n_classes=len(names),
            )
            for metric in per_fold
        ]
        rows += [
            subset_row(
                task,
                probe,
                "balanced_accuracy",
                subset,
                values,
                resampled if bootstrap else None,
                n_genes=int(subsets[subset].sum()),
                n_items=int(subsets[subset].sum()),
                n_classes=len(np.unique(y[subsets[subset]])),
            )
            for subset, (values, resampled) in on_subsets.items()
        ]
        confusions.append(pd.DataFrame(confusion, index=names, columns=names))
    return [row for row in rows if row is not None], confusions[0]


def column_aucs(Y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC-AUC of every label column (Mann-Whitney on average ranks); NaN where a column has one class."""
    ranks = rankdata(scores, axis=0)
    n_pos = Y.sum(0)
    n_neg = len(Y) - n_pos
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = ((ranks * Y).sum(0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def multilabel_scores(probe: str, X: np.ndarray, Y: np.ndarray, folds: list, protocol: Protocol) -> list[np.ndarray]:
    """Each test fold's label scores from the named probe fitted on its training fold: one logistic regression per
    label (scikit-learn's default, as binary tasks fit it; a fold's labels fitted together and warm-started across
    folds, or fitted afresh after a per-fold PCA when the protocol projects; NaN for a label with one class in the
    training fold), or ridge for every label at once on standardized features."""
    if probe == "ridge":
        return ridge_predictions(X, Y, folds, protocol)
    if probe != "logistic_regression":
        raise ValueError(f"Unknown multilabel probe {probe!r}; choose from {', '.join(MULTILABEL_PROBES)}.")
    if not (protocol.pca_dims and X.shape[1] > protocol.pca_dims):
        return label_logistic_fold_probabilities(X, Y, folds)[0]
    scores = []
    for train, test in folds:
        projection = PCA(protocol.pca_dims, random_state=protocol.seed).fit(X[train])
        projected = np.zeros((len(X), protocol.pca_dims))
        projected[train], projected[test] = projection.transform(X[train]), projection.transform(X[test])
        scores += label_logistic_fold_probabilities(projected, Y, [(train, test)])[0]
    return scores


def multilabel_fold_aucs(
    X: np.ndarray, Y: np.ndarray, protocol: Protocol, probe: str = "logistic_regression"
) -> tuple[list, list, np.ndarray]:
    """The multilabel folds (shuffled K-fold, the protocol's seed), the named probe's test-fold scores and the
    folds × labels ROC-AUCs (NaN where a fold's test genes hold one class of a label)."""
    folds = list(KFold(protocol.n_splits, shuffle=True, random_state=protocol.seed).split(X))
    predictions = multilabel_scores(probe, X, Y, folds, protocol)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        aucs = np.array([column_aucs(Y[test], scores) for (_, test), scores in zip(folds, predictions)])
    return folds, predictions, aucs


def evaluate_multilabel(
    task: GeneTask,
    X: np.ndarray,
    Y: np.ndarray,
    protocol: Protocol,
    bootstrap: bool = True,
    subsets: dict[str, np.ndarray] | None = None,
) -> list[dict]:
    """The protocol's multilabel probes (one logistic regression per label; ridge when named) on the same folds;
    per-label AUC, averaged over folds, then over labels; also on each of `subsets` (masks over the genes: each
    label's AUC among the subset's genes, over the labels scored on all genes, resampled with the same label
    draws)."""
    if Y.shape[1] == 0:
        raise TaskLabelError(
            f"Task {task.name}: no label has {task.label_size_range[0]}–{task.label_size_range[1]} genes."
        )
    folds = list(KFold(protocol.n_splits, shuffle=True, random_state=protocol.seed).split(X))
    rows = []
    for probe in protocol.multilabel_probes:
        predictions = multilabel_scores(probe, X, Y, folds, protocol)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # NaN AUCs (one class in a fold) are left out of means
            rows += multilabel_rows(task, probe, Y, folds, predictions, protocol, bootstrap, subsets or {})
    return rows


def multilabel_rows(
    task: GeneTask,
    probe: str,
    Y: np.ndarray,
    folds: list,
    predictions: list[np.ndarray],
    protocol: Protocol,
    bootstrap: bool,
    subsets: dict[str, np.ndarray],
) -> list[dict]:
    """One probe's mean per-label AUC row from its test-fold scores, and its rows on each of `subsets`."""
    per_fold = np.array([column_aucs(Y[test], scores) for (_, test), scores in zip(folds, predictions)])
    per_label = np.nanmean(per_fold, axis=0)
    scored = np.isfinite(per_label)
    replicates = picks = None
    if bootstrap:
        picks = resample_rng(protocol.seed, task.name, 0).integers(
            0, scored.sum(), size=(protocol.n_bootstrap, scored.sum())
        )
        replicates = per_label[scored][picks].mean(1)
    row = result_row(
        task,
        probe,
        "mean_roc_auc",
        np.nanmean(per_fold[:, scored], axis=1),
        replicates,
        n_genes=len(Y),
        n_classes=int(scored.sum()),
    )
    row["estimate"] = float(per_label[scored].mean())
    rows = [row]
    for subset, mask in subsets.items():
        on_subset = np.array(
            [column_aucs(Y[test][mask[test]], s[mask[test]])[scored] for (_, test), s in zip(folds, predictions)]
        )
        labels_defined = np.nanmean(on_subset, axis=0)
        if not np.isfinite(labels_defined).any():
            continue
        subset_values = np.nanmean(on_subset, axis=1)
        subset = subset_row(
            task,
            probe,
            "mean_roc_auc",
            subset,
            subset_values,
            None,
            n_genes=int(mask.sum()),
            n_items=int(mask.sum()),
            n_classes=int(np.isfinite(labels_defined).sum()),
        )
        subset["estimate"] = float(np.nanmean(labels_defined))
        if bootstrap:
            subset["bootstrap"] = np.nanmean(labels_defined[picks], axis=1).astype(np.float32).tolist()
        rows.append(subset)
    return rows


def evaluate_pairs(
    task: GeneTask,
    Z: np.ndarray,
    train: tuple,
    y_train,
    test: tuple,
    y_test,
    protocol: Protocol,
    bootstrap: bool = True,
    subsets: dict[str, np.ndarray] | None = None,
):
    """Train on the dataset's train split, score its test split (and each of `subsets`, masks over the test pairs);
    returns rows and each classifier's test scores.
    `train` and `test` are (rows of gene a, rows of gene b) in Z; a pair's features are Z[a] + Z[b]. Logistic
    regression is fitted without building those features (linear_probes.py) unless a PCA projection is set."""
    counts = (
        stratified_counts(y_test, protocol.n_bootstrap, resample_rng(protocol.seed, task.name, 0))
        if bootstrap
        else None
    )
    rows, scores = [], {}
    for name, make in binary_classifiers(protocol, Z.shape[1], pairs=True).items():
        if name == "logistic_regression" and not protocol.pca_dims:
            score = PairLogisticRegression().fit(Z, *train, y_train).predict_proba(Z, *test)
        else:
            score = fitted_scores(make(), Z[train[0]] + Z[train[1]], y_train, Z[test[0]] + Z[test[1]])
        scores[name] = score
        replicates = weighted_auc(y_test, score, counts) if bootstrap else None
        rows.append(
            result_row(
                task,
                name,
                "roc_auc",
                [roc_auc_score(y_test, score)],
                replicates,
                n_genes=len(y_train) + len(y_test),
                n_items=len(y_test),
                n_positive=int(y_test.sum()),
                n_classes=2,
            )
        )
        subsets = subsets or {}
        on_subsets = {
            subset: tuple([part] for part in subset_auc(y_test, score, mask, counts))
            for subset, mask in subsets.items()
        }
        rows += auc_subset_rows(task, name, y_test, subsets, on_subsets, bootstrap)
    return [row for row in rows if row is not None], scores

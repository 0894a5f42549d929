"""Cross-validated ROC-AUC of default scikit-learn classifiers on gene embeddings."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from .geneformer import TaskLabelError


def default_classifiers(seed: int) -> dict:
    """scikit-learn defaults (as GenePT); logistic regression gets enough iterations to converge."""
    return {
        "logistic_regression": LogisticRegression(max_iter=5000),
        "random_forest": RandomForestClassifier(random_state=seed, n_jobs=-1),
    }


def cross_validated_auc(X: np.ndarray, y: np.ndarray, n_splits: int = 5, seed: int = 0, classifiers=None) -> pd.DataFrame:
    """One row per (classifier, fold): held-out ROC-AUC with stratified K-fold (shuffled, fixed seed)."""
    y = np.asarray(y)
    counts = np.bincount(y, minlength=2)
    if (counts < n_splits).any():
        raise TaskLabelError(
            f"Need at least {n_splits} genes per class for {n_splits}-fold CV, got {counts[1]} positive and "
            f"{counts[0]} negative."
        )
    classifiers = classifiers or default_classifiers(seed)
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    rows = []
    for fold, (train, test) in enumerate(folds.split(X, y)):
        for name, estimator in classifiers.items():
            model = clone(estimator).fit(X[train], y[train])
            scores = model.predict_proba(X[test])[:, 1]
            rows.append({"classifier": name, "fold": fold, "roc_auc": float(roc_auc_score(y[test], scores))})
    return pd.DataFrame(rows)

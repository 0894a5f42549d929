"""Cell-type tasks on a cell embedding: kNN classification, k-means clustering and silhouette on the true labels.

Every embedding is l2-normalized first (GenePT vectors already are), so all of them are compared in the same
cosine geometry. Splits and bootstrap resamples depend only on (seed, dataset, split) and the labels, never on the
embedding, so the replicates of two embeddings of the same cells are paired draws (see tasks/statistics.py)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score, silhouette_samples
from sklearn.model_selection import StratifiedShuffleSplit, train_test_split
from sklearn.neighbors import KNeighborsClassifier
from threadpoolctl import threadpool_limits

from ..embeddings.encoders import idle_cores
from ..tasks.evaluation import genes_digest
from ..tasks.figures import png_bytes, pyplot
from ..tasks.statistics import classification_metrics, resample_rng, stratified_counts, weighted_confusions
from .embedding import unit_rows

FAMILY, KIND, UNIVERSE = "cell_type", "cells", "cells"
KNN_METRICS = {
    "accuracy": "accuracy",
    "macro_precision": "macro_precision",
    "macro_recall": "balanced_accuracy",
    "macro_f1": "macro_f1",
}
"""Reported kNN metric → key of tasks/statistics.py::classification_metrics."""


@dataclass(frozen=True)
class CellProtocol:
    k_neighbors: int = 10
    test_fraction: float = 0.2
    n_splits: int = 5
    """Repeated stratified train/test splits (80/20 by default); the fold values are the splits' metrics."""
    n_bootstrap: int = 1000
    seed: int = 0
    silhouette_max_cells: int = 5_000
    """Silhouette widths are computed on a stratified sample of at most this many cells (quadratic cost)."""


def cell_task(dataset: str, method: str) -> str:
    """Task name of a (dataset, cell-embedding method) pair, e.g. pbmc3k_genept_w."""
    return f"{dataset}_{method}"


def cells_digest(cells: pd.DataFrame, protocol: CellProtocol) -> str:
    """Identity of the scored cells, their labels and the protocol: equal digests mean paired comparisons are valid."""
    hashed = pd.util.hash_pandas_object(cells[["obs_name", "label"]].astype(str), index=False).to_numpy()
    settings = np.array(
        [
            protocol.k_neighbors,
            round(protocol.test_fraction * 1e6),
            protocol.n_splits,
            protocol.n_bootstrap,
            protocol.seed,
            protocol.silhouette_max_cells,
        ]
    )
    return genes_digest(hashed, settings)


def _row(task: str, classifier: str, metric: str, fold_values, replicates, n_cells: int, n_classes: int) -> dict:
    fold_values = np.asarray(fold_values, dtype=float)
    return {
        "task": task,
        "family": FAMILY,
        "kind": KIND,
        "classifier": classifier,
        "metric": metric,
        "estimate": float(fold_values.mean()),
        "fold_values": fold_values.tolist(),
        "bootstrap": np.asarray(replicates, dtype=np.float32).tolist(),
        "n_genes": n_cells,
        "n_classes": n_classes,
    }


def score_cells(X: np.ndarray, labels: pd.Series, dataset: str, method: str, protocol: CellProtocol) -> list[dict]:
    """Long-schema rows (without backbone/view/universe) of kNN, k-means and silhouette for one embedding.
    `n_genes` holds the number of cells scored (the items of a cell task). BLAS/OpenMP run on the idle cores only:
    k-means threads that wait for busy cores spin and run many times slower."""
    with threadpool_limits(idle_cores()):
        return _score_cells(X, labels, dataset, method, protocol)


def _score_cells(X: np.ndarray, labels: pd.Series, dataset: str, method: str, protocol: CellProtocol) -> list[dict]:
    names, y = np.unique(labels.astype(str).to_numpy(), return_inverse=True)
    X = unit_rows(X)
    task, stream = cell_task(dataset, method), f"cells/{dataset}"
    n, k = len(y), len(names)
    rows = []

    splits = StratifiedShuffleSplit(protocol.n_splits, test_size=protocol.test_fraction, random_state=protocol.seed)
    per_split, replicates = {m: [] for m in KNN_METRICS}, {m: [] for m in KNN_METRICS}
    for s, (train, test) in enumerate(splits.split(X, y)):
        model = KNeighborsClassifier(n_neighbors=min(protocol.k_neighbors, len(train))).fit(X[train], y[train])
        predicted = model.predict(X[test])
        point = classification_metrics(weighted_confusions(y[test], predicted, k, np.ones(len(test))))
        counts = stratified_counts(y[test], protocol.n_bootstrap, resample_rng(protocol.seed, stream, s))
        resampled = classification_metrics(weighted_confusions(y[test], predicted, k, counts))
        for metric, key in KNN_METRICS.items():
            per_split[metric].append(float(point[key][0]))
            replicates[metric].append(resampled[key])
    rows += [_row(task, "knn", m, per_split[m], np.mean(replicates[m], axis=0), n, k) for m in KNN_METRICS]

    clusters = KMeans(n_clusters=k, n_init=10, random_state=protocol.seed).fit_predict(X)
    counts = stratified_counts(y, protocol.n_bootstrap, resample_rng(protocol.seed, stream, protocol.n_splits))
    draws = [np.repeat(np.arange(n), c.astype(int)) for c in counts]
    for metric, score in (("ari", adjusted_rand_score), ("ami", adjusted_mutual_info_score)):
        rows.append(_row(task, "kmeans", metric, [score(y, clusters)], [score(y[d], clusters[d]) for d in draws], n, k))

    sample = silhouette_sample(y, protocol)
    widths = silhouette_samples(X[sample], y[sample])
    counts = stratified_counts(
        y[sample], protocol.n_bootstrap, resample_rng(protocol.seed, stream, protocol.n_splits + 1)
    )
    rows.append(_row(task, "silhouette", "asw", [widths.mean()], counts @ widths / counts.sum(1), n, k))
    return rows


def silhouette_sample(y: np.ndarray, protocol: CellProtocol) -> np.ndarray:
    """All cells, or a class-stratified sample of silhouette_max_cells (the same cells for every embedding)."""
    positions = np.arange(len(y))
    if len(y) <= protocol.silhouette_max_cells:
        return positions
    sample, _ = train_test_split(
        positions, train_size=protocol.silhouette_max_cells, random_state=protocol.seed, stratify=y
    )
    return np.sort(sample)


def expression_pca(expression, n_components: int, seed: int) -> np.ndarray:
    """PCA of a (sparse) log-normalized expression matrix, centered implicitly (ARPACK), as the baseline embedding."""
    from sklearn.decomposition import PCA

    n_components = min(n_components, min(expression.shape) - 1)
    return PCA(n_components, svd_solver="arpack", random_state=seed).fit_transform(expression).astype(np.float32)


UMAP_SMALL_DATA = 4096
"""Below this many cells UMAP takes every pairwise distance; it gets them here as one matrix product rather than
from its per-pair cosine function (about 10 s for 2,600 cells)."""
UMAP_NEIGHBOURS = 15


def umap_input(X: np.ndarray) -> np.ndarray:
    """UMAP's cosine distances between the rows for small data (0 between two all-zero rows, as UMAP's cosine has
    it), else the l2-normalized rows."""
    X = unit_rows(X)
    if len(X) >= UMAP_SMALL_DATA:
        return X
    X = X.astype(np.float64)
    distances = np.clip(1.0 - X @ X.T, 0.0, 2.0)
    zero = ~X.any(axis=1)
    distances[np.ix_(zero, zero)] = 0.0
    np.fill_diagonal(distances, 0.0)
    return distances


def umap_png(X: np.ndarray, labels: pd.Series, title: str, seed: int) -> bytes:
    """2-D UMAP (cosine, 15 neighbours) of the l2-normalized embedding, coloured by label. For small data the
    neighbours are read off the distance matrix here, as UMAP's exact search would find them, which spares its
    search's just-in-time compilation in every new process."""
    import umap

    data = umap_input(X)
    neighbours = (None, None, None)
    if len(X) < UMAP_SMALL_DATA:
        indices = np.argsort(data, axis=1, kind="stable")[:, :UMAP_NEIGHBOURS]
        neighbours = (indices, np.take_along_axis(data, indices, axis=1), None)
    with warnings.catch_warnings():
        # Handled here: distances are given precomputed on purpose (no inverse_transform is needed), and the fixed
        # random_state is what makes the picture reproducible, so UMAP running on one thread is expected.
        warnings.filterwarnings("ignore", message="using precomputed metric; inverse_transform will be unavailable")
        warnings.filterwarnings("ignore", message="n_jobs value .* overridden to 1 by setting random_state")
        coords = umap.UMAP(
            n_neighbors=UMAP_NEIGHBOURS,
            metric="precomputed" if len(X) < UMAP_SMALL_DATA else "cosine",
            precomputed_knn=neighbours,
            random_state=seed,
        ).fit_transform(data)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 5))
    names = sorted(labels.astype(str).unique())
    colours = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    for i, name in enumerate(names):
        inside = (labels.astype(str) == name).to_numpy()
        ax.scatter(
            coords[inside, 0], coords[inside, 1], s=4, color=colours(i % colours.N), label=f"{name} ({inside.sum()})"
        )
    ax.set(title=title, xticks=[], yticks=[], xlabel="UMAP 1", ylabel="UMAP 2")
    ax.legend(fontsize=7, markerscale=3, loc="center left", bbox_to_anchor=(1, 0.5), frameon=False)
    fig.tight_layout()
    return png_bytes(fig)

"""Batch effect across studies of one tissue (GenePT §4.4): the cells of two datasets in one embedding space, scored
for batch mixing and for cell-type conservation.

GenePT-w places cells of different studies in one space even when their gene panels differ (each cell is a mean of
gene vectors over its own study's genes); expression PCA needs the genes both studies measured. Cells are
restricted to the cell types both studies label (names harmonized by STUDY_PAIRS). Every metric is a mean of
per-cell scores, and its bootstrap resamples cells within each (study, cell type) stratum with replicates that
depend only on the cells, so two embeddings of the same cells are compared with paired draws."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.metrics import silhouette_samples
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

from ..tasks.evaluation import genes_digest
from ..tasks.statistics import resample_rng, stratified_counts
from .datasets import log_normalize
from .embedding import GeneWeights, stream_genept_w, unit_rows

FAMILY = KIND = "batch_effect"
UNIVERSE = "cells"


@dataclass(frozen=True)
class StudyPair:
    """Two cell datasets of one tissue from different studies, and the label names that mean the same cell type."""

    name: str
    datasets: tuple[str, str]
    synonyms: dict[str, str] = field(default_factory=dict)
    """Lower-cased label → harmonized name, for labels the two studies spell differently."""
    description: str = ""


STUDY_PAIRS = {
    pair.name: pair
    for pair in (
        StudyPair(
            "pancreas",
            ("xin", "wang"),
            synonyms={"pp": "gamma", "gamma/pp": "gamma", "pp/gamma": "gamma"},
            description="Human islets, Xin 2016 (980 genes) vs Wang 2016 (219 genes): alpha, beta, gamma, delta cells",
        ),
    )
}

METRICS = {
    "label_asw": (
        "silhouette",
        "silhouette width on the harmonized cell type (conservation; -1 to 1, higher is better)",
    ),
    "batch_asw": (
        "silhouette",
        "1 - |silhouette width on the study| within each cell type (mixing; 0 to 1, 1 = studies fully mixed)",
    ),
    "batch_entropy": (
        "knn",
        "entropy of the studies among each cell's k nearest neighbours, over log 2 (mixing; 0 to 1, higher is better)",
    ),
    "transfer_accuracy": (
        "knn",
        "each cell's type predicted by kNN from the other study's cells (conservation across studies; higher is better)",
    ),
}
"""Metric → (classifier column of the results, what it measures)."""


@dataclass(frozen=True)
class BatchProtocol:
    k_neighbors: int = 15
    """Neighbours per cell for the batch entropy and the cross-study label transfer."""
    n_bootstrap: int = 1000
    seed: int = 0


def harmonized_labels(labels: pd.Series, pair: StudyPair) -> pd.Series:
    """Labels trimmed and lower-cased, then mapped through the pair's synonyms."""
    names = labels.astype(str).str.strip().str.lower()
    return names.map(lambda name: pair.synonyms.get(name, name))


def shared_cells(cells: dict[str, pd.DataFrame], pair: StudyPair) -> tuple[pd.DataFrame, dict]:
    """The cells of both datasets whose harmonized type both studies label: dataset, position in that dataset's
    cell table, obs name and label; with the counts of cells left out per dataset."""
    labels = {name: harmonized_labels(cells[name]["label"], pair) for name in pair.datasets}
    shared = sorted(set.intersection(*(set(values) for values in labels.values())))
    if len(shared) < 2:
        raise ValueError(
            f"Study pair {pair.name!r}: {' and '.join(pair.datasets)} share {len(shared)} cell type(s) "
            f"({', '.join(shared) or 'none'}); batch mixing needs at least two. Add label synonyms to STUDY_PAIRS."
        )
    frames, left_out = [], {}
    for name in pair.datasets:
        keep = labels[name].isin(shared).to_numpy()
        left_out[name] = labels[name][~keep].value_counts().to_dict()
        frames.append(
            pd.DataFrame(
                {
                    "dataset": name,
                    "position": np.flatnonzero(keep),
                    "obs_name": cells[name]["obs_name"].astype(str).to_numpy()[keep],
                    "label": labels[name].to_numpy()[keep],
                }
            )
        )
    return pd.concat(frames, ignore_index=True), left_out


def batch_digest(cells: pd.DataFrame, protocol: BatchProtocol) -> str:
    """Identity of the scored cells, their studies and labels and the protocol (equal digests: paired comparisons)."""
    hashed = pd.util.hash_pandas_object(cells[["dataset", "obs_name", "label"]].astype(str), index=False).to_numpy()
    return genes_digest(hashed, np.array([protocol.k_neighbors, protocol.n_bootstrap, protocol.seed]))


def per_cell_scores(X: np.ndarray, batch: np.ndarray, label: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Each metric's score of every cell (the metric is their mean). X is l2-normalized first, so distances are
    cosine distances as in the cell-type tasks."""
    X = unit_rows(X)
    scores = {"label_asw": silhouette_samples(X, label)}
    batch_asw = np.ones(len(X))  # a type with one cell per study: two singleton clusters, width 0 (as sklearn's)
    for value in np.unique(label):
        members = np.flatnonzero(label == value)
        if len(members) > 2:
            batch_asw[members] = 1 - np.abs(silhouette_samples(X[members], batch[members]))
    scores["batch_asw"] = batch_asw
    neighbours = NearestNeighbors(n_neighbors=min(k, len(X) - 1) + 1).fit(X).kneighbors(X, return_distance=False)
    share = (batch[neighbours[:, 1:]] == batch[:, None]).mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -(np.nan_to_num(share * np.log(share)) + np.nan_to_num((1 - share) * np.log(1 - share)))
    scores["batch_entropy"] = entropy / np.log(2)
    correct = np.zeros(len(X))
    for study in np.unique(batch):
        source, target = batch != study, batch == study
        model = KNeighborsClassifier(n_neighbors=min(k, int(source.sum()))).fit(X[source], label[source])
        correct[target] = model.predict(X[target]) == label[target]
    scores["transfer_accuracy"] = correct
    return scores


def score_batch_effect(
    X: np.ndarray, cells: pd.DataFrame, pair: str, method: str, protocol: BatchProtocol
) -> list[dict]:
    """Long-schema rows (without backbone/view/universe) of every metric for one embedding of a pair's cells; the
    task is `<pair>_<method>`, `n_genes` holds the number of cells."""
    batch, label = cells["dataset"].to_numpy(), cells["label"].to_numpy()
    scores = per_cell_scores(X, batch, label, protocol.k_neighbors)
    strata = np.unique(cells["dataset"] + "/" + cells["label"], return_inverse=True)[1]
    counts = stratified_counts(strata, protocol.n_bootstrap, resample_rng(protocol.seed, f"batch/{pair}", 0))
    task = f"{pair}_{method}"
    return [
        {
            "task": task,
            "family": FAMILY,
            "kind": KIND,
            "classifier": METRICS[metric][0],
            "metric": metric,
            "estimate": float(values.mean()),
            "fold_values": [float(values.mean())],
            "bootstrap": (counts @ values / counts.sum(1)).astype(np.float32).tolist(),
            "n_genes": len(cells),
            "n_classes": int(len(np.unique(label))),
        }
        for metric, values in scores.items()
    ]


def shared_gene_columns(genes: dict[str, pd.DataFrame], pair: StudyPair) -> dict[str, np.ndarray]:
    """Per dataset, the var columns of the catalog genes both datasets measured, in one common order (Entrez id)."""
    matched = {name: genes[name].dropna(subset=["entrez_id"]).drop_duplicates("entrez_id") for name in pair.datasets}
    common = sorted(set.intersection(*(set(m["entrez_id"].astype(int)) for m in matched.values())))
    return {
        name: m.set_index(m["entrez_id"].astype(int)).loc[common, "var_index"].to_numpy() for name, m in matched.items()
    }


def shared_panel_genept_w(datasets: dict, cells: pd.DataFrame, pair: StudyPair, genes, chunk_cells: int) -> np.ndarray:
    """GenePT-w of the pair's cells (rows in `cells` order) over only the genes both studies measured: the cell
    embedding without the difference between the two gene panels."""
    columns = shared_gene_columns({name: datasets[name].genes for name in pair.datasets}, pair)
    blocks = []
    for name in pair.datasets:
        dataset = datasets[name]
        weights = GeneWeights.for_dataset(dataset, genes)
        panel = np.zeros(len(dataset.genes), dtype=np.float32)
        panel[columns[name]] = 1
        weights = GeneWeights(vectors=weights.vectors * panel[:, None], matched=weights.matched * panel)
        rows = dataset.cells["obs_index"].to_numpy()
        vectors, _ = stream_genept_w(dataset.matrix(), rows, dataset.attrs["input_scale"], weights, chunk_cells)
        blocks.append(vectors[cells.loc[cells["dataset"] == name, "position"].to_numpy()])
    return np.vstack(blocks)


def shared_expression(datasets: dict, cells: pd.DataFrame, pair: StudyPair, chunk_cells: int):
    """Log-normalized expression of the pair's cells (rows in `cells` order) over the genes both studies measured:
    the input of the expression-PCA baseline. Returns the sparse matrix and the number of shared genes."""
    columns = shared_gene_columns({name: datasets[name].genes for name in pair.datasets}, pair)
    blocks = []
    for name in pair.datasets:
        dataset = datasets[name]
        positions = cells.loc[cells["dataset"] == name, "position"].to_numpy()
        rows = dataset.cells["obs_index"].to_numpy()
        matrix, scale = dataset.matrix(), dataset.attrs["input_scale"]
        chunks = [log_normalize(block, scale) for _, block in matrix.chunks(rows, chunk_cells)]
        blocks.append(sparse.vstack(chunks, format="csr")[positions][:, columns[name]])
    return sparse.vstack(blocks, format="csr"), len(columns[pair.datasets[0]])

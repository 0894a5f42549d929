"""The leaderboard's cell-type section: embeddings × datasets tables and every embedding's gain over the baselines.

An "embedding" is a backbone with a cell method (GenePT-w, GenePT-s) or the expression-PCA baseline. All
embeddings of a dataset are scored on the same cells with paired resamples, so differences get paired CIs."""

from __future__ import annotations

import pandas as pd

from ..cells.batch import KIND as BATCH_KIND
from ..cells.batch import METRICS as BATCH_METRICS
from ..cells.evaluation import KIND
from ..tasks.spec import PRIMARY_METRIC
from ..tasks.statistics import paired_gap
from .report import PRIMARY_CLASSIFIER, format_estimate, mark_significance

METHOD_LABELS = {
    "genept_w": "GenePT-w",
    "genept_s": "GenePT-s",
    "pca": "PCA",
    "genept_w_shared": "GenePT-w (shared genes)",
}
BASELINES = {"PCA": ("expression-pca", "pca"), "random": ("random-gaussian", "genept_w")}
"""Baseline name → (backbone, method) of the rows every embedding is compared with."""


def cell_rows(summary: pd.DataFrame, kind: str = KIND) -> pd.DataFrame:
    """The leaderboard's cell-task rows (or batch-effect rows, with the study pair as dataset) with dataset, method
    and embedding ('backbone · method') columns."""
    cells = summary[summary["kind"] == kind].copy()
    if cells.empty:
        return cells.assign(dataset=[], method=[], embedding=[])
    cells["method"] = [next(m for m in METHOD_LABELS if task.endswith(f"_{m}")) for task in cells["task"]]
    cells["dataset"] = [task[: -len(m) - 1] for task, m in zip(cells["task"], cells["method"])]
    cells["embedding"] = cells["backbone"] + " · " + cells["method"].map(METHOD_LABELS)
    return cells


def cell_type_table(
    summary: pd.DataFrame, classifier: str = PRIMARY_CLASSIFIER[KIND], metric: str = PRIMARY_METRIC[KIND]
) -> pd.DataFrame:
    """Embedding rows × dataset columns: estimate [95% CI]; ★ best on the dataset, ≈ not significantly worse
    (Holm-adjusted paired bootstrap, every embedding and baseline of the dataset compared)."""
    cells = cell_rows(summary)
    cells = cells[(cells["classifier"] == classifier) & (cells["metric"] == metric)]
    if cells.empty:
        return pd.DataFrame()
    marked = mark_significance(
        cells.assign(backbone=cells["embedding"], task=cells["dataset"], view="cells").reset_index(drop=True)
    )
    marked["cell"] = marked.apply(format_estimate, axis=1)
    table = marked.pivot(index="backbone", columns="task", values="cell")
    order = marked.groupby("backbone")["estimate"].mean().sort_values(ascending=False)
    table = table.loc[order.index]
    table.insert(0, "mean", order.map("{:.3f}".format))
    table.index.name, table.columns.name = "embedding", None
    return table.reset_index()


def cell_gains(summary: pd.DataFrame) -> pd.DataFrame:
    """Every embedding minus each baseline on the same dataset, cells and metric: gain, paired 95% CI, p-value."""
    cells = cell_rows(summary)
    rows = []
    for (dataset, classifier, metric), group in cells.groupby(["dataset", "classifier", "metric"]):
        for baseline, (backbone, method) in BASELINES.items():
            reference = group[(group["backbone"] == backbone) & (group["method"] == method)]
            if reference.empty:
                continue
            reference = reference.iloc[0]
            for _, row in group.iterrows():
                if row["embedding"] == reference["embedding"] or row["genes_digest"] != reference["genes_digest"]:
                    continue
                gap = paired_gap(row["bootstrap"], reference["bootstrap"])
                if gap is None:
                    continue
                low, high, p_value = gap
                rows.append(
                    {
                        "dataset": dataset,
                        "embedding": row["embedding"],
                        "classifier": classifier,
                        "metric": metric,
                        "estimate": row["estimate"],
                        "baseline": baseline,
                        "baseline_estimate": reference["estimate"],
                        "gain": row["estimate"] - reference["estimate"],
                        "ci_low": low,
                        "ci_high": high,
                        "p_value": p_value,
                    }
                )
    return pd.DataFrame(rows)


def gains_table(
    gains: pd.DataFrame, classifier: str = PRIMARY_CLASSIFIER[KIND], metric: str = PRIMARY_METRIC[KIND]
) -> pd.DataFrame:
    """Per dataset and embedding: the metric and its gain over each baseline as 'gain [CI]' (* when the CI excludes 0)."""
    if gains.empty:
        return pd.DataFrame()
    selected = gains[(gains["classifier"] == classifier) & (gains["metric"] == metric)]
    if selected.empty:
        return pd.DataFrame()
    text = selected.assign(
        cell=[
            f"{g:+.3f} [{lo:+.3f}, {hi:+.3f}]{' *' if lo > 0 or hi < 0 else ''}"
            for g, lo, hi in zip(selected["gain"], selected["ci_low"], selected["ci_high"])
        ]
    )
    table = text.pivot(index=["dataset", "embedding"], columns="baseline", values="cell").fillna(
        "—"
    )  # a baseline vs itself
    table.columns = [f"gain vs {c}" for c in table.columns]
    estimates = selected.groupby(["dataset", "embedding"])["estimate"].first().map("{:.3f}".format)
    return table.assign(**{metric: estimates}).reset_index()[["dataset", "embedding", metric, *table.columns]]


def clustering_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Embedding rows × dataset columns: 'ARI / AMI / ASW' of k-means (k = number of labels) and the true labels."""
    cells = cell_rows(summary)
    cells = cells[cells["classifier"].isin(["kmeans", "silhouette"])]
    if cells.empty:
        return pd.DataFrame()
    wide = cells.pivot_table(index=["embedding", "dataset"], columns="metric", values="estimate").reset_index()
    wide["cell"] = [f"{a:.2f} / {b:.2f} / {c:.2f}" for a, b, c in zip(wide["ari"], wide["ami"], wide["asw"])]
    table = wide.pivot(index="embedding", columns="dataset", values="cell")
    table.columns.name = None
    return table.reset_index()


def batch_effect_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Per study pair, embedding rows × batch metrics (cells/batch.py METRICS): estimate [95% CI]; ★ best on the
    metric, ≈ not significantly worse (Holm-adjusted paired bootstrap over every embedding of the pair)."""
    rows = cell_rows(summary, BATCH_KIND)
    if rows.empty:
        return pd.DataFrame()
    marked = mark_significance(
        rows.assign(backbone=rows["embedding"], task=rows["dataset"], view="cells").reset_index(drop=True)
    )
    marked["cell"] = marked.apply(format_estimate, axis=1)
    table = marked.pivot(index=["task", "backbone"], columns="metric", values="cell")
    table = table[[m for m in BATCH_METRICS if m in table.columns]]
    order = marked.groupby(["task", "backbone"])["estimate"].mean().sort_values(ascending=False)
    table = table.loc[order.sort_index(level=0, sort_remaining=False).index]
    table.index.names, table.columns.name = ["study pair", "embedding"], None
    return table.reset_index()

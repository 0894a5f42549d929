"""Leaderboard tables and chart, built from per-fold task results."""

from __future__ import annotations

import base64
import io

import pandas as pd

CLASSIFIER_ABBREVIATIONS = {"logistic_regression": "LR", "random_forest": "RF"}


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Long table: one row per (backbone, view, task, classifier) with mean, SD, folds and genes."""
    grouped = results.groupby(["backbone", "view", "task", "classifier"], sort=True)
    summary = grouped.agg(
        roc_auc_mean=("roc_auc", "mean"), roc_auc_sd=("roc_auc", "std"), n_folds=("fold", "nunique"),
        n_genes=("n_genes", "first"),
    ).reset_index()
    return summary


def wide_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Backbone/view rows × task/classifier columns of 'mean ± sd', best mean first."""
    cells = summary.assign(
        column=summary["task"] + " " + summary["classifier"].map(CLASSIFIER_ABBREVIATIONS).fillna(summary["classifier"]),
        cell=summary["roc_auc_mean"].map("{:.3f}".format) + " ± " + summary["roc_auc_sd"].map("{:.3f}".format),
    )
    table = cells.pivot(index=["backbone", "view"], columns="column", values="cell")
    order = summary.groupby(["backbone", "view"])["roc_auc_mean"].mean().sort_values(ascending=False)
    table = table.loc[order.index]
    table.insert(0, "mean AUC", order.map("{:.3f}".format))
    table.columns.name = None
    return table.reset_index()


def chart_png(summary: pd.DataFrame) -> bytes:
    """Grouped bars of mean ROC-AUC (± SD) per task and classifier, one colour per backbone/view."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    data = summary.assign(
        model=summary["backbone"] + " / " + summary["view"],
        column=summary["task"] + "\n" + summary["classifier"].map(CLASSIFIER_ABBREVIATIONS).fillna(summary["classifier"]),
    )
    columns = sorted(data["column"].unique())
    models = data.groupby("model")["roc_auc_mean"].mean().sort_values(ascending=False).index.tolist()
    width = 0.8 / max(len(models), 1)
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(columns)), 4.5))
    x = np.arange(len(columns))
    for i, model in enumerate(models):
        rows = data[data["model"] == model].set_index("column").reindex(columns)
        ax.bar(x + i * width - 0.4 + width / 2, rows["roc_auc_mean"], width, yerr=rows["roc_auc_sd"], label=model, capsize=2)
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(x, columns, fontsize=8)
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("ROC-AUC (mean ± SD over folds)")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("gene_assets leaderboard")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def png_markdown(png: bytes) -> str:
    return f"![leaderboard](data:image/png;base64,{base64.b64encode(png).decode()})"

"""Per-task figures: ROC curves of the gene-pair task and the normalized confusion matrix of multiclass tasks."""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd


def png_markdown(png: bytes) -> str:
    """A PNG inlined as markdown, as Dagster's metadata viewer shows it."""
    return f"![figure](data:image/png;base64,{base64.b64encode(png).decode()})"


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    pyplot().close(fig)
    return buffer.getvalue()


def roc_png(y: np.ndarray, scores: dict[str, np.ndarray], title: str) -> bytes:
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for name, score in scores.items():
        fpr, tpr, _ = roc_curve(y, score)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, score):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    ax.set(xlabel="False positive rate", ylabel="True positive rate", title=title)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return png_bytes(fig)


def confusion_png(confusion: pd.DataFrame, title: str) -> bytes:
    plt = pyplot()
    normalized = confusion.div(confusion.sum(1).replace(0, np.nan), axis=0).fillna(0)
    size = max(5.0, 0.45 * len(confusion))
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(normalized.to_numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(confusion)), confusion.columns, rotation=90, fontsize=7)
    ax.set_yticks(range(len(confusion)), confusion.index, fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title=f"{title} (rows normalized)")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return png_bytes(fig)

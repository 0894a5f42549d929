"""Fine-tuned vs frozen: per (backbone, view, task), both mean ROC-AUCs and their paired gap."""

from __future__ import annotations

import pandas as pd

from ..tasks.statistics import paired_gap, percentile_interval
from .training import FINE_TUNED, FROZEN

COLUMNS = [
    "backbone",
    "view",
    "task",
    "n_genes",
    "fine_tuned",
    "fine_tuned_low",
    "fine_tuned_high",
    "frozen",
    "frozen_low",
    "frozen_high",
    "gap",
    "gap_low",
    "gap_high",
    "p_value",
    "repeats",
    "epochs",
    "learning_rate",
    "max_length",
    "device",
]


def fine_tuning_table(results: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per (backbone, view, task) of the fine_tuning_results partitions given: mean test ROC-AUC of the
    fine-tuned model and of logistic regression on the frozen embedding over the same 90/10 repeats, with 95% CIs,
    and fine-tuned − frozen with its paired 95% CI and p-value (same bootstrap counts for both)."""
    rows = []
    for frame in results.values():
        for (backbone, view, task), group in frame.groupby(["backbone", "view", "task"], sort=True):
            tuned = group[group["classifier"] == FINE_TUNED].iloc[0]
            frozen = group[group["classifier"] == FROZEN].iloc[0]
            gap = paired_gap(tuned["bootstrap"], frozen["bootstrap"])
            rows.append(
                {
                    "backbone": backbone,
                    "view": view,
                    "task": task,
                    "n_genes": tuned["n_genes"],
                    "fine_tuned": tuned["estimate"],
                    **dict(zip(["fine_tuned_low", "fine_tuned_high"], percentile_interval(tuned["bootstrap"]))),
                    "frozen": frozen["estimate"],
                    **dict(zip(["frozen_low", "frozen_high"], percentile_interval(frozen["bootstrap"]))),
                    "gap": tuned["estimate"] - frozen["estimate"],
                    **dict(zip(["gap_low", "gap_high", "p_value"], gap or (float("nan"),) * 3)),
                    "repeats": tuned["repeats"],
                    "epochs": tuned["epochs"],
                    "learning_rate": tuned["learning_rate"],
                    "max_length": tuned["max_length"],
                    "device": tuned["device"],
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)

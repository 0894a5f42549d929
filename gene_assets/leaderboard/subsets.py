"""Study bias and content overlap: each backbone's figure on a subset of a task's items (tasks/subsets.py) beside
its figure on all of them, with the subset's 95% CI and the paired 95% CI of the difference (same resamples)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..tasks.spec import PRIMARY_METRIC
from ..tasks.statistics import percentile_interval
from ..tasks.subsets import STUDY_MEASURES, WITHOUT_MENTIONS, split_metric
from .report import PRIMARY_CLASSIFIER, gene_tasks

SIDE_KEYS = ["backbone", "view", "universe", "task", "classifier"]
COMPARISON_COLUMNS = [
    *SIDE_KEYS,
    "metric",
    "subset",
    *[
        f"{part}_{side}"
        for side in ("all", "subset")
        for part in ("estimate", "ci_low", "ci_high", "n_items", "n_positive")
    ],
    "difference",
    "difference_ci_low",
    "difference_ci_high",
]


def subset_comparison(summary: pd.DataFrame, subsets, primary_only: bool = True) -> pd.DataFrame:
    """One row per backbone, view, universe, task, classifier and subset: the figure on all items and on the
    subset (estimate, 95% CI, items), their difference (subset − all) with its paired 95% CI, and the positives
    on each side. `primary_only`: the task's primary classifier only (else every classifier of its primary metric)."""
    rows = gene_tasks(summary)
    split = rows["metric"].map(split_metric)
    rows = rows.assign(base_metric=split.str[0], subset=split.str[1])
    rows = rows[rows["base_metric"] == rows["kind"].map(PRIMARY_METRIC)]
    if primary_only:
        rows = rows[rows["classifier"] == rows["kind"].map(PRIMARY_CLASSIFIER)]
    full = rows[rows["subset"].isna()].set_index(SIDE_KEYS)
    records = []
    for row in rows[rows["subset"].isin(list(subsets))].to_dict("records"):
        key = tuple(row[k] for k in SIDE_KEYS)
        if key not in full.index:
            continue
        whole = full.loc[key]
        difference = np.asarray(row["bootstrap"] if row["bootstrap"] is not None else [], float)
        reference = np.asarray(whole["bootstrap"] if whole["bootstrap"] is not None else [], float)
        paired = len(difference) and len(difference) == len(reference)
        low, high = percentile_interval(difference - reference) if paired else (np.nan, np.nan)
        records.append(
            {
                **dict(zip(SIDE_KEYS, key)),
                "metric": row["base_metric"],
                "subset": row["subset"],
                "estimate_all": whole["estimate"],
                "ci_low_all": whole["ci_low"],
                "ci_high_all": whole["ci_high"],
                "n_items_all": whole.get("n_items"),
                "n_positive_all": whole.get("n_positive"),
                "estimate_subset": row["estimate"],
                "ci_low_subset": row["ci_low"],
                "ci_high_subset": row["ci_high"],
                "n_items_subset": row.get("n_items"),
                "n_positive_subset": row.get("n_positive"),
                "difference": row["estimate"] - whole["estimate"],
                "difference_ci_low": low,
                "difference_ci_high": high,
            }
        )
    table = pd.DataFrame(records, columns=COMPARISON_COLUMNS)
    return table.sort_values(["view", "universe", "task", "subset", "backbone", "classifier"]).reset_index(drop=True)


def study_bias(summary: pd.DataFrame) -> pd.DataFrame:
    """Every gene task's primary figure on the least-studied third of its genes (by summary words, by GO
    annotations) beside the figure on all of them, per backbone."""
    return subset_comparison(summary, STUDY_MEASURES.values())


def content_overlap(summary: pd.DataFrame) -> pd.DataFrame:
    """The gene-pair task per backbone and classifier on the test pairs whose texts do not name each other, beside
    all test pairs, and the share of positive and of negative test pairs removed (texts naming the other gene)."""
    table = subset_comparison(summary, [WITHOUT_MENTIONS], primary_only=False)
    if table.empty:
        return table
    positives, items = table["n_positive_all"].astype(float), table["n_items_all"].astype(float)
    kept_positives, kept = table["n_positive_subset"].astype(float), table["n_items_subset"].astype(float)
    return table.assign(
        share_positive_named=1 - kept_positives / positives,
        share_negative_named=1 - (kept - kept_positives) / (items - positives),
    )


def _with_ci(estimate, low, high) -> str:
    return f"{estimate:.3f} [{low:.3f}, {high:.3f}]" if np.isfinite(estimate) else "–"


def _difference(row) -> str:
    return f"{row['difference']:+.3f} [{row['difference_ci_low']:+.3f}, {row['difference_ci_high']:+.3f}]"


def study_bias_table(summary: pd.DataFrame, universe: str = "all_genes") -> pd.DataFrame:
    """Backbone/view/task rows: the primary metric on all genes and on each least-studied third [95% CI], and the
    paired difference [95% CI]; a negative difference means the backbone does worse on the least-studied genes."""
    table = study_bias(summary)
    if table.empty:
        return table
    table = table[table["universe"] == universe]
    cells = table.assign(
        all=[_with_ci(*r) for r in table[["estimate_all", "ci_low_all", "ci_high_all"]].to_numpy(float)],
        least=[_with_ci(*r) for r in table[["estimate_subset", "ci_low_subset", "ci_high_subset"]].to_numpy(float)],
        gap=table.apply(_difference, axis=1),
    )
    wide = cells.pivot_table(
        index=["task", "metric", "view", "backbone", "all"],
        columns="subset",
        values=["least", "gap", "n_items_subset"],
        aggfunc="first",
    )
    wide.columns = [f"{subset}: {'genes' if part == 'n_items_subset' else part}" for part, subset in wide.columns]
    ordered = [f"{s}: {p}" for s in STUDY_MEASURES.values() for p in ("least", "gap", "genes") if f"{s}: {p}" in wide]
    return wide[ordered].reset_index()


def content_overlap_table(summary: pd.DataFrame, universe: str = "all_genes") -> pd.DataFrame:
    """Backbone/view/classifier rows of the gene-pair task: test pairs whose texts name each other (share of
    positive and of negative pairs), AUC on all test pairs and without them [95% CI], and the paired difference."""
    table = content_overlap(summary)
    if table.empty:
        return table
    table = table[table["universe"] == universe]
    return pd.DataFrame(
        {
            "view": table["view"],
            "backbone": table["backbone"],
            "classifier": table["classifier"],
            "positive pairs named": table["share_positive_named"].map("{:.2%}".format),
            "negative pairs named": table["share_negative_named"].map("{:.2%}".format),
            "AUC all test pairs": [
                _with_ci(*r) for r in table[["estimate_all", "ci_low_all", "ci_high_all"]].to_numpy(float)
            ],
            "AUC without named pairs": [
                _with_ci(*r) for r in table[["estimate_subset", "ci_low_subset", "ci_high_subset"]].to_numpy(float)
            ],
            "difference [95%]": table.apply(_difference, axis=1),
        }
    ).reset_index(drop=True)

"""Leaderboard tables and figures, built from the per-family task results of every backbone."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from ..perturbation.evaluation import BASELINE
from ..tasks.evaluation import TUNED_CLASSIFIER
from ..tasks.spec import LOWER_IS_BETTER, PRIMARY_METRIC
from ..tasks.statistics import holm, paired_gap, paired_p_value, percentile_interval

KEYS = ["backbone", "view", "universe", "task", "classifier", "metric"]
PRIMARY_CLASSIFIER = {
    "binary": "logistic_regression",
    "pairs": "logistic_regression",
    "multiclass": "logistic_regression",
    "multilabel": "logistic_regression",
    "cells": "knn",
    "perturbation_signature": "mlp",
    "perturbation_mean_shift": "mlp",
}
PERTURBATION_FAMILY = "perturbation"
PERTURBATION_METRIC_ORDER = [
    "roc_auc",
    "average_precision",
    "precision_at_20",
    "precision_at_50",
    "precision_at_100",
    "pearson_top20_de",
    "pearson_top50_de",
    "pearson_top100_de",
    "relative_mae",
]
ALPHA = 0.05


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (backbone, view, universe, task, classifier, metric): estimate, SD over folds, 95% CI, n,
    the random control's band over draws, and the bootstrap replicates used for paired comparisons."""
    first = results[results["draw"] == 0].copy()
    first["sd"] = [float(np.std(v, ddof=1)) if len(v) > 1 else np.nan for v in first["fold_values"]]
    intervals = [percentile_interval(np.asarray(b, float)) for b in first["bootstrap"]]
    first["ci_low"], first["ci_high"] = [i[0] for i in intervals], [i[1] for i in intervals]
    draws = (
        results.groupby(KEYS)["estimate"]
        .agg(
            n_draws="size",
            band_mean="mean",
            band_low=lambda e: np.percentile(e, 2.5),
            band_high=lambda e: np.percentile(e, 97.5),
        )
        .reset_index()
    )
    summary = first.merge(draws, on=KEYS, how="left")
    multi = summary["n_draws"] > 1
    summary.loc[~multi, ["band_mean", "band_low", "band_high"]] = np.nan
    summary.loc[multi, "estimate"] = summary.loc[multi, "band_mean"]
    summary["primary"] = (summary["classifier"] == summary["kind"].map(PRIMARY_CLASSIFIER)) & (
        summary["metric"] == summary["kind"].map(PRIMARY_METRIC)
    )
    columns = KEYS + [
        "family",
        "kind",
        "primary",
        "estimate",
        "sd",
        "ci_low",
        "ci_high",
        "n_genes",
        "n_classes",
        "n_excluded",
        "n_items",
        "n_positive",
        "n_draws",
        "band_low",
        "band_high",
        "genes_digest",
        "dims",
        "bootstrap",
    ]
    return mark_significance(summary.reindex(columns=columns).sort_values(KEYS).reset_index(drop=True))


def mark_significance(summary: pd.DataFrame) -> pd.DataFrame:
    """Per (view, universe, task, classifier, metric): the best backbone among those scored on the genes most of
    them share with the number of replicates most of them have (others, not paired, are marked not comparable) and, for every other comparable one, the Holm-adjusted paired bootstrap p-value of its gap to the best; p ≥ 0.05 means 'tied'."""
    summary = summary.assign(best=False, p_vs_best=np.nan, tied_with_best=False, comparable=True)
    for _, group in summary.groupby(["view", "universe", "task", "classifier", "metric"]):
        replicates = group["bootstrap"].map(lambda b: len(b) if hasattr(b, "__len__") else 0)
        comparable = (group["genes_digest"] == group["genes_digest"].mode().iloc[0]) & (
            replicates == replicates.mode().iloc[0]
        )
        summary.loc[group.index, "comparable"] = comparable.to_numpy()
        estimates = group.loc[comparable.to_numpy(), "estimate"]
        best = estimates.idxmin() if group["metric"].iloc[0] in LOWER_IS_BETTER else estimates.idxmax()
        summary.at[best, "best"] = True
        others = group.index[comparable.to_numpy() & (group.index != best)]
        if len(others):
            p = [paired_p_value(summary.at[best, "bootstrap"], summary.at[i, "bootstrap"]) for i in others]
            adjusted = holm(np.nan_to_num(p, nan=1.0))
            summary.loc[others, "p_vs_best"] = adjusted
            summary.loc[others, "tied_with_best"] = adjusted >= ALPHA
    return summary


def pairwise_comparisons(summary: pd.DataFrame) -> pd.DataFrame:
    """Every pair of backbones on the same genes: difference, its paired 95% CI and Holm-adjusted p-value."""
    rows = []
    primary = summary[summary["primary"]]
    for keys, group in primary.groupby(["view", "universe", "task", "classifier", "metric", "genes_digest"]):
        records = group.to_dict("records")
        for i, a in enumerate(records):
            for b in records[i + 1 :]:
                gap = paired_gap(a["bootstrap"], b["bootstrap"])
                if gap is None:
                    continue
                low, high, p_value = gap
                rows.append(
                    {
                        **dict(zip(["view", "universe", "task", "classifier", "metric"], keys[:5])),
                        "backbone_a": a["backbone"],
                        "backbone_b": b["backbone"],
                        "difference": a["estimate"] - b["estimate"],
                        "ci_low": low,
                        "ci_high": high,
                        "p_value": p_value,
                    }
                )
    table = pd.DataFrame(rows)
    if len(table):
        table["p_holm"] = table.groupby(["view", "universe", "task"])["p_value"].transform(lambda p: holm(p.to_numpy()))
    return table


def view_ablation(summary: pd.DataFrame, view: str = "go", baseline: str = "summary") -> pd.DataFrame:
    """Per backbone and task: `view` minus `baseline` view on the same genes, with a paired 95% CI."""
    primary = summary[summary["primary"]]
    a = primary[primary["view"] == view].set_index(["backbone", "universe", "task"])
    b = primary[primary["view"] == baseline].set_index(["backbone", "universe", "task"])
    rows = []
    for key in a.index.intersection(b.index):
        x, y = a.loc[key], b.loc[key]
        if x["genes_digest"] != y["genes_digest"]:
            continue
        gap = paired_gap(x["bootstrap"], y["bootstrap"])
        if gap is None:
            continue
        low, high, p_value = gap
        rows.append(
            {
                "backbone": key[0],
                "universe": key[1],
                "task": key[2],
                "metric": x["metric"],
                f"{view}_view": x["estimate"],
                f"{baseline}_view": y["estimate"],
                "gap": x["estimate"] - y["estimate"],
                "ci_low": low,
                "ci_high": high,
                "p_value": p_value,
            }
        )
    return pd.DataFrame(rows)


def leakage_audit(views: dict, tasks: dict) -> pd.DataFrame:
    """(view, task) pairs whose text contains a source the labels were derived from."""
    rows = []
    for view_name, view in views.items():
        for task in tasks.values():
            shared = sorted(set(view.contains) & set(task.label_sources))
            rows.append(
                {
                    "view": view_name,
                    "task": task.name,
                    "label_sources": ", ".join(task.label_sources),
                    "view_contains": ", ".join(view.contains),
                    "shared_source": ", ".join(shared),
                    "leaks": bool(shared),
                }
            )
    return pd.DataFrame(rows)


RANK_GROUP_KEYS = ["view", "universe", "task", "classifier", "metric"]
OVERALL = "overall"
NOT_RANKED = "not ranked"
"""The overall rank cell of the random control's band and of a backbone missing a task or scored on other genes."""
RANK_COLUMNS = [
    *RANK_GROUP_KEYS,
    "backbone",
    "primary",
    "estimate",
    "rank",
    "rank_low",
    "rank_high",
    "p_first",
    "group",
    "n_ranked",
    "n_tasks",
]


def ranks_of(values: np.ndarray, lower_is_better: bool) -> np.ndarray:
    """Ranks down axis 0 (1 is best), ties sharing their average rank."""
    from scipy.stats import rankdata

    return rankdata(values if lower_is_better else -values, method="average", axis=0)


def rank_statistics(names: list[str], point: np.ndarray, replicates: np.ndarray, lower_is_better: bool) -> pd.DataFrame:
    """Ranks of `names` (1 is best) from point values and paired replicates (names × replicates): the point rank,
    its 95% interval over replicates, the probability of being first (a k-way tie for first counts 1/k) and groups
    that cannot be told apart. Ties take their average rank. A replicate missing for any name is dropped for all.
    Group 1 is the leader (best point rank) and every name whose paired difference to it is not significant
    (Holm-adjusted paired bootstrap p ≥ 0.05, as ≈ marks); the next group starts at the best name left, and so on."""
    replicates = replicates[:, np.isfinite(replicates).all(axis=0)]
    if replicates.shape[1] == 0:
        raise ValueError(f"No bootstrap replicate is finite for every one of {', '.join(names)}: cannot rank them.")
    point_rank, ranks = ranks_of(point, lower_is_better), ranks_of(replicates, lower_is_better)
    first = ranks == ranks.min(axis=0)
    order = sorted(range(len(names)), key=lambda i: (point_rank[i], ranks[i].mean(), names[i]))
    group, number = np.zeros(len(names), dtype=int), 0
    while order:
        leader, others = order[0], order[1:]
        p = holm(np.nan_to_num([paired_p_value(replicates[leader], replicates[o]) for o in others], nan=1.0))
        members = [leader] + [o for o, q in zip(others, p) if q >= ALPHA]
        number += 1
        group[members] = number
        order = [i for i in order if i not in members]
    return pd.DataFrame(
        {
            "backbone": names,
            "rank": point_rank,
            "rank_low": np.percentile(ranks, 2.5, axis=1, method="lower"),
            "rank_high": np.percentile(ranks, 97.5, axis=1, method="higher"),
            "p_first": (first / first.sum(axis=0)).mean(axis=1),
            "group": group,
            "n_ranked": len(names),
        }
    )


def rankable(summary: pd.DataFrame) -> pd.DataFrame:
    """Rows that take part in ranking: scored on the genes most backbones of the comparison share, with bootstrap
    replicates; the random control's band rows (n_draws > 1: a band over seeds, not one paired draw) are left out."""
    has_replicates = summary["bootstrap"].map(lambda b: b is not None and len(b) > 0)
    return summary[summary["comparable"] & (summary["n_draws"] <= 1) & has_replicates]


def replicate_matrix(bootstraps) -> np.ndarray:
    """Backbones × replicates (the first n of each, n the fewest any backbone has)."""
    arrays = [np.asarray(b, float) for b in bootstraps]
    n = min(len(a) for a in arrays)
    return np.stack([a[:n] for a in arrays])


def any_defined(replicates: np.ndarray) -> bool:
    """Whether some replicate has every backbone's value defined (else there is nothing to rank on)."""
    return bool(np.isfinite(replicates).all(axis=0).any())


def task_ranks(summary: pd.DataFrame) -> pd.DataFrame:
    """Per (view, universe, task, classifier, metric): every rankable backbone's rank with its 95% bootstrap interval,
    P(first) and group, in the metric's direction (LOWER_IS_BETTER), from the replicates the CIs use."""
    frames = []
    for keys, group in rankable(summary).groupby(RANK_GROUP_KEYS):
        group = group.sort_values("backbone")
        replicates = replicate_matrix(group["bootstrap"])
        if not any_defined(replicates):
            continue
        ranks = rank_statistics(
            group["backbone"].tolist(), group["estimate"].to_numpy(float), replicates, keys[-1] in LOWER_IS_BETTER
        )
        frames.append(
            ranks.assign(
                **dict(zip(RANK_GROUP_KEYS, keys)),
                primary=group["primary"].iloc[0],
                estimate=group["estimate"].to_numpy(),
                n_tasks=1,
            )
        )
    return pd.DataFrame(pd.concat(frames, ignore_index=True) if frames else [], columns=RANK_COLUMNS)


def overall_ranks(summary: pd.DataFrame) -> pd.DataFrame:
    """Per (view, universe): the rank of each backbone's mean rank over the gene tasks' primary metrics (cell tasks
    have their own section), replicate by replicate, with its 95% interval, P(first) and groups. Every task with a
    ranked row counts (n_tasks); the contenders are the backbones ranked on all of them (same genes, one protocol).
    The random control (a band) and a backbone missing a task or scored on other genes get no overall rank."""
    primary = gene_tasks(summary)
    primary = primary[primary["primary"] & (primary["kind"] != "cells")]
    frames = []
    for (view, universe), rows in primary.groupby(["view", "universe"]):
        ranked = rankable(rows)
        tasks = sorted(ranked["task"].unique())
        contenders = (
            sorted(
                set.intersection(*(set(ranked.loc[ranked["task"] == t, "backbone"]) for t in tasks))
                - set(rows.loc[rows["n_draws"] > 1, "backbone"])
            )
            if tasks
            else []
        )
        ranked = ranked[ranked["backbone"].isin(contenders)]
        if len(contenders) < 2:
            continue
        point, replicates = [], []
        for task in tasks:
            group = ranked[ranked["task"] == task].sort_values("backbone")
            lower = group["metric"].iloc[0] in LOWER_IS_BETTER
            point.append(ranks_of(group["estimate"].to_numpy(float), lower))
            replicates.append(ranks_of(replicate_matrix(group["bootstrap"]), lower))
        n = min(r.shape[1] for r in replicates)
        mean_point, mean_replicates = np.mean(point, axis=0), np.mean([r[:, :n] for r in replicates], axis=0)
        if not any_defined(mean_replicates):
            continue
        ranks = rank_statistics(contenders, mean_point, mean_replicates, lower_is_better=True)
        frames.append(
            ranks.assign(
                view=view,
                universe=universe,
                task=OVERALL,
                classifier="primary",
                metric="mean_rank",
                primary=True,
                estimate=mean_point,
                n_tasks=len(tasks),
            )
        )
    return pd.DataFrame(pd.concat(frames, ignore_index=True) if frames else [], columns=RANK_COLUMNS)


def rank_intervals(summary: pd.DataFrame) -> pd.DataFrame:
    """Every task's ranks and the overall ranks (task 'overall'), one row per backbone and comparison."""
    parts = [part for part in (task_ranks(summary), overall_ranks(summary)) if len(part)]
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=RANK_COLUMNS)
    return (
        table.astype({"n_ranked": int, "n_tasks": int, "group": int})
        .sort_values([*RANK_GROUP_KEYS, "rank", "backbone"])
        .reset_index(drop=True)
    )


def format_rank(rank: float, low: float, high: float) -> str:
    """A rank with its 95% interval, e.g. '2 [1–3]' (ties give half ranks)."""

    def number(value):
        return f"{value:g}"

    return f"{number(rank)} [{number(low)}–{number(high)}]"


def rank_columns(overall: pd.DataFrame, index: list[str]) -> pd.DataFrame:
    """Overall ranks (overall_ranks rows) as shown beside a table indexed by `index`: 'rank [95% interval]',
    P(first), group, and the point rank to sort by."""
    overall = overall.set_index(index)
    return pd.DataFrame(
        {
            "overall rank [95%]": [format_rank(*r) for r in overall[["rank", "rank_low", "rank_high"]].to_numpy()],
            "P(first)": overall["p_first"].astype(float).round(3).to_numpy(),
            "group": overall["group"].to_numpy(),
            "overall_rank": overall["rank"].to_numpy(),
        },
        index=overall.index,
    )


def rank_table(ranks: pd.DataFrame, universe: str = "all_genes") -> pd.DataFrame:
    """Backbone/view rows: the overall rank [95% interval], P(first) and group, then each task's primary-metric
    rank [95% interval]; best first within each view."""
    shown = ranks[(ranks["universe"] == universe) & ranks["primary"]]
    if shown.empty:
        return pd.DataFrame()
    tasks = shown[shown["task"] != OVERALL]
    cells = tasks.assign(cell=[format_rank(*r) for r in tasks[["rank", "rank_low", "rank_high"]].to_numpy()])
    table = rank_columns(shown[shown["task"] == OVERALL], ["backbone", "view"]).join(
        cells.pivot_table(index=["backbone", "view"], columns="task", values="cell", aggfunc="first"), how="outer"
    )
    table = table.reset_index().sort_values(["view", "overall_rank", "backbone"], na_position="last")
    return table.drop(columns="overall_rank").reset_index(drop=True)


def gene_tasks(summary: pd.DataFrame) -> pd.DataFrame:
    """Rows of the gene tasks (the perturbation tasks have their own table: other metrics, other scale)."""
    return summary[summary["family"] != PERTURBATION_FAMILY]


def family_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """Mean primary metric per family per backbone/view/universe (gene tasks), with the overall rank interval."""
    primary = gene_tasks(summary)
    primary = primary[primary["primary"]]
    index = ["backbone", "view", "universe"]
    families = primary.pivot_table(index=index, columns="family", values="estimate", aggfunc="mean").round(3)
    families = families.join(rank_columns(overall_ranks(summary), index))
    families["overall rank [95%]"] = families["overall rank [95%]"].fillna(NOT_RANKED)
    families = families.reset_index().sort_values(["view", "universe", "overall_rank", "backbone"], na_position="last")
    return families.drop(columns="overall_rank").reset_index(drop=True)


def format_estimate(row) -> str:
    if row["n_draws"] > 1:
        return f"{row['estimate']:.3f} (band {row['band_low']:.2f}–{row['band_high']:.2f})"
    mark = " ★" if row["best"] else (" ≈" if row["tied_with_best"] else "")
    return f"{row['estimate']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]{mark}"


def wide_table(summary: pd.DataFrame, universe: str = "all_genes", leaks: pd.DataFrame | None = None) -> pd.DataFrame:
    """Backbone/view rows × task columns (primary metric): estimate [95% CI]; ★ best, ≈ not significantly worse
    than the best (Holm-adjusted paired bootstrap, p ≥ 0.05); ⚠ the view shares a source with the labels; the
    overall rank with its 95% interval (overall_ranks; NOT_RANKED for the random control's band). Gene tasks only
    (see perturbation_table)."""
    summary = gene_tasks(summary)
    primary = summary[summary["primary"] & (summary["universe"] == universe)]
    if primary.empty:
        return pd.DataFrame()
    cells = primary.assign(cell=primary.apply(format_estimate, axis=1))
    if leaks is not None and len(leaks):
        leaking = set(map(tuple, leaks.loc[leaks["leaks"], ["view", "task"]].to_numpy()))
        flagged = [(v, t) in leaking for v, t in zip(cells["view"], cells["task"])]
        cells.loc[flagged, "cell"] = cells.loc[flagged, "cell"] + " ⚠"
    table = cells.pivot(index=["backbone", "view"], columns="task", values="cell")
    order = primary.groupby(["backbone", "view"])["estimate"].mean().sort_values(ascending=False)
    table = table.loc[order.index]
    table.insert(0, "mean", order.map("{:.3f}".format))
    ranks = rank_columns(overall_ranks(summary[summary["universe"] == universe]), ["backbone", "view"]).reindex(
        table.index
    )
    table.insert(1, "overall rank [95%]", ranks["overall rank [95%]"].fillna(NOT_RANKED))
    if "protocol" in primary:
        table.insert(0, "protocol", primary["protocol"].iloc[0])
    table.columns.name = None
    return table.reset_index()


def heatmap_png(summary: pd.DataFrame, universe: str = "all_genes") -> bytes:
    """Backbone/view × task heatmap of the primary metric, annotated; ★ marks the best per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = gene_tasks(summary)
    primary = summary[summary["primary"] & (summary["universe"] == universe)]
    grid = primary.pivot_table(index=["backbone", "view"], columns="task", values="estimate")
    grid = grid.loc[grid.mean(axis=1).sort_values(ascending=False).index]
    best = set(map(tuple, primary.loc[primary["best"], ["backbone", "view", "task"]].to_numpy()))
    fig, ax = plt.subplots(figsize=(max(8, 0.75 * grid.shape[1] + 3), max(3, 0.5 * grid.shape[0] + 2)))
    image = ax.imshow(grid.to_numpy(), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for i, (backbone, view) in enumerate(grid.index):
        for j, task in enumerate(grid.columns):
            value = grid.iat[i, j]
            if np.isfinite(value):
                star = "★" if (backbone, view, task) in best else ""
                ax.text(
                    j,
                    i,
                    f"{value:.2f}{star}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if value < 0.6 else "black",
                )
    ax.set_xticks(range(grid.shape[1]), grid.columns, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(grid.shape[0]), [f"{b} / {v}" for b, v in grid.index], fontsize=8)
    protocol = f"{primary['protocol'].iloc[0]} protocol, " if "protocol" in primary and len(primary) else ""
    ax.set_title(f"gene_assets leaderboard ({protocol}{universe}; AUC, balanced accuracy for multiclass)")
    fig.colorbar(image, ax=ax, fraction=0.03)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def random_band_at_chance(
    summary: pd.DataFrame, low: float = 0.45, high: float = 0.55, min_genes: int = 100
) -> pd.DataFrame:
    """The random control's band mean on every binary task with at least `min_genes` genes, and whether it is at chance."""
    rows = summary[
        (summary["backbone"] == "random-gaussian")
        & summary["kind"].isin(["binary", "pairs"])
        & (summary["metric"] == "roc_auc")
        & (summary["n_genes"] >= min_genes)
    ]
    return rows.assign(at_chance=rows["estimate"].between(low, high))[
        [
            "view",
            "universe",
            "task",
            "classifier",
            "n_genes",
            "n_draws",
            "estimate",
            "band_low",
            "band_high",
            "at_chance",
        ]
    ]


def tuning_gains(summary: pd.DataFrame) -> pd.DataFrame:
    """Binary tasks scored by both logistic regressions (the `full` protocol): the one whose C nested
    cross-validation chose minus the default (C = 1), per backbone, view, universe and task on the same genes, with
    the paired 95% CI and p-value, Holm-adjusted over the tasks of each backbone, view and universe (the question is
    whether tuning helps that backbone; over the whole table, a bootstrap p-value's floor of 1 / replicates times
    every comparison of every backbone could never reach 0.05)."""
    keys = ["backbone", "view", "universe", "task", "genes_digest"]
    single = summary[(summary["kind"] == "binary") & (summary["metric"] == "roc_auc") & (summary["n_draws"] <= 1)]
    tuned = single[single["classifier"] == TUNED_CLASSIFIER]
    default = single[single["classifier"] == "logistic_regression"]
    pairs = tuned.merge(default, on=keys, suffixes=("_tuned", "_default"))
    rows = []
    for row in pairs.to_dict("records"):
        gap = paired_gap(row["bootstrap_tuned"], row["bootstrap_default"])
        if gap is None:
            continue
        low, high, p_value = gap
        rows.append(
            {
                **{k: row[k] for k in keys[:4]},
                "default_lr": row["estimate_default"],
                "tuned_lr": row["estimate_tuned"],
                "gain": row["estimate_tuned"] - row["estimate_default"],
                "ci_low": low,
                "ci_high": high,
                "p_value": p_value,
            }
        )
    table = pd.DataFrame(rows, columns=[*keys[:4], "default_lr", "tuned_lr", "gain", "ci_low", "ci_high", "p_value"])
    family = table.groupby(keys[:3])["p_value"]
    table["p_holm"] = family.transform(lambda p: holm(p.to_numpy())) if len(table) else []
    return table.sort_values(keys[:4]).reset_index(drop=True)


def baseline_gaps(summary: pd.DataFrame) -> pd.DataFrame:
    """Every perturbation row minus the mean-signature baseline on the same perturbations, model and metric:
    difference, paired 95% bootstrap CI and p-value (replicates resample the same held-out perturbations)."""
    rows = summary[summary["family"] == PERTURBATION_FAMILY]
    baseline = rows[rows["backbone"] == BASELINE].set_index(
        ["view", "universe", "task", "classifier", "metric", "genes_digest"]
    )
    out = []
    for row in rows[rows["backbone"] != BASELINE].to_dict("records"):
        key = (row["view"], row["universe"], row["task"], row["classifier"], row["metric"], row["genes_digest"])
        if key not in baseline.index:
            continue
        base = baseline.loc[key]
        gap = paired_gap(row["bootstrap"], base["bootstrap"])
        if gap is None:
            continue
        low, high, p_value = gap
        out.append(
            {
                **{k: row[k] for k in KEYS},
                "estimate": row["estimate"],
                "mean_signature": base["estimate"],
                "gap": row["estimate"] - base["estimate"],
                "gap_ci_low": low,
                "gap_ci_high": high,
                "p_value": p_value,
            }
        )
    return pd.DataFrame(
        out, columns=[*KEYS, "estimate", "mean_signature", "gap", "gap_ci_low", "gap_ci_high", "p_value"]
    )


def perturbation_table(summary: pd.DataFrame, universe: str = "all_genes") -> pd.DataFrame:
    """One row per (task, view, backbone, model): every metric as mean ± SD over folds (the random control: its
    band mean over draws), the primary metric's 95% CI, and its gap to the mean-signature baseline with a paired CI."""
    rows = summary[(summary["family"] == PERTURBATION_FAMILY) & (summary["universe"] == universe)]
    if rows.empty:
        return pd.DataFrame()
    cells = rows.assign(cell=[f"{e:.3f} ± {sd:.3f}" for e, sd in zip(rows["estimate"], rows["sd"])])
    index = ["task", "view", "backbone", "classifier"]
    table = cells.pivot_table(index=index, columns="metric", values="cell", aggfunc="first")
    table = table[
        [m for m in PERTURBATION_METRIC_ORDER if m in table.columns]
        + sorted(set(table.columns) - set(PERTURBATION_METRIC_ORDER))
    ]
    primary = rows[rows["metric"] == rows["kind"].map(PRIMARY_METRIC)].set_index(index)
    table.insert(0, "scored", primary["n_genes"].reindex(table.index))
    table.insert(1, "excluded", primary["n_excluded"].reindex(table.index))
    table["primary [95% CI]"] = [
        f"{p['metric']} {p['estimate']:.3f} [{p['ci_low']:.3f}, {p['ci_high']:.3f}]"
        for _, p in primary.reindex(table.index).iterrows()
    ]
    gaps = baseline_gaps(rows)
    gaps = gaps.merge(primary.reset_index()[index + ["metric"]], on=index + ["metric"]).set_index(index)

    def gap_cell(key) -> str:
        if key not in gaps.index:
            return ""
        g = gaps.loc[key]
        return f"{g['gap']:+.3f} [{g['gap_ci_low']:+.3f}, {g['gap_ci_high']:+.3f}] p={g['p_value']:.3g}"

    table["vs mean-signature [95% CI]"] = [gap_cell(key) for key in table.index]
    table.columns.name = None
    return table.rename_axis(index=["task", "view", "backbone", "model"]).reset_index()


def random_near_mean_signature(
    summary: pd.DataFrame, tolerance: float = 0.02, min_perturbations: int = 100
) -> pd.DataFrame:
    """Perturbation tasks: the random control's band mean on the primary metric, for every model, must lie within
    `tolerance` of the mean-signature baseline (a random embedding carries no gene identity the model can use;
    far above the baseline means leakage, far below means the model fits noise)."""
    rows = summary[
        (summary["family"] == PERTURBATION_FAMILY)
        & (summary["metric"] == summary["kind"].map(PRIMARY_METRIC))
        & (summary["n_genes"] >= min_perturbations)
    ]
    keys = ["view", "universe", "task", "classifier", "metric"]
    random = rows[rows["backbone"] == "random-gaussian"]
    baseline = rows[rows["backbone"] == BASELINE][keys + ["estimate"]].rename(columns={"estimate": "mean_signature"})
    checked = random.merge(baseline, on=keys)
    checked = checked.assign(near=(checked["estimate"] - checked["mean_signature"]).abs() <= tolerance)
    return checked[keys + ["n_genes", "n_draws", "estimate", "band_low", "band_high", "mean_signature", "near"]]

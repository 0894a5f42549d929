"""Every section of the leaderboard, built once from its summary: the asset renders them as metadata, the CLI
prints them and the release writes them as files."""

from dataclasses import dataclass

import pandas as pd

from ..texts.views import VIEWS
from .cells import batch_effect_table, cell_gains, cell_type_table, clustering_table, gains_table
from .inputs import task_spec
from .report import (
    baseline_gaps,
    family_summary,
    heatmap_png,
    leakage_audit,
    pairwise_comparisons,
    perturbation_table,
    rank_intervals,
    rank_table,
    tuning_gains,
    view_ablation,
    wide_table,
)
from .subsets import content_overlap, content_overlap_table, study_bias, study_bias_table


def leaderboard_leaks(summary: pd.DataFrame) -> pd.DataFrame:
    """The leakage audit of a leaderboard's text views against its gene tasks (cell and batch-effect tasks have no
    text view): the ⚠ marks of every leaderboard table, in the UI, the CLI and the release."""
    text_tasks = summary.loc[~summary["kind"].isin(["cells", "batch_effect"]), "task"].unique()
    return leakage_audit(
        {v: VIEWS[v] for v in summary["view"].unique() if v in VIEWS}, {t: task_spec(t) for t in text_tasks}
    )


@dataclass(frozen=True)
class LeaderboardSections:
    """The tables (and the heatmap) of one leaderboard summary; `*_table` fields are the shown forms of the long
    tables beside them."""

    leaks: pd.DataFrame
    leaderboard: pd.DataFrame
    """Backbone/view rows × gene-task columns on all_genes, with ⚠ marks and overall rank intervals."""
    leaderboard_with_summary_only: pd.DataFrame
    families: pd.DataFrame
    long: pd.DataFrame
    """Every summary row, without its bootstrap replicates."""
    comparisons: pd.DataFrame
    ranks: pd.DataFrame
    ranks_table: pd.DataFrame
    go_minus_summary: pd.DataFrame
    tuning: pd.DataFrame
    cell_types: pd.DataFrame
    cell_gains: pd.DataFrame
    cell_gains_table: pd.DataFrame
    """Macro-F1 of the kNN classifier and its gain over each baseline."""
    cell_gains_ari_table: pd.DataFrame
    cell_clustering: pd.DataFrame
    batch_effect: pd.DataFrame
    perturbation: pd.DataFrame
    perturbation_vs_mean_signature: pd.DataFrame
    study_bias: pd.DataFrame
    study_bias_table: pd.DataFrame
    content_overlap: pd.DataFrame
    content_overlap_table: pd.DataFrame
    heatmap: bytes


def build_sections(summary: pd.DataFrame) -> LeaderboardSections:
    """Every section of the leaderboard whose summary (leaderboard/report.py summarize) is given."""
    leaks = leaderboard_leaks(summary)
    ranks, gains = rank_intervals(summary), cell_gains(summary)
    return LeaderboardSections(
        leaks=leaks,
        leaderboard=wide_table(summary, leaks=leaks),
        leaderboard_with_summary_only=wide_table(summary, "with_summary", leaks),
        families=family_summary(summary),
        long=summary.drop(columns="bootstrap"),
        comparisons=pairwise_comparisons(summary),
        ranks=ranks,
        ranks_table=rank_table(ranks),
        go_minus_summary=view_ablation(summary),
        tuning=tuning_gains(summary),
        cell_types=cell_type_table(summary),
        cell_gains=gains,
        cell_gains_table=gains_table(gains),
        cell_gains_ari_table=gains_table(gains, "kmeans", "ari"),
        cell_clustering=clustering_table(summary),
        batch_effect=batch_effect_table(summary),
        perturbation=perturbation_table(summary),
        perturbation_vs_mean_signature=baseline_gaps(summary),
        study_bias=study_bias(summary),
        study_bias_table=study_bias_table(summary),
        content_overlap=content_overlap(summary),
        content_overlap_table=content_overlap_table(summary),
        heatmap=heatmap_png(summary),
    )

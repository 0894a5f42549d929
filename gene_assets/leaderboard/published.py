"""Published reference rows: the seed papers' own figures on the tasks whose protocol the project reproduces, and
whether each of our estimates' 95% CI lies above, around or below them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

BOARD = "leaderboard"
"""Figures compared with the leaderboard's rows: binary gene tasks by stratified 5-fold CV with scikit-learn's default
probes, gene pairs fitted on Gene2vec's train split and scored on its test split."""
NINETY_TEN = "ten 90/10 repeats"
"""Figures compared with fine_tuning_results' logistic regression on the frozen embedding, Gan & Li's evaluation."""
NINETY_TEN_REPEATS = 10


@dataclass(frozen=True)
class PublishedFigure:
    source: str
    citation: str
    model: str
    task: str
    classifier: str
    metric: str
    value: float
    decimals: int
    """Digits the paper gives: the figure stands for every value that rounds to it."""
    evaluation: str
    """Which of our estimates share its protocol: BOARD or NINETY_TEN."""
    protocol: str

    @property
    def shown(self) -> str:
        return f"{self.value:.{self.decimals}f}"

    @property
    def rounding(self) -> tuple[float, float]:
        """The values the published figure may stand for (it was rounded to `decimals`)."""
        half = 0.5 * 10.0**-self.decimals
        return self.value - half, self.value + half


GENEPT = "GenePT"
GENEPT_CITATION = "Chen & Zou, GenePT (2023/2024)"
GENEPT_BINARY = (
    "text-embedding-ada-002 of the NCBI summary; stratified 5-fold CV ROC-AUC, scikit-learn default logistic "
    "regression and random forest"
)
GENEPT_PAIRS = (
    "text-embedding-ada-002 of the NCBI summary; Gene2vec GO-derived pairs, pair feature = sum of the two embeddings, "
    "fit on the train split, ROC-AUC on the test split"
)
LEADERBOARD_PAPER = "GenePT leaderboard"
LEADERBOARD_CITATION = "Hedley, Torr & Märtens, GenePT revisited: a backbone leaderboard"
LEADERBOARD_PAIRS = "the GenePT pipeline with the backbone varied; Gene2vec pairs, fit on train, ROC-AUC on test"
GAN_LI = "Gan & Li"
GAN_LI_CITATION = "Gan & Li, small open embedding models on GenePT's tasks"
GAN_LI_PROTOCOL = "ten repeats of a random 90/10 split, scikit-learn default logistic regression, mean ROC-AUC"


def _genept(task: str, logistic: float, forest: float) -> list[PublishedFigure]:
    return [
        PublishedFigure(GENEPT, GENEPT_CITATION, "ada-002", task, classifier, "roc_auc", value, 2, BOARD, GENEPT_BINARY)
        for classifier, value in (("logistic_regression", logistic), ("random_forest", forest))
    ]


def _gan_li(task: str, value: float) -> PublishedFigure:
    return PublishedFigure(
        GAN_LI,
        GAN_LI_CITATION,
        "GIST-all-MiniLM-L6-v2",
        task,
        "logistic_regression",
        "roc_auc",
        value,
        3,
        NINETY_TEN,
        GAN_LI_PROTOCOL,
    )


PUBLISHED_FIGURES: tuple[PublishedFigure, ...] = (
    *_genept("dosage_sensitive_tfs", 0.89, 0.92),
    *_genept("bivalent_vs_no_methylation", 0.91, 0.92),
    *_genept("bivalent_vs_lys4_only", 0.94, 0.95),
    *_genept("tf_range_chen2020", 0.73, 0.64),
    PublishedFigure(
        GENEPT,
        GENEPT_CITATION,
        "ada-002",
        "gene_interaction",
        "logistic_regression",
        "roc_auc",
        0.82,
        2,
        BOARD,
        GENEPT_PAIRS,
    ),
    *(
        PublishedFigure(
            LEADERBOARD_PAPER,
            LEADERBOARD_CITATION,
            "its best backbone",
            "gene_interaction",
            classifier,
            "roc_auc",
            value,
            3,
            BOARD,
            LEADERBOARD_PAIRS,
        )
        for classifier, value in (("logistic_regression", 0.858), ("random_forest", 0.873))
    ),
    _gan_li("tf_range_geneformer", 0.608),
    _gan_li("dosage_sensitive_tfs", 0.887),
    _gan_li("bivalent_vs_lys4_only", 0.940),
    _gan_li("bivalent_vs_no_methylation", 0.912),
)
"""Every published figure the board quotes, with its source. Left out because our protocol differs: the leaderboard
paper's gene functionality (GenePT's 70/30 split, which its pipeline keeps; ours is 5-fold CV) and its Aorta cell
macro-F1 (no Aorta dataset here)."""

COMPARISON_COLUMNS = [
    "source",
    "model",
    "task",
    "classifier",
    "metric",
    "published",
    "backbone",
    "view",
    "estimate",
    "ci_low",
    "ci_high",
    "verdict",
]
NOT_SCORED = "not scored"


def verdict(figure: PublishedFigure, ci_low: float, ci_high: float) -> str:
    """'above' when the whole 95% CI lies above every value the rounded figure stands for, 'below' when it lies
    below, else 'around'."""
    low, high = figure.rounding
    if ci_low > high:
        return "above"
    if ci_high < low:
        return "below"
    return "around"


def leaderboard_estimates(long: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard rows a BOARD figure is compared with: all_genes, one paired draw (not the random
    control's band), on the genes the comparison shares."""
    rows = long[(long["universe"] == "all_genes") & ~(long["n_draws"].fillna(1) > 1)]
    if "comparable" in rows:
        rows = rows[rows["comparable"].astype(bool)]
    return rows.assign(evaluation=BOARD)[
        ["evaluation", "backbone", "view", "task", "classifier", "metric", "estimate", "ci_low", "ci_high"]
    ]


def fine_tuning_estimates(fine_tuning: pd.DataFrame | None) -> pd.DataFrame:
    """The frozen-embedding logistic regression of leaderboard_fine_tuning.csv, where it ran Gan & Li's ten repeats."""
    columns = ["evaluation", "backbone", "view", "task", "classifier", "metric", "estimate", "ci_low", "ci_high"]
    if fine_tuning is None or fine_tuning.empty:
        return pd.DataFrame(columns=columns)
    rows = fine_tuning[fine_tuning["repeats"] == NINETY_TEN_REPEATS]
    return pd.DataFrame(
        {
            "evaluation": NINETY_TEN,
            "backbone": rows["backbone"],
            "view": rows["view"],
            "task": rows["task"],
            "classifier": "logistic_regression",
            "metric": "roc_auc",
            "estimate": rows["frozen"],
            "ci_low": rows["frozen_low"],
            "ci_high": rows["frozen_high"],
        },
        columns=columns,
    )


def published_comparison(long: pd.DataFrame, fine_tuning: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per published figure and each of our estimates of the same task, classifier, metric and protocol
    (backbone, view, estimate [95% CI] and the verdict); a figure none of ours matches gets one NOT_SCORED row."""
    ours = pd.concat(
        [frame for frame in (leaderboard_estimates(long), fine_tuning_estimates(fine_tuning)) if len(frame)]
        or [fine_tuning_estimates(None)],
        ignore_index=True,
    )
    rows = []
    for figure in PUBLISHED_FIGURES:
        quoted = {
            "source": figure.source,
            "model": figure.model,
            "task": figure.task,
            "classifier": figure.classifier,
            "metric": figure.metric,
            "published": figure.shown,
        }
        matched = ours[
            (ours["evaluation"] == figure.evaluation)
            & (ours["task"] == figure.task)
            & (ours["classifier"] == figure.classifier)
            & (ours["metric"] == figure.metric)
        ].sort_values(["view", "backbone"])
        if matched.empty:
            rows.append({**quoted, "backbone": "", "view": "", "verdict": NOT_SCORED})
        for row in matched.to_dict("records"):
            rows.append(
                {
                    **quoted,
                    **{k: row[k] for k in ("backbone", "view", "estimate", "ci_low", "ci_high")},
                    "verdict": verdict(figure, row["ci_low"], row["ci_high"]),
                }
            )
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def comparison_table(comparison: pd.DataFrame) -> pd.DataFrame:
    """published_comparison as shown: our estimate as 'estimate [low, high]'."""
    shown = comparison.drop(columns=["estimate", "ci_low", "ci_high"])
    shown.insert(
        shown.columns.get_loc("verdict"),
        "ours [95% CI]",
        [
            f"{e:.3f} [{lo:.3f}, {hi:.3f}]" if np.isfinite(e) else ""
            for e, lo, hi in comparison[["estimate", "ci_low", "ci_high"]].to_numpy(float)
        ],
    )
    return shown


def quoted_board_rows(board: pd.DataFrame) -> pd.DataFrame:
    """The board (leaderboard.csv's wide table) with one quoted row per published model below it: its figures
    under the board's primary classifier (logistic regression) in the task columns the board has."""
    if board.empty:
        return board
    figures = [
        f
        for f in PUBLISHED_FIGURES
        if f.evaluation == BOARD and f.classifier == "logistic_regression" and f.task in board.columns
    ]
    rows = []
    for source, model in dict.fromkeys((f.source, f.model) for f in figures):
        row = dict.fromkeys(board.columns, "")
        row.update(backbone=f"“{model}” ({source}, published)", view="—")
        row.update({f.task: f"{f.shown} (published)" for f in figures if (f.source, f.model) == (source, model)})
        rows.append(row)
    return pd.concat([board.astype(object), pd.DataFrame(rows, columns=board.columns)], ignore_index=True)


def sources_table() -> pd.DataFrame:
    """Each quoted source once: the citation and the protocol of its figures."""
    rows = {(f.source, f.citation, f.protocol): None for f in PUBLISHED_FIGURES}
    return pd.DataFrame(list(rows), columns=["source", "citation", "protocol"])

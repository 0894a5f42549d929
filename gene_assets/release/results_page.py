"""The results page: a release's leaderboard tables as one markdown page that names the release it came from.

Rendering only: `render_results_page` turns the release's CSV texts into markdown; `gene-assets report` pulls and
verifies the release and writes the page. Every table names the release file it shows; numbers are that file's
values (shown_number rounds them to 3 decimals)."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..leaderboard.published import comparison_table, published_comparison, quoted_board_rows, sources_table
from ..storage import is_url

NUMBER = re.compile(r"[-+]?\d+\.\d+(?:[eE][-+]?\d+)?")
"""A decimal number with a fractional part: what the page shortens (integers and words are shown as released)."""


@dataclass(frozen=True)
class ReleaseSource:
    """Where the page's numbers come from."""

    version: str
    revision: str
    created_at: str | None
    data_md5: str | None
    repo: str
    """The release repository as given; the page names it only when it is a URL (a local path is one machine's)."""
    manifest: dict


def shown_number(text: str) -> str:
    """A released decimal as the page shows it: a whole number without decimals, else 3 decimals (3 significant
    digits below 0.01)."""
    value = float(text)
    if value.is_integer():
        return str(int(value))
    if abs(value) < 0.01:
        return f"{value:.3g}"
    return f"{value:.3f}"


def shown_cell(text: str) -> str:
    """A released cell as the page shows it: a lone decimal number through shown_number, other text as released."""
    text = str(text)
    return shown_number(text) if NUMBER.fullmatch(text.strip()) else text


def markdown_table(frame: pd.DataFrame) -> str:
    """A pipe table of string cells (| escaped)."""

    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(cell(c) for c in frame.columns) + " |",
        "|" + "---|" * len(frame.columns),
        *("| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)),
    ]
    return "\n".join(lines)


def as_text(csv_text: str) -> pd.DataFrame:
    """A released CSV with every cell as its text (empty for a missing value); no rows for an empty table."""
    try:
        return pd.read_csv(io.StringIO(csv_text), dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def as_numbers(csv_text: str) -> pd.DataFrame:
    try:
        return pd.read_csv(io.StringIO(csv_text))
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


@dataclass(frozen=True)
class Section:
    title: str
    file: str
    note: str
    columns: tuple[str, ...] = ()
    """The file's columns shown (all when empty)."""
    rows: dict | None = None
    """Rows kept: column → value (all rows when None)."""


SECTIONS = (
    Section(
        "Overall rank intervals",
        "leaderboard_ranks.csv",
        "Mean rank over the gene tasks' primary metrics, per view and universe: the point rank, its 95% "
        "paired-bootstrap interval, P(first) and the group not told apart from its leader (every task's own rank "
        "interval is in the file).",
        ("view", "universe", "backbone", "estimate", "rank", "rank_low", "rank_high", "p_first", "group", "n_tasks"),
        {"task": "overall"},
    ),
    Section(
        "Cell types",
        "leaderboard_cells.csv",
        "kNN macro-F1 [95% CI] per cell embedding and dataset; ★ best on the dataset, ≈ not significantly worse.",
    ),
    Section(
        "Batch effect",
        "leaderboard_batch_effect.csv",
        "Mixing across the studies of one tissue (batch_asw, batch_entropy) and cell-type conservation (label_asw, "
        "transfer_accuracy) [95% CI]; ★ best, ≈ not significantly worse.",
    ),
    Section(
        "Unseen genetic perturbation",
        "leaderboard_perturbation.csv",
        "Mean ± SD over folds per metric; the primary metric's 95% CI and its gap to the mean-signature baseline "
        "with a paired 95% CI.",
    ),
    Section(
        "Study bias",
        "leaderboard_study_bias.csv",
        "Primary metric on all genes and on the least-studied third (by summary words, by GO annotations); "
        "difference = third − all with its paired 95% CI.",
        (
            "task",
            "view",
            "backbone",
            "subset",
            "estimate_all",
            "estimate_subset",
            "difference",
            "difference_ci_low",
            "difference_ci_high",
            "n_items_subset",
        ),
        {"universe": "all_genes"},
    ),
    Section(
        "Term masking",
        "leaderboard_term_masking.csv",
        "Primary metric with the task's term names masked vs as many random words masked; drop = random − term; "
        "named_drop: the median drop over the labels whose name occurs in the view's texts (labels_named), the "
        "check's statistic; median_drop: over every replicate; verdict: LEAK where a view the leakage audit calls "
        "clean drops more than allowed, cannot judge where too few labels are named.",
        (
            "task",
            "view",
            "backbone",
            "metric",
            "status",
            "term_masked",
            "random_masked",
            "labels_named",
            "named_drop",
            "median_drop",
            "verdict",
        ),
    ),
    Section(
        "Tuned logistic regression",
        "leaderboard_tuning.csv",
        "ROC-AUC of logistic regression with C chosen by nested cross-validation minus the default (C = 1), paired "
        "95% CI; p_holm over the tasks of each backbone, view and universe (`full` protocol only).",
    ),
    Section(
        "Fine-tuned vs frozen",
        "leaderboard_fine_tuning.csv",
        "Mean test ROC-AUC over 90/10 repeats of the fine-tuned backbone and of logistic regression on its frozen "
        "embedding [95% CI], and their paired gap.",
        (
            "backbone",
            "view",
            "task",
            "fine_tuned",
            "fine_tuned_low",
            "fine_tuned_high",
            "frozen",
            "frozen_low",
            "frozen_high",
            "gap",
            "gap_low",
            "gap_high",
            "repeats",
        ),
    ),
)


def section_table(section: Section, csv_text: str) -> pd.DataFrame:
    """The rows and columns of one released file the section shows, cells as shown_cell makes them."""
    table = as_text(csv_text)
    for column, value in (section.rows or {}).items():
        table = table[table[column] == value] if column in table else table.iloc[:0]
    if section.columns:
        table = table[[c for c in section.columns if c in table.columns]]
    return table.map(shown_cell)


def source_line(*files: str) -> str:
    return "Source: " + ", ".join(f"`{name}`" for name in files) + " of the release."


def header(source: ReleaseSource) -> list[str]:
    code = source.manifest.get("code") or {}
    commit = code.get("commit") or "not recorded"
    state = " plus uncommitted changes" if code.get("uncommitted_changes") else ""
    where = f" of `{source.repo}`" if is_url(source.repo) or source.repo.startswith("git@") else ""
    return [
        "# Results",
        "",
        f"Generated by `gene-assets report --release {source.version}` from release **{source.version}**{where}: "
        f"commit `{source.revision}`, released {source.created_at or 'at an unrecorded date'}, "
        f"`data.dvc` md5 `{source.data_md5 or 'not recorded'}`; computed with code `{commit}`{state}. Gene tasks "
        f"were scored under the **{source.manifest.get('protocol') or 'unrecorded'}** evaluation protocol "
        "(estimate [95% CI]; ★ best, ≈ not significantly worse than the best, ⚠ the view shares a source with the "
        "labels). Do not edit this page: run the command again on a newer release.",
    ]


def board_section(files: dict[str, str]) -> list[str]:
    lines = ["", "## Board (all genes)", ""]
    board = as_text(files.get("leaderboard.csv", "")).map(shown_cell)
    if board.empty:
        return [*lines, "Not in this release (`leaderboard.csv` is missing or has no rows)."]
    lines += [
        "Primary metric per gene task, the overall rank [95% interval]; the quoted rows below the board are "
        "published figures (logistic regression) of the seed papers, under the protocols listed in the next "
        "section.",
        "",
        source_line("leaderboard.csv"),
        "",
        markdown_table(quoted_board_rows(board)),
    ]
    return lines


def published_section(files: dict[str, str]) -> list[str]:
    lines = ["", "## Published reference rows", ""]
    long = as_numbers(files.get("leaderboard_long.csv", ""))
    if long.empty:
        return [*lines, "Not in this release (`leaderboard_long.csv` is missing or has no rows)."]
    fine_tuning = files.get("leaderboard_fine_tuning.csv")
    comparison = published_comparison(long, as_numbers(fine_tuning) if fine_tuning else None)
    used = ["leaderboard_long.csv", *(["leaderboard_fine_tuning.csv"] if fine_tuning else [])]
    return [
        *lines,
        "Each published figure beside every estimate of ours under the same task, classifier, metric and "
        "protocol on all genes: above or below when our whole 95% CI lies above or below every value the rounded "
        "figure stands for, around otherwise; not scored when this release has no such estimate (Gan & Li's "
        "figures need `fine_tuning_results` with ten 90/10 repeats).",
        "",
        markdown_table(sources_table()),
        "",
        source_line(*used),
        "",
        markdown_table(comparison_table(comparison).fillna("")),
    ]


def render_results_page(source: ReleaseSource, files: dict[str, str]) -> str:
    """The results page of a release whose CSV files (name → text) are given."""
    lines = [*header(source), *board_section(files), *published_section(files)]
    for section in SECTIONS:
        lines += ["", f"## {section.title}", ""]
        table = section_table(section, files[section.file]) if section.file in files else pd.DataFrame()
        if table.empty:
            lines.append(f"Not in this release (`{section.file}` is missing or has no rows).")
            continue
        lines += [section.note, "", source_line(section.file), "", markdown_table(table)]
    return "\n".join(lines) + "\n"


def release_csv_files(data_dir: Path, manifest: dict) -> dict[str, str]:
    """The CSV files of a pulled, verified release, name → text."""
    return {name: (Path(data_dir) / name).read_text() for name in manifest["files"] if name.endswith(".csv")}

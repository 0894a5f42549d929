"""Term masking: does a text view score a task because its text names the task's labels?

For a task whose labels are annotation terms (GO, KEGG, OMIM gene sets, HGNC gene groups), every gene's text is
embedded twice: with the words of the task's term names masked, and with as many words masked at random positions of
the same text. Scoring both on the leaderboard's folds, the drop (random-masked minus term-masked) is what the term
names themselves contribute."""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from collections.abc import Iterable

import numpy as np
import pandas as pd

from ..leaderboard.report import PRIMARY_CLASSIFIER, leakage_audit
from ..results import GeneMatrix
from ..tasks.assets import label_matrix, labels_of, restrict
from ..tasks.evaluation import Protocol, evaluate_binary, evaluate_multiclass, multilabel_fold_aucs
from ..tasks.gene_properties import GENE_PROPERTY_TASKS, GENE_SET_FILES, read_gmt, term_names
from ..tasks.spec import PRIMARY_METRIC, GeneTask, TaskLabelError

WORD = re.compile(r"\w+")
MASK_TOKEN = "[MASK]"
"""What replaces each masked word (in both masks, so the two texts differ only in which words are hidden)."""
MAX_DROP = 0.02
"""The largest median drop allowed on a (task, view) pair the leakage audit calls clean."""
TERM_TASKS = {
    task.name: task for task in GENE_PROPERTY_TASKS if task.name in GENE_SET_FILES or task.label_sources == ("HGNC",)
}
"""Tasks whose labels are named annotation terms: the gene-set tasks (names from their GMT files) and the HGNC gene
groups (the label is the group's name)."""


class TermMatcher:
    """Finds whole term names in a text as runs of word tokens (case and the punctuation between words ignored):
    the longest term first, left to right, terms not overlapping."""

    def __init__(self, terms: Iterable[str]):
        self.phrases: set[tuple[str, ...]] = set()
        lengths = defaultdict(set)
        for term in terms:
            words = tuple(word.casefold() for word in WORD.findall(str(term)))
            if words:
                self.phrases.add(words)
                lengths[words[0]].add(len(words))
        self.lengths = {first: sorted(n, reverse=True) for first, n in lengths.items()}

    def positions(self, words: list[str]) -> list[int]:
        """Indices of the words that belong to a term name."""
        folded = [word.casefold() for word in words]
        found, i = [], 0
        while i < len(folded):
            for n in self.lengths.get(folded[i], ()):
                if i + n <= len(folded) and tuple(folded[i : i + n]) in self.phrases:
                    found.extend(range(i, i + n))
                    i += n
                    break
            else:
                i += 1
        return found


def mask_words(text: str, positions: Iterable[int]) -> str:
    """The text with its word tokens at `positions` (indices among WORD matches) replaced by MASK_TOKEN."""
    chosen, index = set(positions), itertools.count()
    return WORD.sub(lambda match: MASK_TOKEN if next(index) in chosen else match.group(0), text)


def mask_texts(texts: pd.DataFrame, matcher: TermMatcher, seed: int) -> pd.DataFrame:
    """entrez_id, term_masked, random_masked, n_masked, n_words per text: the term names' words masked, and as many
    words at positions drawn uniformly from all of the text's words (seeded by (seed, Entrez id))."""
    rows = []
    for entrez_id, text in zip(texts["entrez_id"], texts["text"]):
        words = WORD.findall(text)
        terms = matcher.positions(words)
        drawn = np.random.default_rng([seed, int(entrez_id)]).choice(len(words), size=len(terms), replace=False)
        rows.append((int(entrez_id), mask_words(text, terms), mask_words(text, drawn), len(terms), len(words)))
    return pd.DataFrame(rows, columns=["entrez_id", "term_masked", "random_masked", "n_masked", "n_words"])


def masked_pairs(views: dict, tasks: dict = TERM_TASKS) -> pd.DataFrame:
    """The leakage audit's rows (view, task, shared_source, leaks) of every task that some view shares a source
    with: each is masked in every view, and a pair the audit calls clean (leaks False) is held to MAX_DROP."""
    audit = leakage_audit(views, tasks)
    exposed = audit.loc[audit["leaks"], "task"].unique()
    return audit[audit["task"].isin(exposed)].reset_index(drop=True)


def label_terms(task: str, labels: pd.DataFrame, gmt_path=None) -> pd.Series:
    """Label → term name of a term task: from its GMT file for a gene-set task, else the label itself."""
    if task in GENE_SET_FILES:
        return term_names(read_gmt(gmt_path))
    names = pd.Series(labels["label"].unique())
    return pd.Series(names.to_numpy(), index=names.to_numpy())


def replicate_values(task: GeneTask, labels: pd.DataFrame, genes: GeneMatrix, protocol: Protocol):
    """The task's primary metric and its replicates: per-label AUC (averaged over folds) for a multilabel task, from
    the ridge probe (one solve for every label: the check compares two maskings under one probe, and the published
    per-label logistic regression would cost minutes per masked corpus), else the fold values of the primary
    classifier as the leaderboard computes them."""
    if task.kind == "multilabel":
        ids, Y = label_matrix(task, labels)
        if Y.shape[1] == 0:
            low, high = task.label_size_range
            raise TaskLabelError(f"Task {task.name}: no label has {low}–{high} genes in this universe.")
        _, _, per_fold = multilabel_fold_aucs(genes.rows(ids), Y, protocol, probe="ridge")
        with np.errstate(invalid="ignore"):
            per_label = np.nanmean(per_fold, axis=0)
        return float(np.nanmean(per_label)), per_label, "label"
    X = genes.rows(labels["entrez_id"])
    if task.kind == "binary":
        rows = evaluate_binary(task, X, labels["label"], protocol, bootstrap=False, forest=False)
    elif task.kind == "multiclass":
        rows, _ = evaluate_multiclass(task, X, labels["label"], protocol, bootstrap=False)
    else:
        raise ValueError(f"Task {task.name}: term masking scores binary, multiclass and multilabel tasks only.")
    row = next(
        r for r in rows if r["classifier"] == PRIMARY_CLASSIFIER[task.kind] and r["metric"] == PRIMARY_METRIC[task.kind]
    )
    return row["estimate"], np.asarray(row["fold_values"], float), "fold"


def masking_scores(
    task: GeneTask, labels: pd.DataFrame, term: GeneMatrix, random: GeneMatrix, protocol: Protocol
) -> dict:
    """Both masks scored on the same genes and folds; drop = random-masked − term-masked per replicate, its median."""
    term_estimate, term_values, replicate = replicate_values(task, labels, term, protocol)
    random_estimate, random_values, _ = replicate_values(task, labels, random, protocol)
    drops = random_values - term_values
    drops = drops[np.isfinite(drops)]
    scores = {
        "metric": PRIMARY_METRIC[task.kind],
        "replicate": replicate,
        "n_replicates": len(drops),
        "term_masked": term_estimate,
        "random_masked": random_estimate,
        "median_drop": float(np.median(drops)) if len(drops) else np.nan,
        "share_dropped": float((drops > 0).mean()) if len(drops) else np.nan,
    }
    return scores


SCORE_COLUMNS = ("metric", "replicate", "n_replicates", "term_masked", "random_masked", "median_drop", "share_dropped")
"""What masking_scores gives a scored row; a skipped row has them empty."""


def scoring_labels(task: GeneTask, labels: pd.DataFrame, genes: Iterable[int]) -> pd.DataFrame:
    """The task's labels restricted to `genes` as the results assets restrict them (restrict)."""
    inside, _ = restrict(task, labels_of(task, labels), set(genes))
    return inside


def scored_labels(task: GeneTask, inside: pd.DataFrame) -> np.ndarray:
    """The labels the task scores on these (restricted) labels: a multilabel task's within its size range."""
    if task.kind == "multilabel":
        sizes = inside["label"].value_counts()
        low, high = task.label_size_range
        return np.sort(sizes[(sizes >= low) & (sizes <= high)].index.to_numpy())
    return np.sort(inside["label"].unique())


def flag(table: pd.DataFrame, max_drop: float = MAX_DROP) -> pd.Series:
    """Rows of a clean (task, view) pair whose median drop exceeds max_drop: the term names leak into that view."""
    return (table["status"] == "scored") & ~table["leaks"].astype(bool) & (table["median_drop"] > max_drop)


def term_masking_table(table: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard's term-masking section: one row per (task, view, backbone) with the audit's verdict on the
    pair (⚠ and the shared source, or clean), both masked scores and the median drop over the replicates, LEAK where
    a clean pair drops more than MAX_DROP, and why a row was not scored."""
    if table.empty:
        return pd.DataFrame()
    shown = table.assign(
        audit=np.where(table["leaks"].astype(bool), "⚠ " + table["shared_source"].astype(str), "clean"),
        flagged=np.where(table["flagged"].astype(bool), "LEAK", ""),
        replicates=table["n_replicates"].astype("Int64").astype(str) + " " + table["replicate"].fillna("") + "s",
    )
    shown.loc[shown["status"] != "scored", "replicates"] = ""
    columns = ["task", "view", "backbone", "audit", "metric", "term_masked", "random_masked", "median_drop"]
    return shown[[*columns, "replicates", "words_masked", "flagged", "reason"]].round(3).reset_index(drop=True)

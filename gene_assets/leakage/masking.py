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
"""The largest median drop over the named labels allowed on a (task, view) pair the leakage audit calls clean."""
MIN_NAMED_LABELS = 10
"""Fewer labels named in a view than this are too few to judge the view by (its verdict is "cannot judge")."""
TERM_TASKS = {
    task.name: task for task in GENE_PROPERTY_TASKS if task.name in GENE_SET_FILES or task.label_sources == ("HGNC",)
}
"""Tasks whose labels are named annotation terms: the gene-set tasks (names from their GMT files) and the HGNC gene
groups (the label is the group's name)."""


def phrase(term: str) -> tuple[str, ...]:
    """A term name as the matcher compares it: its word tokens, case folded (the punctuation between them ignored)."""
    return tuple(word.casefold() for word in WORD.findall(str(term)))


class TermMatcher:
    """Finds whole term names in a text as runs of word tokens (case and the punctuation between words ignored):
    the longest term first, left to right, terms not overlapping."""

    def __init__(self, terms: Iterable[str]):
        self.phrases: set[tuple[str, ...]] = set()
        lengths = defaultdict(set)
        for term in terms:
            words = phrase(term)
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

    def occurring(self, words: list[str]) -> set[tuple[str, ...]]:
        """Every term name that occurs whole in the words, a name inside a longer one's words included (the mask
        hides its words either way)."""
        folded = [word.casefold() for word in words]
        return {
            tuple(folded[i : i + n])
            for i in range(len(folded))
            for n in self.lengths.get(folded[i], ())
            if i + n <= len(folded) and tuple(folded[i : i + n]) in self.phrases
        }


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


def named_labels(texts: Iterable[str], terms: pd.Series) -> np.ndarray:
    """The labels of `terms` (label → term name) whose name occurs whole in at least one of the texts, as the masker
    finds it (case and the punctuation between words ignored), sorted."""
    matcher = TermMatcher(terms)
    found = set().union(*(matcher.occurring(WORD.findall(text)) for text in texts))
    return np.sort(terms.index[[phrase(term) in found for term in terms]].to_numpy())


def replicate_values(task: GeneTask, labels: pd.DataFrame, genes: GeneMatrix, protocol: Protocol):
    """The task's primary metric and its replicates: per-label AUC (averaged over folds, indexed by label) for a
    multilabel task, from the ridge probe (one solve for every label: the check compares two maskings under one
    probe, and the published per-label logistic regression would cost minutes per masked corpus), else the fold
    values of the primary classifier as the leaderboard computes them (indexed by fold)."""
    if task.kind == "multilabel":
        ids, Y = label_matrix(task, labels)
        if Y.shape[1] == 0:
            low, high = task.label_size_range
            raise TaskLabelError(f"Task {task.name}: no label has {low}–{high} genes in this universe.")
        _, _, per_fold = multilabel_fold_aucs(genes.rows(ids), Y, protocol, probe="ridge")
        with np.errstate(invalid="ignore"):
            per_label = np.nanmean(per_fold, axis=0)
        return float(np.nanmean(per_label)), pd.Series(per_label, index=scored_labels(task, labels)), "label"
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
    return row["estimate"], pd.Series(row["fold_values"], dtype=float), "fold"


def masking_scores(
    task: GeneTask, labels: pd.DataFrame, term: GeneMatrix, random: GeneMatrix, protocol: Protocol, named: Iterable
) -> dict:
    """Both masks scored on the same genes and folds; drop = random-masked − term-masked per replicate. The check's
    statistic (named_drop) is the median drop over the `named` labels, those whose name occurs in the view's texts
    (a label named nowhere has nothing to mask); a task scored per fold has no per-label drop, so its statistic is
    the median over folds. median_drop is the median over every replicate, beside it for comparison."""
    term_estimate, term_values, replicate = replicate_values(task, labels, term, protocol)
    random_estimate, random_values, _ = replicate_values(task, labels, random, protocol)
    drops = (random_values - term_values).dropna()
    judged = drops[drops.index.isin(list(named))] if replicate == "label" else drops
    return {
        "metric": PRIMARY_METRIC[task.kind],
        "replicate": replicate,
        "n_replicates": len(drops),
        "term_masked": term_estimate,
        "random_masked": random_estimate,
        "named_drop": float(judged.median()) if len(judged) else np.nan,
        "median_drop": float(drops.median()) if len(drops) else np.nan,
        "share_dropped": float((drops > 0).mean()) if len(drops) else np.nan,
    }


SCORE_COLUMNS = (
    "metric",
    "replicate",
    "n_replicates",
    "term_masked",
    "random_masked",
    "named_drop",
    "median_drop",
    "share_dropped",
)
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


def verdicts(table: pd.DataFrame, max_drop: float = MAX_DROP, min_named_labels: int = MIN_NAMED_LABELS) -> pd.Series:
    """Per row: "cannot judge" when fewer than min_named_labels of the task's labels are named in the view (neither
    clean nor blocking), "⚠ by source" on a view the leakage audit marks (reported, never blocking), "LEAK" on a
    clean view whose median drop over its named labels exceeds max_drop (blocking), else "passes"; empty when the row
    was not scored."""
    scored = table["status"] == "scored"
    return pd.Series(
        np.select(
            [
                ~scored,
                table["labels_named"] < min_named_labels,
                table["leaks"].astype(bool),
                table["named_drop"] > max_drop,
            ],
            ["", "cannot judge", "⚠ by source", "LEAK"],
            "passes",
        ),
        index=table.index,
    )


def term_masking_table(table: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard's term-masking section: one row per (task, view, backbone) with the audit's verdict on the
    pair (⚠ and the shared source, or clean), both masked scores, the labels named in the view and the median drop
    over them (the check's statistic) beside the median over every replicate, the verdict, and why a row was not
    scored."""
    if table.empty:
        return pd.DataFrame()
    shown = table.assign(
        audit=np.where(table["leaks"].astype(bool), "⚠ " + table["shared_source"].astype(str), "clean"),
        replicates=table["n_replicates"].astype("Int64").astype(str) + " " + table["replicate"].fillna("") + "s",
    )
    shown.loc[shown["status"] != "scored", "replicates"] = ""
    columns = ["task", "view", "backbone", "audit", "metric", "term_masked", "random_masked", "labels_named"]
    columns += ["named_drop", "median_drop", "replicates", "words_masked", "verdict", "reason"]
    return shown[columns].round(3).reset_index(drop=True)

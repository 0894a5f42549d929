"""Subsets a task is also scored on, from the same fitted probes, folds and resamples: the least-studied third of its
genes (study bias) and, for the gene-pair task, the pairs whose texts do not name each other (content overlap).

A subset's figure is a result row of its own whose metric is `<metric>@<subset>` (e.g. `roc_auc@without_mentions`),
so the leaderboard summarizes, compares and ranks it like any metric, and the primary metric stays what it was."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

SUBSET_SEPARATOR = "@"
STUDY_MEASURES = {"summary_words": "least_studied_by_summary", "go_annotations": "least_studied_by_go"}
"""Study depth columns of gene_universes and the subset each one defines: the third of a task's genes with the
fewest RefSeq summary words, or with the fewest GO annotations (ties broken by the other measure, then Entrez id)."""
WITHOUT_MENTIONS = "without_mentions"
"""Gene pairs neither of whose texts names the other gene (see mentions_other)."""
MIN_ALIAS_CHARS = 3
COMMON_NAME_SHARE = 0.01
"""An alias found in more than this share of a view's texts (DNA-, ATP-like words) is not taken as naming a gene."""


def subset_metric(metric: str, subset: str) -> str:
    return f"{metric}{SUBSET_SEPARATOR}{subset}"


def split_metric(metric: str) -> tuple[str, str | None]:
    """(metric, subset) of a result row's metric; subset None for a figure on all of the task's items."""
    base, _, subset = metric.partition(SUBSET_SEPARATOR)
    return base, subset or None


def least_studied(study: pd.DataFrame, genes) -> dict[str, set]:
    """Per study-depth measure, the third (n // 3, at least one) of `genes` that is least studied by it.
    `study` is indexed by entrez_id with the STUDY_MEASURES columns; a gene it lacks counts as unstudied (0)."""
    genes = np.unique(np.asarray(genes))
    depth = study.reindex(genes).fillna(0)
    chosen = {}
    for measure, subset in STUDY_MEASURES.items():
        other = next(m for m in STUDY_MEASURES if m != measure)
        order = np.lexsort((genes, depth[other].to_numpy(), depth[measure].to_numpy()))
        chosen[subset] = set(genes[order[: max(1, len(genes) // 3)]].tolist())
    return chosen


def gene_subset_masks(study: pd.DataFrame | None, entrez_ids) -> dict[str, np.ndarray]:
    """Masks over items (one per entrez id, in order) of every least-studied subset."""
    if study is None:
        return {}
    entrez_ids = np.asarray(entrez_ids)
    return {name: np.isin(entrez_ids, list(ids)) for name, ids in least_studied(study, entrez_ids).items()}


def pair_subset_masks(study: pd.DataFrame | None, pairs: pd.DataFrame, mention_column: str | None) -> dict:
    """Masks over pairs: both genes in the least-studied third of the task's genes (`study`'s index); neither
    text naming the other gene (the pairs' `mention_column`)."""
    masks = {}
    if study is not None:
        a, b = pairs["entrez_a"].to_numpy(), pairs["entrez_b"].to_numpy()
        for name, ids in least_studied(study, study.index).items():
            ids = list(ids)
            masks[name] = np.isin(a, ids) & np.isin(b, ids)
    if mention_column is not None and mention_column in pairs:
        masks[WITHOUT_MENTIONS] = ~pairs[mention_column].to_numpy(bool)
    return masks


def mention_column(view: str) -> str:
    return f"mentions_{view}"


_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-]*[A-Za-z0-9]|[A-Za-z0-9]")


def text_tokens(text: str) -> set[str]:
    """Whole words of a text as a symbol is written (letters, digits, inner '.' and '-'), plus the parts of
    hyphenated words, so that 'TP53-dependent' names TP53 and 'HLA-A' stays one word too."""
    words = set(_TOKEN.findall(text))
    return words | {part for word in words if "-" in word for part in word.split("-") if part}


def gene_names(catalog: pd.DataFrame, texts: pd.Series, genes) -> dict[int, tuple[frozenset, str | None]]:
    """Per gene of `genes` (entrez_id): the words that name it (its symbol; its aliases of at least MIN_ALIAS_CHARS
    characters that no other catalog gene has as symbol or alias and that appear in at most COMMON_NAME_SHARE of
    `texts`) and its lowercased full name (a phrase, matched case-insensitively)."""
    aliases = catalog[["entrez_id", "aliases"]].dropna().assign(alias=lambda f: f["aliases"].str.split("|"))
    aliases = aliases.explode("alias").drop_duplicates(["entrez_id", "alias"])
    shared = set(catalog["symbol"].dropna()) | set(aliases.loc[aliases["alias"].duplicated(keep=False), "alias"])
    counts = pd.Series([w for t in texts if isinstance(t, str) for w in text_tokens(t)]).value_counts()
    common = set(counts[counts > COMMON_NAME_SHARE * max(1, len(texts))].index)
    usable = aliases[(aliases["alias"].str.len() >= MIN_ALIAS_CHARS) & ~aliases["alias"].isin(shared | common)]
    own_aliases = usable.groupby("entrez_id")["alias"].agg(frozenset)
    names = {}
    for gene in catalog[catalog["entrez_id"].isin(genes)].itertuples(index=False):
        full = gene.full_name.lower() if isinstance(gene.full_name, str) and len(gene.full_name) > 3 else None
        names[int(gene.entrez_id)] = (frozenset({gene.symbol}) | own_aliases.get(gene.entrez_id, frozenset()), full)
    return names


def mentions_other(pairs: pd.DataFrame, texts: pd.DataFrame, catalog: pd.DataFrame) -> np.ndarray:
    """For each pair (entrez_a, entrez_b): whether a's text names b or b's text names a, in one view's texts
    (entrez_id, text). Naming: one of the other gene's words (gene_names) as a whole word, case as written, or its
    full name as a phrase in any case; names that also name the text's own gene (its words, a full name inside its
    own) do not count, nor does a gene paired with itself."""
    text = texts.drop_duplicates("entrez_id").set_index("entrez_id")["text"]
    genes = np.unique(pairs[["entrez_a", "entrez_b"]].to_numpy().ravel())
    names = gene_names(catalog, text, genes)
    text = text.reindex(genes)
    tokens = {g: text_tokens(t) if isinstance(t, str) else set() for g, t in text.items()}
    lowered = {g: t.lower() if isinstance(t, str) else "" for g, t in text.items()}
    unnamed = (frozenset(), None)

    def names_gene(reader: int, named: int) -> bool:
        (words, full), (own_words, own_full) = names.get(named, unnamed), names.get(reader, unnamed)
        if (words - own_words) & tokens[reader]:
            return True
        if full is None or full not in lowered[reader] or (own_full is not None and full in own_full):
            return False
        return re.search(rf"(?<![a-z0-9]){re.escape(full)}(?![a-z0-9])", lowered[reader]) is not None

    return np.array(
        [
            a != b and (names_gene(a, b) or names_gene(b, a))
            for a, b in zip(pairs["entrez_a"].tolist(), pairs["entrez_b"].tolist())
        ],
        dtype=bool,
    )


def mention_shares(pairs: pd.DataFrame) -> pd.DataFrame:
    """Share of positive and of negative pairs flagged by each `mentions_<view>` column, per split."""
    columns = [c for c in pairs if c.startswith("mentions_")]
    shares = pairs.groupby(["split", "label"])[columns].mean().T
    shares.columns = [f"{split} {'positive' if label else 'negative'}" for split, label in shares.columns]
    return shares.rename(index=lambda c: c.removeprefix("mentions_")).rename_axis("view").round(4)

"""Text views of a gene. Each view declares which sources its text contains (for the leakage audit)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from ..errors import GeneAssetsError


class GeneTextError(GeneAssetsError, ValueError):
    """A gene cannot be given a text (it has no symbol, which every view starts from)."""


@dataclass(frozen=True)
class TextView:
    name: str
    description: str
    contains: tuple[str, ...]
    build: Callable[[dict], tuple[str, str]]
    primary_source: str
    """The source of a full text in this view; any other source is a fallback (used by the text-availability control)."""


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _present(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _symbol_view(gene: dict):
    return gene["symbol"], "symbol"


def _name_line(gene: dict) -> tuple[str, str]:
    """Symbol and official full name only: the fallback of every view, so it never adds a gene-type word
    that the name itself does not carry."""
    if _present(gene["full_name"]):
        return f"Gene {gene['symbol']}, {gene['full_name']}.", "full_name_fallback"
    return f"Gene {gene['symbol']}.", "symbol_fallback"


def _summary_view(gene: dict):
    """GenePT style: the name line followed by the RefSeq summary."""
    head, fallback = _name_line(gene)
    if _present(gene["summary"]):
        return f"{head} {gene['summary']}", "refseq_summary"
    return head, fallback


def _card_view(gene: dict):
    parts = [f"Gene {gene['symbol']}."]
    if _present(gene["full_name"]):
        parts.append(f"Official full name: {gene['full_name']}.")
    if _present(gene["gene_type"]):
        parts.append(f"Gene type: {gene['gene_type']}.")
    if _present(gene["map_location"]):
        parts.append(f"Location: {gene['map_location'].replace('|', ', ')}.")
    if _present(gene["aliases"]):
        aliases = [a for a in gene["aliases"].split("|") if a != gene["symbol"]]
        if aliases:
            parts.append(f"Also known as: {', '.join(aliases)}.")
    if _present(gene["summary"]):
        parts.append(f"Summary: {gene['summary']}")
    return " ".join(parts), "ncbi_card" if _present(gene["summary"]) else "ncbi_card_without_summary"


GO_ASPECTS = (("go_mf", "Molecular function"), ("go_bp", "Biological process"), ("go_cc", "Cellular component"))


def _go_view(gene: dict):
    sections = [f"{label}: {gene[column]}." for column, label in GO_ASPECTS if _present(gene.get(column))]
    if not sections:
        return _name_line(gene)
    return f"Gene {gene['symbol']}. " + " ".join(sections), "go_annotations"


VIEWS: dict[str, TextView] = {
    view.name: view
    for view in (
        TextView("symbol", "The gene symbol alone.", ("symbol",), _symbol_view, "symbol"),
        TextView(
            "summary",
            "Symbol, official full name and RefSeq summary (GenePT); symbol and full name when there is no summary.",
            ("symbol", "full_name", "refseq_summary"),
            _summary_view,
            "refseq_summary",
        ),
        TextView(
            "card",
            "NCBI gene card: names, gene type, cytoband, aliases and summary.",
            ("symbol", "full_name", "gene_type", "location", "aliases", "refseq_summary"),
            _card_view,
            "ncbi_card",
        ),
        TextView(
            "go",
            "Names of the gene's GO molecular function, biological process and cellular component terms; "
            "symbol and full name when the gene has no GO annotation.",
            ("symbol", "full_name", "GO"),
            _go_view,
            "go_annotations",
        ),
    )
}


def build_view(genes: pd.DataFrame, view: str) -> pd.DataFrame:
    """entrez_id, symbol, view, text, source: one row per gene (every view has a text for every gene). Every text
    starts from the symbol, so a gene without one is an error rather than an empty text."""
    unnamed = ~genes["symbol"].map(_present)
    if unnamed.any():
        ids = ", ".join(genes.loc[unnamed, "entrez_id"].astype(str).head(5))
        raise GeneTextError(
            f"{int(unnamed.sum())} genes have an empty symbol (Entrez ids {ids}), so view {view!r} would give them an "
            "empty text. Give them their symbol in gene_catalog (org.Hs.eg.db / NCBI gene_info) or leave them out."
        )
    spec = VIEWS[view]
    rows = []
    for gene in genes.to_dict("records"):
        text, source = spec.build(gene)
        rows.append((int(gene["entrez_id"]), gene["symbol"], view, _clean(text), source))
    return pd.DataFrame(rows, columns=["entrez_id", "symbol", "view", "text", "source"])

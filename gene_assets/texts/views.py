"""Text views of a gene. Each view declares which sources its text contains (for the leakage audit)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import pandas as pd


@dataclass(frozen=True)
class TextView:
    name: str
    description: str
    contains: tuple[str, ...]
    build: Callable[[dict], tuple[str, str] | None]


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _present(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _symbol_view(gene: dict):
    return gene["symbol"], "symbol"


def _summary_view(gene: dict):
    """GenePT style. Without a RefSeq summary the text is the symbol and the official full name only,
    so it never adds a gene-type word that the name itself does not carry."""
    head = f"Gene {gene['symbol']}" + (f", {gene['full_name']}." if _present(gene["full_name"]) else ".")
    if _present(gene["summary"]):
        return f"{head} {gene['summary']}", "refseq_summary"
    return head, "full_name_fallback" if _present(gene["full_name"]) else "symbol_fallback"


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
    return " ".join(parts), "ncbi_card" + ("" if _present(gene["summary"]) else "_without_summary")


GO_ASPECTS = (("go_mf", "Molecular function"), ("go_bp", "Biological process"), ("go_cc", "Cellular component"))


def _go_view(gene: dict):
    sections = [f"{label}: {gene[column]}." for column, label in GO_ASPECTS if _present(gene.get(column))]
    if not sections:
        return None
    return f"Gene {gene['symbol']}. " + " ".join(sections), "go_annotations"


VIEWS: dict[str, TextView] = {
    view.name: view
    for view in (
        TextView("symbol", "The gene symbol alone.", ("symbol",), _symbol_view),
        TextView(
            "summary",
            "Symbol, official full name and RefSeq summary (GenePT); symbol and full name when there is no summary.",
            ("symbol", "full_name", "refseq_summary"),
            _summary_view,
        ),
        TextView(
            "card",
            "NCBI gene card: names, gene type, cytoband, aliases and summary.",
            ("symbol", "full_name", "gene_type", "location", "aliases", "refseq_summary"),
            _card_view,
        ),
        TextView("go", "Names of the gene's GO molecular function, biological process and cellular component terms.",
                 ("symbol", "GO"), _go_view),
    )
}


def build_view(genes: pd.DataFrame, view: str) -> pd.DataFrame:
    """entrez_id, symbol, view, text, source for every gene that has text in this view."""
    spec = VIEWS[view]
    rows = []
    for gene in genes.to_dict("records"):
        built = spec.build(gene)
        if built is None:
            continue
        text, source = built
        text = _clean(text)
        if text:
            rows.append((int(gene["entrez_id"]), gene["symbol"], view, text, source))
    return pd.DataFrame(rows, columns=["entrez_id", "symbol", "view", "text", "source"])

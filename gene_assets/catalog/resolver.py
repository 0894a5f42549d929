"""Map symbols (current or older), aliases and Ensembl ids onto Entrez gene ids."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import pandas as pd


@dataclass
class Resolution:
    """Entrez id per input identifier (NA when unresolved) and how each was matched."""

    entrez_ids: pd.Series
    methods: pd.Series

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(self.methods))

    @property
    def n_unmapped(self) -> int:
        return int(self.entrez_ids.isna().sum())


@dataclass
class GeneResolver:
    catalog: pd.DataFrame
    _symbol: dict[str, int] = field(init=False, repr=False)
    _alias: dict[str, int] = field(init=False, repr=False)
    _ensembl: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        cat = self.catalog
        self._symbol = dict(zip(cat["symbol"].str.upper(), cat["entrez_id"].astype(int)))
        self._alias = _unique_map(cat, "aliases", exclude=self._symbol)
        self._ensembl = _unique_map(cat, "ensembl_ids")

    def symbols(self, symbols) -> Resolution:
        """Current symbol first, then an alias or previous symbol that names exactly one gene."""
        return _resolution(self._symbol_of(raw) for raw in symbols)

    def _symbol_of(self, raw) -> tuple:
        key = str(raw).strip().upper() if pd.notna(raw) else ""
        if key in self._symbol:
            return self._symbol[key], "symbol"
        if key in self._alias:
            return self._alias[key], "alias"
        return pd.NA, "unmapped"

    def identifiers(self, identifiers) -> Resolution:
        """Each identifier by its shape (identifier_kind): an Entrez id the catalog holds, an Ensembl gene id, or a
        symbol as `symbols` resolves it; methods are entrez, ensembl, symbol, alias or unmapped."""
        known = set(self.catalog["entrez_id"].astype(int))

        def resolve(raw) -> tuple:
            key = str(raw).strip() if pd.notna(raw) else ""
            kind = identifier_kind(key)
            if kind == "Entrez ids":
                return (int(key), "entrez") if int(key) in known else (pd.NA, "unmapped")
            if kind == "Ensembl ids":
                gene = self._ensembl.get(key.split(".")[0].upper())
                return (gene, "ensembl") if gene is not None else (pd.NA, "unmapped")
            return self._symbol_of(raw)

        return _resolution(resolve(raw) for raw in identifiers)

    def ensembl(self, ensembl_ids) -> Resolution:
        ids, methods = [], []
        for raw in ensembl_ids:
            key = str(raw).strip().split(".")[0].upper() if pd.notna(raw) else ""
            if key in self._ensembl:
                ids.append(self._ensembl[key]), methods.append("ensembl")
            else:
                ids.append(pd.NA), methods.append("unmapped")
        return Resolution(pd.Series(ids, dtype="Int64"), pd.Series(methods, dtype="string"))


ENSEMBL_GENE_ID = re.compile(r"ENS[A-Z]*G\d{6,}(\.\d+)?", re.IGNORECASE)


def identifier_kind(identifier: str) -> str:
    """'Entrez ids' (digits), 'Ensembl ids' (ENSG…, any species' prefix, an optional version) or 'symbols'."""
    if identifier.isdigit():
        return "Entrez ids"
    return "Ensembl ids" if ENSEMBL_GENE_ID.fullmatch(identifier) else "symbols"


def _resolution(pairs) -> Resolution:
    ids, methods = zip(*pairs) if (pairs := list(pairs)) else ((), ())
    return Resolution(pd.Series(ids, dtype="Int64"), pd.Series(methods, dtype="string"))


def _unique_map(catalog: pd.DataFrame, column: str, exclude: dict | None = None) -> dict[str, int]:
    """Identifier → Entrez id for identifiers listed ('|'-joined) under exactly one gene."""
    exploded = (
        catalog[["entrez_id", column]].assign(key=catalog[column].fillna("").str.upper().str.split("|")).explode("key")
    )
    exploded = exploded[exploded["key"] != ""].drop_duplicates(["entrez_id", "key"])
    unique = exploded.groupby("key")["entrez_id"].agg(["first", "size"])
    unique = unique[unique["size"] == 1]["first"].astype(int)
    mapping = unique.to_dict()
    if exclude:
        mapping = {k: v for k, v in mapping.items() if k not in exclude}
    return mapping

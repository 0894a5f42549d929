"""Map symbols (current or older), aliases and Ensembl ids onto Entrez gene ids."""

from __future__ import annotations

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
        ids, methods = [], []
        for raw in symbols:
            key = str(raw).strip().upper() if pd.notna(raw) else ""
            if key in self._symbol:
                ids.append(self._symbol[key]), methods.append("symbol")
            elif key in self._alias:
                ids.append(self._alias[key]), methods.append("alias")
            else:
                ids.append(pd.NA), methods.append("unmapped")
        return Resolution(pd.Series(ids, dtype="Int64"), pd.Series(methods, dtype="string"))

    def ensembl(self, ensembl_ids) -> Resolution:
        ids, methods = [], []
        for raw in ensembl_ids:
            key = str(raw).strip().split(".")[0].upper() if pd.notna(raw) else ""
            if key in self._ensembl:
                ids.append(self._ensembl[key]), methods.append("ensembl")
            else:
                ids.append(pd.NA), methods.append("unmapped")
        return Resolution(pd.Series(ids, dtype="Int64"), pd.Series(methods, dtype="string"))


def _unique_map(catalog: pd.DataFrame, column: str, exclude: dict | None = None) -> dict[str, int]:
    """Identifier → Entrez id for identifiers listed ('|'-joined) under exactly one gene."""
    exploded = (
        catalog[["entrez_id", column]]
        .assign(key=catalog[column].fillna("").str.upper().str.split("|"))
        .explode("key")
    )
    exploded = exploded[exploded["key"] != ""].drop_duplicates(["entrez_id", "key"])
    unique = exploded.groupby("key")["entrez_id"].agg(["first", "size"])
    unique = unique[unique["size"] == 1]["first"].astype(int)
    mapping = unique.to_dict()
    if exclude:
        mapping = {k: v for k, v in mapping.items() if k not in exclude}
    return mapping

"""The `precomputed` backbone kind: published gene embeddings imported from a file into the partitioned table.

Formats (by suffix, optionally gzipped): `.csv` / `.tsv` / `.parquet` with a symbol column and either one list
column `embedding` or one numeric column per dimension; `.pkl` / `.pickle` with a {symbol: vector} dict (as GenePT
distributes its embeddings); `.txt` / `.w2v` / `.vec` in word2vec text format (`SYMBOL v1 … vD` per line, an
optional `N D` header; as Gene2vec distributes its vectors). Identifiers are mapped to Entrez ids with the catalog's
GeneResolver by their shape: an Entrez id, an Ensembl gene id, or a symbol (current symbol, then an unambiguous
alias); a symbol that several catalog genes carry is left out. A table covering fewer than MIN_COVERAGE of the
view's genes is refused, naming the identifier kind the file used."""

from __future__ import annotations

import gzip
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from ..catalog.resolver import GeneResolver, identifier_kind
from ..errors import GeneAssetsError
from ..sources.data_directory import utf8_error_position
from .backbone import Backbone

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".parquet": None}
PICKLE_SUFFIXES = {".pkl", ".pickle"}
WORD2VEC_SUFFIXES = {".txt", ".w2v", ".vec"}
SAFE_PICKLE_GLOBALS = {
    ("collections", "OrderedDict"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
}


MIN_COVERAGE = 0.05
"""The smallest share of a view's genes a precomputed file must give vectors for: below it its identifiers almost
certainly did not map (another species, another identifier column), and an empty table would be scored and released."""


class PrecomputedEmbeddingError(GeneAssetsError, ValueError):
    """A precomputed embedding file is missing, unreadable or malformed."""


@dataclass
class ImportedVectors:
    """Vectors for the genes of a texts table that the file covers, and how the file's symbols mapped."""

    genes: pd.DataFrame
    matrix: np.ndarray
    mapping: dict[str, int]


def _format(path: Path) -> str:
    suffix = Path(path.name.removesuffix(".gz")).suffix.lower()
    if suffix in TABLE_SUFFIXES:
        return "table"
    if suffix in PICKLE_SUFFIXES:
        return "pickle"
    if suffix in WORD2VEC_SUFFIXES:
        return "word2vec"
    raise PrecomputedEmbeddingError(
        f"{path}: unknown embedding file type {suffix!r}; use one of "
        f"{sorted([*TABLE_SUFFIXES, *PICKLE_SUFFIXES, *WORD2VEC_SUFFIXES])} (optionally .gz)."
    )


def _open(path: Path, mode: str, **kwargs):
    return gzip.open(path, mode, **kwargs) if path.name.endswith(".gz") else open(path, mode, **kwargs)


class _VectorUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a pickle naming any other class is refused."""

    def find_class(self, module: str, name: str):
        if (module, name) in SAFE_PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"the pickle refers to {module}.{name}; only dicts of vectors are accepted")


def _read_table(path: Path, symbol_column: str) -> tuple[list, list]:
    sep = TABLE_SUFFIXES[Path(path.name.removesuffix(".gz")).suffix.lower()]
    table = pd.read_parquet(path) if sep is None else pd.read_csv(path, sep=sep)
    if symbol_column not in table.columns:
        raise PrecomputedEmbeddingError(
            f"{path}: no symbol column {symbol_column!r} (columns: {', '.join(map(str, table.columns[:10]))}). "
            "Set symbol_column in the backbone's registry entry."
        )
    symbols = (
        table[symbol_column].tolist()
        if sep is None  # the keys as written: "NA", "null" and blanks reach the key check, not a NaN
        else pd.read_csv(path, sep=sep, usecols=[symbol_column], dtype=str, keep_default_na=False)[
            symbol_column
        ].tolist()
    )
    if "embedding" in table.columns:
        return symbols, list(table["embedding"])
    values = table.drop(columns=[symbol_column])
    if len(values.columns) and _is_row_index(values.iloc[:, 0]):
        raise PrecomputedEmbeddingError(
            f"{path}: its first value column {values.columns[0]!r} counts the rows ({values.iloc[0, 0]}.."
            f"{values.iloc[-1, 0]}): it is the row index pandas writes by default, not a dimension; refused. Write "
            "the file again without it (`to_csv(..., index=False)`) or delete that column."
        )
    non_numeric = [c for c in values.columns if not pd.api.types.is_numeric_dtype(values[c])]
    if non_numeric:
        raise PrecomputedEmbeddingError(
            f"{path}: columns {non_numeric[:5]} are not numeric; a table needs the symbol column and either an "
            "`embedding` list column or numeric columns only."
        )
    return symbols, list(values.to_numpy(dtype=np.float64))


def _read_pickle(path: Path) -> tuple[list[str], list]:
    try:
        with _open(path, "rb") as fh:
            content = _VectorUnpickler(fh).load()
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise PrecomputedEmbeddingError(f"{path}: not a pickle of {{symbol: vector}} ({exc}).") from exc
    if not isinstance(content, dict):
        raise PrecomputedEmbeddingError(
            f"{path}: the pickle holds a {type(content).__name__}, expected a {{symbol: vector}} dict."
        )
    return list(content), list(content.values())


def _read_word2vec(path: Path) -> tuple[list[str], list]:
    symbols, rows = [], []
    with _open(path, "rt", encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts or (number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts)):
                continue  # blank line or the `N D` header
            try:
                rows.append([float(v) for v in parts[1:]])
            except ValueError as exc:
                raise PrecomputedEmbeddingError(f"{path}, line {number} ({parts[0]}): {exc}.") from exc
            symbols.append(parts[0])
    return symbols, rows


def read_gene_vectors(path: Path, dims: int, symbol_column: str = "symbol") -> tuple[list[str], np.ndarray]:
    """Symbols and a (genes × dims) float32 matrix from a file; duplicates, NaN rows and wrong sizes are refused."""
    path = Path(path)
    if not path.is_file():
        raise PrecomputedEmbeddingError(
            f"Precomputed embedding file {path} does not exist: set source_path in the registry entry."
        )
    kind = _format(path)
    try:
        symbols, rows = (
            _read_table(path, symbol_column)
            if kind == "table"
            else _read_pickle(path)
            if kind == "pickle"
            else _read_word2vec(path)
        )
    except UnicodeDecodeError as exc:
        raise PrecomputedEmbeddingError(
            f"{path}, {utf8_error_position(path)}: not UTF-8 text ({exc.reason}). Convert the file to UTF-8 "
            "(e.g. `iconv -f latin1 -t utf-8`)."
        ) from exc
    except (EOFError, gzip.BadGzipFile, zlib.error, pa.ArrowException, pd.errors.ParserError) as exc:
        raise PrecomputedEmbeddingError(
            f"{path} is truncated or corrupt ({exc}); download or export it again."
        ) from exc
    if not symbols:
        raise PrecomputedEmbeddingError(f"{path}: no vectors in the file.")
    symbols = checked_keys(path, symbols)
    text = [i for i, row in enumerate(rows) if isinstance(row, str | bytes)]
    scalar = [i for i, row in enumerate(rows) if np.ndim(row) == 0 and i not in text]
    for found, what in ((text, "are stored as text"), (scalar, "are single numbers, not vectors")):
        if found:
            raise PrecomputedEmbeddingError(
                f"{path}: {len(found)} of {len(rows)} vectors {what} (e.g. {symbols[found[0]]}: "
                f"{str(rows[found[0]])[:40]!r}); store each vector as a list or array of {dims} numbers."
            )
    sizes = np.array([np.size(row) for row in rows])
    wrong = np.flatnonzero(sizes != dims)
    if len(wrong):
        examples = ", ".join(f"{symbols[i]} ({sizes[i]})" for i in wrong[:5])
        raise PrecomputedEmbeddingError(
            f"{path}: {len(wrong)} of {len(rows)} vectors do not have {dims} dimensions (e.g. {examples}). "
            "Fix the file, or the dims of the backbone's registry entry if the file is right."
        )
    matrix = np.asarray(np.stack([np.asarray(row, dtype=np.float64) for row in rows]), dtype=np.float32)
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        examples = ", ".join(np.asarray(symbols)[bad][:5])
        raise PrecomputedEmbeddingError(
            f"{path}: {int(bad.sum())} vectors contain NaN or infinite values (e.g. {examples}); drop or fix them."
        )
    return symbols, matrix


MISSING_KEYS = {"", "NAN", "NA", "N/A", "#N/A", "NULL", "NONE", "<NA>", "-NAN", "NIL"}
"""Gene keys that stand for a missing value (compared stripped and upper-cased)."""


def _is_row_index(column: pd.Series) -> bool:
    """A column holding 0..n−1 or 1..n in order: the row numbers pandas writes with `index=True`."""
    if len(column) < 3 or not pd.api.types.is_integer_dtype(column):
        return False
    start = column.iloc[0]
    return start in (0, 1) and bool((column.to_numpy() == np.arange(start, start + len(column))).all())


def checked_keys(path: Path, keys: list) -> list[str]:
    """The file's gene keys stripped of surrounding whitespace; blank or missing-value keys and keys that repeat
    once stripped and upper-cased (as they are matched) are refused with their count and examples."""
    normalized = ["" if k is None or (isinstance(k, float) and np.isnan(k)) else str(k).strip() for k in keys]
    missing = [i for i, key in enumerate(normalized) if key.upper() in MISSING_KEYS]
    if missing:
        examples = ", ".join(f"row {i + 1} ({keys[i]!r})" for i in missing[:5])
        raise PrecomputedEmbeddingError(
            f"{path}: {len(missing)} of {len(keys)} vectors have a blank or missing gene key (e.g. {examples}); a "
            "vector without its gene cannot be placed. Fill in their genes or drop those rows."
        )
    upper = pd.Series(normalized).str.upper()
    duplicated = upper.duplicated(keep=False)
    if duplicated.any():
        examples = ", ".join(sorted({keys[i] for i in np.flatnonzero(duplicated)}, key=str)[:5])
        raise PrecomputedEmbeddingError(
            f"{path}: {int(duplicated.sum())} rows share a symbol (e.g. {examples}); keep one vector per symbol "
            "(symbols are compared without surrounding whitespace and case)."
        )
    return normalized


def import_precomputed(backbone: Backbone, catalog: pd.DataFrame, texts: pd.DataFrame) -> ImportedVectors:
    """The file's vectors for the genes of `texts` (in its order) that the file covers, mapped through the catalog."""
    if not backbone.source_path:
        raise PrecomputedEmbeddingError(f"Backbone {backbone.name!r} is precomputed but has no source_path.")
    symbols, matrix = read_gene_vectors(Path(backbone.source_path), backbone.dims, backbone.symbol_column)
    resolution = GeneResolver(catalog).identifiers(symbols)
    mapped = pd.DataFrame(
        {"entrez_id": resolution.entrez_ids, "method": resolution.methods, "row": np.arange(len(symbols))}
    )
    # A symbol that several catalog genes carry (e.g. mitochondrial ATP6) cannot say which gene its vector is for.
    sizes = catalog["symbol"].str.upper().value_counts()
    shared = pd.Series(symbols).str.upper().isin(sizes[sizes > 1].index).to_numpy()
    mapped = mapped[~shared].dropna(subset=["entrez_id"])
    # Two file symbols naming one gene (e.g. a current symbol and an old one): the current symbol's vector is kept.
    mapped = mapped.sort_values(
        ["entrez_id", "method"], key=lambda c: c.map({"symbol": 0}).fillna(1) if c.name == "method" else c
    )
    ambiguous = int(mapped["entrez_id"].duplicated().sum())
    mapped = mapped.drop_duplicates("entrez_id").astype({"entrez_id": "int64"})
    rows = texts[["entrez_id"]].reset_index().merge(mapped, on="entrez_id").sort_values("index")
    genes = texts.loc[rows["index"], ["entrez_id", "symbol", "text_sha256"]].reset_index(drop=True)
    counts = resolution.counts
    kinds = pd.Series([identifier_kind(str(s).strip()) for s in symbols]).value_counts()
    if len(genes) < MIN_COVERAGE * len(texts):
        kind = kinds.index[0]
        examples = ", ".join([str(s) for s, k in zip(symbols, resolution.methods) if k == "unmapped"][:3])
        raise PrecomputedEmbeddingError(
            f"{backbone.source_path}: its {len(symbols)} vectors cover {len(genes)} of the view's {len(texts)} genes "
            f"({len(genes) / max(len(texts), 1):.1%}, below the minimum {MIN_COVERAGE:.0%}). Its identifiers are "
            f"{kind} ({kinds.iloc[0]} of {len(symbols)}); {counts.get('unmapped', 0)} map to no catalog gene "
            f"(e.g. {examples}). Key the file by human gene symbols, Entrez ids or Ensembl gene ids, or set "
            "symbol_column to the column that holds them."
        )
    return ImportedVectors(
        genes=genes,
        matrix=matrix[rows["row"].to_numpy()],
        mapping={
            "file_vectors": len(symbols),
            "identifier_kinds": {str(k): int(n) for k, n in kinds.items()},
            "mapped_by_entrez": counts.get("entrez", 0),
            "mapped_by_ensembl": counts.get("ensembl", 0),
            "mapped_by_symbol": counts.get("symbol", 0),
            "mapped_by_alias": counts.get("alias", 0),
            "unmapped": counts.get("unmapped", 0),
            "symbol_of_several_genes": int(shared.sum()),
            "same_gene_dropped": ambiguous,
            "view_genes_covered": len(genes),
            "view_genes_without_vector": len(texts) - len(genes),
        },
    )

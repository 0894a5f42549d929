"""Replogle 2022 CRISPRi signatures: the ranked up-regulated genes of each knockdown, mapped to Entrez ids, and
the response matrix per cell line that the unseen-perturbation task regresses on.

Target: for perturbation p and measured gene g, `rank_score = (1001 − rank) / 1000` when g is in p's ranked list
(rank 1 → 1.0, rank 1000 → 0.001) and 0 otherwise. The measured genes of a cell line are the union of the genes
in all of its signatures. The models regress on the rank score (it uses the whole ranked list, not only the
significant genes); they are scored on how well their per-gene scores recover the significant up set."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..catalog.resolver import GeneResolver
from ..tasks.evaluation import genes_digest
from ..tasks.spec import GeneTask, TaskLabelError, mapping_counts

LIST_LENGTH = 1000
SIGNATURE_COLUMNS = ["cell_line", "perturbation", "rank", "gene", "in_up_set"]
CELL_LINES = ("K562", "RPE1")
PERTURBATION_SOURCES = ("Perturb-seq",)


def replogle_task(cell_line: str) -> GeneTask:
    return GeneTask(
        f"replogle2022_{cell_line.lower()}",
        "perturbation",
        "perturbation_signature",
        PERTURBATION_SOURCES,
        f"Replogle 2022 {cell_line} CRISPRi: from the knocked-down gene's embedding alone, rank every measured gene "
        "so that the knockdown's significant up-regulated genes come first (held-out perturbations, 9-fold CV).",
    )


REPLOGLE_TASKS = {cell_line: replogle_task(cell_line) for cell_line in CELL_LINES}


@dataclass(frozen=True)
class ResponseTargets:
    """Per perturbed gene (rows, sorted by Entrez id) the response over measured genes (columns)."""

    task: GeneTask
    n_source: int
    """Perturbations in the source, mapped or not (those left out are counted as excluded)."""
    entrez_ids: np.ndarray
    labels: np.ndarray
    """The perturbation as the source names it."""
    genes: np.ndarray
    values: np.ndarray
    """What the models regress on: rank score (signatures) or Δμ (mean shift), rows × genes float32."""
    up_set: np.ndarray | None = None
    """Signatures: the significant up-regulated genes, rows × genes bool."""

    def restricted_to(self, entrez_ids) -> ResponseTargets:
        keep = np.isin(self.entrez_ids, np.asarray(list(entrez_ids), dtype=np.int64))
        return replace(
            self,
            entrez_ids=self.entrez_ids[keep],
            labels=self.labels[keep],
            values=self.values[keep],
            up_set=None if self.up_set is None else self.up_set[keep],
        )

    @property
    def digest(self) -> str:
        truth = np.packbits(self.up_set) if self.up_set is not None else self.values
        return genes_digest(self.entrez_ids, truth)


def read_signatures(path: Path) -> pd.DataFrame:
    """The signature table, validated: every (cell line, perturbation) holds ranks 1–1000 once each."""
    table = pd.read_parquet(path)
    missing = [c for c in SIGNATURE_COLUMNS if c not in table.columns]
    if missing:
        raise TaskLabelError(
            f"{path} lacks columns {missing}; it needs {SIGNATURE_COLUMNS} (see PROVENANCE.md section 6)."
        )
    table = table[SIGNATURE_COLUMNS].astype({"rank": "int64", "in_up_set": bool})
    if not table["rank"].between(1, LIST_LENGTH).all():
        raise TaskLabelError(f"{path}: ranks must lie in 1–{LIST_LENGTH}.")
    if (
        table.duplicated(["cell_line", "perturbation", "rank"]).any()
        or table.duplicated(["cell_line", "perturbation", "gene"]).any()
    ):
        raise TaskLabelError(f"{path}: a (cell line, perturbation) repeats a rank or a gene.")
    return table


def map_perturbations(signatures: pd.DataFrame, resolver: GeneResolver) -> tuple[pd.DataFrame, dict]:
    """Adds entrez_id and mapped_by (symbol, alias, unmapped, conflicting) for each perturbation symbol. Symbols
    that resolve to the same gene as another perturbation are conflicting and left unmapped."""
    symbols = pd.Series(np.sort(signatures["perturbation"].unique()))
    resolution = resolver.symbols(symbols)
    mapping = pd.DataFrame(
        {
            "perturbation": symbols,
            "entrez_id": resolution.entrez_ids.to_numpy(),
            "mapped_by": resolution.methods.to_numpy(),
        }
    )
    shared = mapping["entrez_id"].notna() & mapping["entrez_id"].duplicated(keep=False)
    mapping.loc[shared, ["entrez_id", "mapped_by"]] = [pd.NA, "conflicting"]
    mapped = signatures.merge(mapping, on="perturbation", how="left")
    counts = {}
    for cell_line, rows in mapped.drop_duplicates(["cell_line", "perturbation"]).groupby("cell_line"):
        methods = rows["mapped_by"].value_counts()
        counts[cell_line] = mapping_counts(
            len(rows),
            rows["entrez_id"].notna().sum(),
            n_alias=int(methods.get("alias", 0)),
            n_conflicting=int(methods.get("conflicting", 0)),
            unmapped=", ".join(rows.loc[rows["entrez_id"].isna(), "perturbation"]),
        )
    return mapped, counts


def signature_targets(signatures: pd.DataFrame, cell_line: str) -> ResponseTargets:
    """Rank-score targets and up sets of one cell line's mapped perturbations over its measured genes."""
    rows = signatures[signatures["cell_line"] == cell_line]
    if rows.empty:
        raise TaskLabelError(
            f"No signatures for cell line {cell_line}; the file has {sorted(signatures['cell_line'].unique())}."
        )
    genes = np.sort(rows["gene"].unique())
    mapped = rows[rows["entrez_id"].notna()]
    items = mapped.drop_duplicates("perturbation").sort_values("entrez_id")
    row_of = pd.Index(items["perturbation"]).get_indexer(mapped["perturbation"])
    column_of = pd.Index(genes).get_indexer(mapped["gene"])
    values = np.zeros((len(items), len(genes)), dtype=np.float32)
    values[row_of, column_of] = (LIST_LENGTH + 1 - mapped["rank"].to_numpy()) / LIST_LENGTH
    up_set = np.zeros(values.shape, dtype=bool)
    up_set[row_of, column_of] = mapped["in_up_set"].to_numpy()
    return ResponseTargets(
        replogle_task(cell_line),
        rows["perturbation"].nunique(),
        items["entrez_id"].to_numpy(np.int64),
        items["perturbation"].to_numpy(str),
        genes,
        values,
        up_set,
    )

"""Per-perturbation mean expression shift from an AnnData file: Δμ = μ_p − μ_ctrl per gene.

Accepted layouts: single cells or pseudobulk rows (either way, rows with the same label are averaged), with
a perturbation column whose values are gene symbols, GEARS conditions (`A+ctrl`, `ctrl+A`; two-gene
conditions `A+B` are counted and left out) and a control label (`ctrl` in GEARS files)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from ..catalog.resolver import GeneResolver
from ..tasks.spec import GeneTask, TaskLabelError
from .signatures import PERTURBATION_SOURCES, ResponseTargets


class MeanShiftInputError(TaskLabelError):
    """The expression file cannot give per-perturbation mean shifts (missing column, no controls, nothing maps)."""


@dataclass(frozen=True)
class MeanShiftSource:
    path: str
    perturbation_column: str = "condition"
    control_label: str = "ctrl"
    gene_column: str | None = None
    """var column with gene symbols (GEARS: `gene_name`); None uses var_names."""
    dataset: str | None = None
    """Name in the task (`mean_shift_<dataset>`); defaults to the file name without its suffix."""

    @property
    def task(self) -> GeneTask:
        return mean_shift_task(self.dataset or Path(self.path).name.split(".")[0])


MEAN_SHIFT_PREFIX = "mean_shift_"


def mean_shift_task(dataset: str) -> GeneTask:
    return GeneTask(
        f"{MEAN_SHIFT_PREFIX}{dataset}",
        "perturbation",
        "perturbation_mean_shift",
        PERTURBATION_SOURCES,
        f"{dataset}: predict a held-out perturbation's mean expression shift Δμ = μ_p − μ_ctrl from the perturbed gene's "
        "embedding; Pearson over the top-K changed genes and relative MAE over all genes (K-fold CV over perturbations).",
    )


def perturbed_gene(label: str, control: str) -> str | None:
    """The perturbed gene of a label (`A`, `A+ctrl`, `ctrl+A`; GEARS' `ctrl` placeholder whatever the control
    label); None for a two-gene condition."""
    parts = [p.strip() for p in str(label).split("+") if p.strip() and p.strip() not in (control, "ctrl")]
    return parts[0] if len(parts) == 1 else None


def read_mean_shift(source: MeanShiftSource) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, dict]:
    """(perturbations: label, gene, n_rows), gene symbols, Δμ (perturbations × genes) and counts."""
    import anndata

    path = Path(source.path).expanduser()
    if not path.is_file():
        raise MeanShiftInputError(f"Expression file {path} does not exist; set the `path` config to an .h5ad file.")
    data = anndata.read_h5ad(path)
    if source.perturbation_column not in data.obs.columns:
        raise MeanShiftInputError(
            f"{path}: obs has no column {source.perturbation_column!r} (columns: "
            f"{', '.join(map(str, data.obs.columns))}); set `perturbation_column`."
        )
    if source.gene_column is None:
        genes = data.var_names.astype(str).to_numpy()
    elif source.gene_column in data.var.columns:
        genes = data.var[source.gene_column].astype(str).to_numpy()
    else:
        raise MeanShiftInputError(
            f"{path}: var has no column {source.gene_column!r} (columns: "
            f"{', '.join(map(str, data.var.columns))}); set `gene_column` or leave it empty for var_names."
        )
    labels = data.obs[source.perturbation_column].astype(str).str.strip().to_numpy()
    is_control = labels == source.control_label
    if not is_control.any():
        examples = ", ".join(pd.unique(labels)[:8])
        raise MeanShiftInputError(
            f"{path}: no row of {source.perturbation_column!r} equals the control label "
            f"{source.control_label!r} (values include {examples}); set `control_label`."
        )
    names, codes = np.unique(labels, return_inverse=True)
    indicator = sparse.csr_matrix((np.ones(len(codes)), (codes, np.arange(len(codes)))), shape=(len(names), len(codes)))
    sizes = np.asarray(indicator.sum(1)).ravel()
    means = sparse.diags(1 / sizes) @ indicator @ data.X
    means = np.asarray(means.toarray() if sparse.issparse(means) else means, dtype=np.float64)
    control = names == source.control_label
    delta = (means[~control] - means[control][0]).astype(np.float32)
    table = pd.DataFrame({"label": names[~control], "n_rows": sizes[~control].astype(int)})
    table["gene"] = [perturbed_gene(label, source.control_label) for label in table["label"]]
    counts = {
        "n_rows": int(len(labels)),
        "n_control_rows": int(is_control.sum()),
        "n_conditions": int(len(table)),
        "n_two_gene_conditions": int(table["gene"].isna().sum()),
    }
    single = table["gene"].notna().to_numpy()
    if not single.any():
        raise MeanShiftInputError(
            f"{path}: no single-gene perturbation in {source.perturbation_column!r} (only two-gene "
            "conditions and controls); the task predicts single-gene perturbations."
        )
    return table[single].reset_index(drop=True), genes, delta[single], counts


def mean_shift_targets(source: MeanShiftSource, resolver: GeneResolver) -> tuple[ResponseTargets, dict]:
    """Δμ targets of the single-gene perturbations whose gene maps to one Entrez id; the rest are counted. More
    than half unmapped means the column does not hold gene symbols: that stops with an error."""
    table, genes, delta, counts = read_mean_shift(source)
    resolution = resolver.symbols(table["gene"])
    table["entrez_id"] = resolution.entrez_ids.to_numpy()
    unmapped = table.loc[table["entrez_id"].isna(), "gene"].tolist()
    if len(unmapped) > len(table) / 2:
        raise MeanShiftInputError(
            f"{source.path}: {len(unmapped)} of {len(table)} single-gene perturbations name no known gene (e.g. "
            f"{', '.join(unmapped[:10])}). Check that `perturbation_column` holds gene symbols or GEARS conditions "
            "like `A+ctrl`."
        )
    mapped = table[table["entrez_id"].notna()]
    conflicting = mapped["entrez_id"].duplicated(keep=False)
    table = mapped[~conflicting]
    counts.update(
        n_single_gene=len(resolution.methods),
        n_unmapped=len(unmapped),
        n_conflicting=int(conflicting.sum()),
        n_mapped=len(table),
        unmapped=", ".join(unmapped[:50]),
    )
    table = table.sort_values("entrez_id")
    values = delta[table.index.to_numpy()]
    return ResponseTargets(
        source.task,
        counts["n_single_gene"],
        table["entrez_id"].to_numpy(np.int64),
        table["label"].to_numpy(str),
        genes,
        values,
    ), counts

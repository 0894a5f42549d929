"""What every scored result asset shares (gene tasks, cell types, perturbation tasks): the gene universes, feature
rows per draw of the random control, label-mapping metadata, and the checks beside each results table."""

from dataclasses import dataclass

import numpy as np
import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, MetadataValue

from .embeddings.backbone import kind_spec
from .embeddings.encoders import random_gene_vectors
from .embeddings.table import GeneEmbeddings

UNIVERSES = {
    "all_genes": "every gene with a text (fallback texts included)",
    "with_summary": "genes with a RefSeq summary only",
}


def counts_metadata(counts: dict, files: list) -> dict:
    """Metadata of a labels asset: what mapping its labels to Entrez ids kept and dropped, and the files read."""
    return {
        "mapping": MetadataValue.md(pd.DataFrame(counts).T.to_markdown()),
        "label_files": MetadataValue.json([str(f) for f in files]),
    }


@dataclass(frozen=True)
class GeneMatrix:
    """Feature rows of a set of genes (one unit of work's genes, in one draw)."""

    index: pd.Index
    matrix: np.ndarray

    def rows(self, entrez_ids) -> np.ndarray:
        return self.matrix[self.index.get_indexer(np.asarray(entrez_ids))]


class FeatureDraws:
    """Feature rows for gene ids: the partition's embeddings, or for the random control one fresh draw per seed
    (drawn for the genes asked for only; a gene's vector depends on its id and the seed, not on the others)."""

    def __init__(self, embeddings: GeneEmbeddings, draws: int):
        self.embeddings = embeddings
        self.draws = list(range(draws)) if kind_spec(embeddings.attrs.get("kind")).redrawn else [0]
        self.index = pd.Index(embeddings.genes["entrez_id"])

    def genes(self, draw: int, entrez_ids) -> GeneMatrix:
        ids = np.unique(np.asarray(entrez_ids))
        if draw == 0:
            return GeneMatrix(pd.Index(ids), self.embeddings.matrix[self.index.get_indexer(ids)])
        return GeneMatrix(pd.Index(ids), random_gene_vectors(ids, self.embeddings.dims, seed=draw))


def metrics_finite(results: pd.DataFrame) -> AssetCheckResult:
    """The `metrics_finite` check of a results table: every estimate and fold value is finite."""
    values = (
        np.concatenate([results["estimate"].to_numpy(float)] + [np.asarray(v, float) for v in results["fold_values"]])
        if len(results)
        else np.array([])
    )
    return AssetCheckResult(
        check_name="metrics_finite",
        passed=bool(np.isfinite(values).all()),
        metadata={"values": len(values), "non_finite": int((~np.isfinite(values)).sum())},
    )


def result_check_specs(name: str) -> list[AssetCheckSpec]:
    """The checks beside every results asset (gene tasks and perturbation tasks)."""
    return [
        AssetCheckSpec(
            "metrics_finite", asset=name, blocking=True, description="Every metric and fold value is finite."
        ),
        AssetCheckSpec(
            "universes_non_empty",
            asset=name,
            description="Every task was scored on every gene universe (none empty or too small).",
        ),
    ]


def result_checks(results: pd.DataFrame, skipped: list):
    yield metrics_finite(results)
    yield AssetCheckResult(
        check_name="universes_non_empty",
        passed=not skipped,
        severity=AssetCheckSeverity.WARN,
        metadata={"skipped": MetadataValue.json(skipped)},
    )

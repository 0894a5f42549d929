"""GeneEmbeddings: a gene × dims float32 matrix with its gene ids and provenance, stored as parquet."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa


class EmbeddingTableError(ValueError):
    """An embedding table is malformed (NaN/inf, wrong dimension, duplicate genes)."""


@dataclass
class GeneEmbeddings:
    genes: pd.DataFrame
    """entrez_id, symbol (and text_sha256 for text backbones), one row per matrix row."""
    matrix: np.ndarray
    attrs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.matrix = np.ascontiguousarray(self.matrix, dtype=np.float32)
        self.genes = self.genes.reset_index(drop=True)
        self.validate()

    def validate(self) -> None:
        name = "/".join(str(self.attrs[key]) for key in ("backbone", "view") if key in self.attrs) or "embeddings"
        if self.matrix.ndim != 2 or self.matrix.shape[0] != len(self.genes):
            raise EmbeddingTableError(
                f"{name}: matrix shape {self.matrix.shape} does not match {len(self.genes)} genes."
            )
        expected = self.attrs.get("dims")
        if expected is not None and self.matrix.shape[1] != int(expected):
            raise EmbeddingTableError(
                f"{name}: vectors have {self.matrix.shape[1]} dimensions, expected {expected}. Set dims in the backbone's "
                "registry entry to the model's output size, then embed again."
            )
        bad_rows = ~np.isfinite(self.matrix).all(axis=1)
        if bad_rows.any():
            examples = ", ".join(self.genes.loc[bad_rows, "symbol"].astype(str).head(5))
            raise EmbeddingTableError(
                f"{name}: {int(bad_rows.sum())} genes have NaN or infinite values (e.g. {examples}). Embed them again "
                "at fp32 or bf16 precision (fp16 overflows to inf and NaN)."
            )
        duplicated = self.genes["entrez_id"].duplicated()
        if duplicated.any():
            examples = ", ".join(self.genes.loc[duplicated, "entrez_id"].astype(str).head(5))
            raise EmbeddingTableError(
                f"{name}: duplicate genes (Entrez ids {examples}); a table holds one row per gene. Materialize gene_texts "
                "again (one text per gene and view), then this partition."
            )

    @property
    def dims(self) -> int:
        return int(self.matrix.shape[1])

    def to_arrow(self) -> pa.Table:
        flat = pa.array(self.matrix.reshape(-1), type=pa.float32())
        vectors = pa.FixedSizeListArray.from_arrays(flat, self.dims)
        table = pa.Table.from_pandas(self.genes, preserve_index=False).append_column("embedding", vectors)
        return table.replace_schema_metadata({b"gene_assets.attrs": json.dumps(self.attrs).encode()})

    @classmethod
    def from_arrow(cls, table: pa.Table) -> GeneEmbeddings:
        attrs = json.loads((table.schema.metadata or {}).get(b"gene_assets.attrs", b"{}"))
        column = table.column("embedding").combine_chunks()
        dims = column.type.list_size
        matrix = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dims)
        genes = table.drop_columns(["embedding"]).to_pandas()
        return cls(genes=genes, matrix=matrix, attrs=attrs)

    def aligned(self, entrez_ids) -> np.ndarray:
        """Rows for the given Entrez ids, in their order (all must be present)."""
        index = pd.Index(self.genes["entrez_id"]).get_indexer(list(entrez_ids))
        if (index < 0).any():
            raise KeyError("Some genes have no embedding")
        return self.matrix[index]

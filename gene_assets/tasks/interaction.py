"""Gene–gene interaction (Gene2vec): predict whether two genes interact from the sum of their embeddings."""

from __future__ import annotations

import pandas as pd

from ..catalog.resolver import GeneResolver
from ..sources.data_directory import read_data_csv
from .spec import GeneTask, TaskLabelError, require_mapped

GGI_TASK = GeneTask(
    "gene_interaction",
    "interaction",
    "pairs",
    ("GO",),
    "Gene2vec gene-gene interaction pairs (GO co-annotation derived); train on the train split, score the test split.",
)


def read_pair_split(text, label, split: str) -> pd.DataFrame:
    """symbol_a, symbol_b, label, split for one Gene2vec split (pairs file and its aligned 0/1 label file)."""
    pairs = read_data_csv(text, sep=" ", header=None, names=["symbol_a", "symbol_b"], dtype=str, on_bad_lines="error")
    labels = read_data_csv(label, header=None, names=["label"])["label"]
    if len(pairs) != len(labels):
        raise TaskLabelError(
            f"{text} has {len(pairs)} pairs but {label} has {len(labels)} labels; they must align line by line."
        )
    if not labels.isin([0, 1]).all():
        raise TaskLabelError(f"{label} must hold only 0 and 1.")
    return pairs.assign(label=labels.astype(int).to_numpy(), split=split)


def map_pairs(pairs: pd.DataFrame, resolver: GeneResolver) -> tuple[pd.DataFrame, dict]:
    """entrez_a, entrez_b, label, split; pairs with an unmapped gene are dropped and counted."""
    a = resolver.symbols(pairs["symbol_a"]).entrez_ids
    b = resolver.symbols(pairs["symbol_b"]).entrez_ids
    mapped = pd.DataFrame(
        {
            "entrez_a": a.to_numpy(),
            "entrez_b": b.to_numpy(),
            "label": pairs["label"].to_numpy(),
            "split": pairs["split"].to_numpy(),
        }
    ).dropna()
    require_mapped(GGI_TASK.name, "the Gene2vec pair files", mapped["entrez_a"], {"symbols": pairs["symbol_a"]})
    mapped = mapped.astype({"entrez_a": "int64", "entrez_b": "int64"}).reset_index(drop=True)
    symbols = pd.concat([pairs["symbol_a"], pairs["symbol_b"]]).unique()
    counts = {
        "n_source": len(pairs),
        "n_mapped": len(mapped),
        "n_unmapped": len(pairs) - len(mapped),
        "n_source_genes": len(symbols),
        "n_unmapped_genes": resolver.symbols(symbols).n_unmapped,
    }
    return mapped, {"gene_interaction": counts}

"""Gene-pair probe: scikit-learn's LogisticRegression on built pair features (z_a + z_b, the straightforward
protocol) vs the project's factorized fit, on the real Gene2vec train/test split with 1,024-dim bag-of-words
summary vectors."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from gene_assets.embeddings.encoders import BagOfWordsEncoder
from gene_assets.embeddings.registry import get_backbone
from gene_assets.settings import default_data_dir
from gene_assets.sources.data_directory import DataDirectory
from gene_assets.tasks.interaction import read_pair_split
from gene_assets.tasks.linear_probes import PairLogisticRegression

from .harness import Row, median, timed_rounds

REPEATS = 2


def real_pairs() -> tuple[np.ndarray, dict[str, tuple]]:
    """Bag-of-words vectors of every gene with a RefSeq summary, and the Gene2vec splits between those genes as
    (rows of gene a, rows of gene b, labels)."""
    data = DataDirectory(path=default_data_dir())
    genes = pd.read_parquet(data.file("refseq_summaries"), columns=["symbol", "refseq_summary"])
    genes = genes.dropna().drop_duplicates("symbol").reset_index(drop=True)
    Z = BagOfWordsEncoder(get_backbone("bag-of-words")).embed(genes.rename(columns={"refseq_summary": "text"}))
    symbols = pd.Index(genes["symbol"])
    splits = {}
    for split in ("train", "test"):
        pairs = read_pair_split(data.file(f"ggi_{split}_text"), data.file(f"ggi_{split}_label"), split)
        a, b = symbols.get_indexer(pairs["symbol_a"]), symbols.get_indexer(pairs["symbol_b"])
        kept = (a >= 0) & (b >= 0)
        splits[split] = (a[kept], b[kept], pairs["label"].to_numpy()[kept])
    return Z, splits


def gene_pair_probe() -> list[Row]:
    Z, splits = real_pairs()
    (a, b, y), (ta, tb, ty) = splits["train"], splits["test"]
    scores = {}

    def straightforward():
        model = LogisticRegression(max_iter=5000).fit(Z[a] + Z[b], y)
        scores["baseline"] = model.predict_proba(Z[ta] + Z[tb])[:, 1]

    def factorized():
        scores["project"] = PairLogisticRegression().fit(Z, a, b, y).predict_proba(Z, ta, tb)

    seconds = timed_rounds({"baseline": straightforward, "project": factorized}, REPEATS)
    base, project = median(seconds["baseline"]), median(seconds["project"])
    auc = {name: roc_auc_score(ty, s) for name, s in scores.items()}
    return [
        Row(
            comparison=f"gene-pair logistic regression, {len(y):,} train / {len(ty):,} test pairs, {Z.shape[1]} dims",
            case="LogisticRegression on built pair features vs factorized whitened L-BFGS",
            unit="s",
            baseline=base,
            project=project,
            speedup=base / project,
            detail=f"test AUC {auc['baseline']:.4f} vs {auc['project']:.4f} (|Δ| {abs(auc['baseline'] - auc['project']):.4f})",
        )
    ]

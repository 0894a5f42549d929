"""Embedding throughput: plain `SentenceTransformer(path).encode(texts)` against the project's encoder."""

from __future__ import annotations

import numpy as np

from gene_assets.embeddings.device import Placement
from gene_assets.embeddings.encoders import SentenceTransformerEncoder, load_encoder, model_source
from gene_assets.embeddings.registry import get_backbone

from .harness import Row, median, summary_texts, timed_rounds

BACKBONE = "all-MiniLM-L6-v2"
TEXTS = 2000
REPEATS = 3


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


def embedding_throughput() -> list[Row]:
    from sentence_transformers import SentenceTransformer

    backbone = get_backbone(BACKBONE)
    texts = summary_texts(TEXTS)
    strings = texts["text"].tolist()
    plain = SentenceTransformer(model_source(backbone))
    project = load_encoder(backbone)
    int8 = SentenceTransformerEncoder(backbone, Placement("cpu", "int8", backbone.fast_path.token_budget))
    vectors = {}

    def keep(name, run):
        def call():
            vectors[name] = run()
        return call

    seconds = timed_rounds(
        {
            "plain": keep("plain", lambda: plain.encode(strings)),
            "project": keep("project", lambda: project.embed(texts)),
            "int8": keep("int8", lambda: int8.embed(texts)),
        },
        REPEATS,
    )
    baseline = TEXTS / median(seconds["plain"])
    rows = []
    for name, case in (("project", f"project encoder ({project.placement.precision}, the registry setting)"),
                       ("int8", "project encoder with int8 dynamic quantization")):
        speed = TEXTS / median(seconds[name])
        rows.append(Row(
            comparison=f"embedding throughput, {TEXTS:,} RefSeq summaries, {BACKBONE}",
            case=case, unit="texts/s", baseline=baseline, project=speed, speedup=speed / baseline,
            detail=f"min cosine to plain fp32 vectors {min_cosine(vectors[name], vectors['plain']):.4f}; "
                   f"median of {REPEATS} alternating runs",
        ))
    return rows

"""Embedding throughput: plain `SentenceTransformer(path).encode(texts)` in fp32 against the project's encoder at
the precision the `embedding_device` resource chooses here, and at each precision the registry allows; with the
achieved FLOP/s against this CPU's fp32 matrix-product peak. A CPU without AVX512_BF16 is emulated with

    ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI python -m benchmarks embedding_throughput"""

from __future__ import annotations

import os
import time
from functools import partial

from gene_assets.embeddings.calibration import min_cosine, summary_texts
from gene_assets.embeddings.device import EmbeddingDevice, Placement
from gene_assets.embeddings.encoders import idle_cores, load_encoder, torch_threads
from gene_assets.embeddings.registry import get_backbone
from gene_assets.embeddings.weights import model_source

from .harness import Row, median, timed_rounds

BACKBONE = "all-MiniLM-L6-v2"
TEXTS = int(os.environ.get("EMBED_BENCH_TEXTS", "2000"))
"""Real summaries per timed run; fewer for a quick look on a loaded machine."""
REPEATS = 3


def flops_per_text(config, tokens: int) -> float:
    """Forward FLOPs of a BERT-style encoder on one text of `tokens` tokens: the layers' matrix products and the
    attention scores (2 FLOPs per multiply-add)."""
    hidden, layers = config.hidden_size, config.num_hidden_layers
    linear = 4 * hidden * hidden + 2 * hidden * config.intermediate_size
    return 2.0 * layers * tokens * (linear + 2 * tokens * hidden)


def matmul_peak_gflops(threads: int, size: int = 2048, repeats: int = 5) -> float:
    """fp32 GFLOP/s of a large square matrix product on `threads` threads: what this CPU reaches at best."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    with torch_threads(threads):
        a @ b
        best = min(_seconds(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _seconds(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def embedding_throughput() -> list[Row]:
    from sentence_transformers import SentenceTransformer

    backbone = get_backbone(BACKBONE)
    texts = summary_texts(TEXTS)
    strings = texts["text"].tolist()
    plain = SentenceTransformer(model_source(backbone), device="cpu")
    chosen = EmbeddingDevice(device="cpu").placement(backbone)
    encoders = {
        p: load_encoder(backbone, Placement("cpu", p, chosen.token_budget)) for p in backbone.fast_path.precisions
    }
    runs = {
        "plain": lambda: plain.encode(strings),
        **{p: partial(e.embed, texts) for p, e in encoders.items()},
    }
    vectors = {}

    def keep(name, run):
        def call():
            vectors[name] = run()

        return call

    seconds = timed_rounds({name: keep(name, run) for name, run in runs.items()}, REPEATS)
    tokens = encoders["fp32"].token_lengths(strings)
    flops = sum(flops_per_text(plain[0].auto_model.config, int(n)) for n in tokens)
    peak = matmul_peak_gflops(idle_cores())
    baseline = TEXTS / median(seconds["plain"])
    comparison = f"embedding throughput, {TEXTS:,} RefSeq summaries, {BACKBONE}"
    rows = []
    for name in encoders:
        speed = TEXTS / median(seconds[name])
        label = f"project encoder at {name}" + (" (chosen here by calibration)" if name == chosen.precision else "")
        gflops = flops / median(seconds[name]) / 1e9
        rows.append(
            Row(
                comparison=comparison,
                case=label,
                unit="texts/s",
                baseline=baseline,
                project=speed,
                speedup=speed / baseline,
                detail=f"min cosine to plain fp32 vectors {min_cosine(vectors[name], vectors['plain']):.4f}; "
                f"{tokens.sum() / median(seconds[name]):,.0f} tokens/s, {gflops:.0f} GFLOP/s "
                f"({gflops / peak:.0%} of the {peak:.0f} GFLOP/s fp32 matmul peak; plain "
                f"{flops / median(seconds['plain']) / 1e9:.0f}); median of {REPEATS} alternating runs "
                f"{', '.join(f'{s:.1f}' for s in seconds[name])} s",
            )
        )
    return rows

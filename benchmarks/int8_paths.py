"""Int8 paths for all-MiniLM-L6-v2 on a CPU with VNNI: accuracy first (min and median cosine to plain fp32
`SentenceTransformer.encode` on real summaries none of the paths was calibrated on), speed second (alternating runs
against plain `encode` on the same texts, medians). OpenVINO graphs run with fp32 inference precision, so no path
uses bf16: the figures hold for a CPU without AVX512_BF16.

    python -m benchmarks int8_paths    (INT8_BENCH_TEXTS held-out summaries, default 500; INT8_BENCH_TIMED of them
                                        timed, default 200)"""

from __future__ import annotations

import os
from functools import partial

import numpy as np

from gene_assets.embeddings.backbone import OPENVINO_INT8
from gene_assets.embeddings.calibration import summary_texts
from gene_assets.embeddings.device import Placement
from gene_assets.embeddings.encoders import idle_cores, load_encoder
from gene_assets.embeddings.openvino_int8 import (
    CALIBRATION_SEED,
    CALIBRATION_TEXTS,
    OpenVINOEncoder,
    calibration_batches,
    converted,
    quantize,
)
from gene_assets.embeddings.registry import get_backbone
from gene_assets.embeddings.weights import model_source

from .harness import Row, median, timed_rounds

BACKBONE = "all-MiniLM-L6-v2"
TEXTS = int(os.environ.get("INT8_BENCH_TEXTS", "500"))
TIMED = int(os.environ.get("INT8_BENCH_TIMED", "200"))
REPEATS = 3


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def held_out_texts(count: int):
    """`count` real summaries, none of them among the quantization's calibration texts."""
    calibrated = set(summary_texts(CALIBRATION_TEXTS, seed=CALIBRATION_SEED)["text"])
    texts = summary_texts(count + CALIBRATION_TEXTS, seed=11)
    return texts[~texts["text"].isin(calibrated)].head(count).reset_index(drop=True)


def int8_paths() -> list[Row]:
    import nncf
    from sentence_transformers import SentenceTransformer

    backbone = get_backbone(BACKBONE)
    budget = backbone.fast_path.token_budget
    texts = held_out_texts(TEXTS)
    plain = SentenceTransformer(model_source(backbone), device="cpu")
    fp32 = load_encoder(backbone, Placement("cpu", "fp32", budget))
    batches = calibration_batches(backbone, fp32.model)
    graph = converted(fp32.model, batches[-1])
    placement = Placement("cpu", OPENVINO_INT8, budget)
    no_smooth_quant = nncf.AdvancedQuantizationParameters(
        smooth_quant_alphas=nncf.AdvancedSmoothQuantParameters(matmul=-1)
    )
    paths = {
        "project encoder, torch fp32": fp32,
        "OpenVINO fp32 (the converted graph)": OpenVINOEncoder(backbone, placement, graph),
        f"OpenVINO static int8, NNCF with SmoothQuant (`{OPENVINO_INT8}`, the registry's path)": load_encoder(
            backbone, placement
        ),
        "OpenVINO static int8, NNCF without SmoothQuant": OpenVINOEncoder(
            backbone, placement, quantize(graph, batches, advanced_parameters=no_smooth_quant)
        ),
        "OpenVINO static int8, NNCF with SmoothQuant, attention and FFN output projections in fp32": OpenVINOEncoder(
            backbone,
            placement,
            quantize(graph, batches, ignored_scope=nncf.IgnoredScope(patterns=[r".*output\.dense.*"], validate=False)),
        ),
        "torch dynamic int8 (`int8`, per-tensor weights)": load_encoder(backbone, Placement("cpu", "int8", budget)),
    }
    reference = plain.encode(texts["text"].tolist())
    accuracy = {name: cosines(encoder.embed(texts, threads=idle_cores()), reference) for name, encoder in paths.items()}
    timed = texts.head(TIMED)
    strings = timed["text"].tolist()
    threads = idle_cores()
    runs = {
        "plain": lambda: plain.encode(strings),
        **{name: partial(e.embed, timed, threads=threads) for name, e in paths.items()},
    }
    seconds = timed_rounds(runs, REPEATS)
    baseline = TIMED / median(seconds["plain"])
    project_fp32 = median(seconds["project encoder, torch fp32"])
    comparison = (
        f"int8 paths, {BACKBONE}: cosine to plain fp32 on {len(texts)} held-out RefSeq summaries, "
        f"speed on {TIMED} of them, {threads} thread(s)"
    )
    return [
        Row(
            comparison=comparison,
            case=name,
            unit="texts/s",
            baseline=baseline,
            project=TIMED / median(seconds[name]),
            speedup=median(seconds["plain"]) / median(seconds[name]),
            detail=f"min cosine {accuracy[name].min():.4f}, median {np.median(accuracy[name]):.4f}; "
            f"{project_fp32 / median(seconds[name]):.2f}x the project's fp32; median of {REPEATS} "
            f"alternating runs {', '.join(f'{s:.1f}' for s in seconds[name])} s",
        )
        for name in paths
    ]

"""GPU readiness: Qwen3-Embedding-8B's architecture built from its configuration (random weights, nothing
downloaded) embedding real RefSeq summary lengths in bf16 with SDPA attention; the project's length-sorted,
token-budgeted batches against plain `encode`-style batches of 32. Reports texts/s, tokens/s and MFU.

    python -m benchmarks qwen3_gpu          (on a CUDA machine; about 2 minutes on one H100/H200)

Token ids are drawn at random from the vocabulary at each text's length: the Qwen3 tokenizer is not shipped
offline, so lengths are MiniLM's WordPiece token counts of the instruction-prompted summaries (close to Qwen3's
BPE counts on English prose), capped at the backbone's max length."""

from __future__ import annotations

import time

import numpy as np

from gene_assets.embeddings.calibration import summary_texts
from gene_assets.embeddings.device import GPU_TOKEN_BUDGET
from gene_assets.embeddings.encoders import length_sorted_batches, load_encoder
from gene_assets.embeddings.registry import get_backbone

from .harness import Row, median

TEXTS = 2000
PLAIN_BATCH = 32
"""sentence-transformers' default `encode` batch size."""
REPEATS = 2
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0}
"""Dense bf16 tensor-core peak per GPU model (vendor data sheets, without sparsity)."""


def qwen3_8b_config(**overrides):
    """Qwen3-Embedding-8B's published hyper-parameters (config.json at the registry's pinned revision)."""
    from transformers import Qwen3Config

    values = dict(
        vocab_size=151_665,
        hidden_size=4096,
        intermediate_size=12_288,
        num_hidden_layers=36,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        max_position_embeddings=40_960,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        tie_word_embeddings=False,
        attention_bias=False,
        hidden_act="silu",
    )
    return Qwen3Config(**{**values, **overrides})


def random_model(config, device: str, dtype):
    """A Qwen3 model of this configuration with random weights, created on `device` in `dtype`."""
    import torch
    from transformers import Qwen3Model

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = Qwen3Model._from_config(config, attn_implementation="sdpa", dtype=dtype)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def flops_per_text(config, tokens: int) -> float:
    """Forward FLOPs of one text: every layer's projections and MLP (2 per multiply-add) and attention scores."""
    h, kv = config.hidden_size, config.num_key_value_heads * config.head_dim
    q = config.num_attention_heads * config.head_dim
    per_token = 2 * (h * q + 2 * h * kv + q * h + 3 * h * config.intermediate_size)
    attention = 2 * 2 * tokens * q  # QK^T and AV per token against `tokens` keys
    return config.num_hidden_layers * tokens * (per_token + attention)


def embed(model, token_ids: list[np.ndarray], batches: list[np.ndarray], device: str) -> np.ndarray:
    """Last-token-pooled, L2-normalized vectors (Qwen3-Embedding's pooling) in the given batches, left padding."""
    import torch

    vectors = np.zeros((len(token_ids), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for rows in batches:
            width = max(len(token_ids[i]) for i in rows)
            ids = torch.zeros((len(rows), width), dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for j, i in enumerate(rows):
                ids[j, width - len(token_ids[i]) :] = torch.from_numpy(token_ids[i])
                mask[j, width - len(token_ids[i]) :] = 1
            hidden = model(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state[:, -1]
            vectors[rows] = torch.nn.functional.normalize(hidden.float(), dim=-1).cpu().numpy()
    return vectors


def plain_batches(lengths: np.ndarray, size: int) -> list[np.ndarray]:
    """`encode`'s batches: texts sorted by length, longest first, `size` at a time."""
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + size] for i in range(0, len(order), size)]


def throughput(
    config,
    lengths: np.ndarray,
    device: str,
    dtype,
    token_budget: int,
    repeats: int = REPEATS,
    peak_tflops: float | None = None,
    seed: int = 0,
) -> dict:
    """Seconds, texts/s, tokens/s and MFU of both batchings on random token ids of the given lengths; the largest
    difference between their vectors (the batching must not change them)."""
    import torch

    rng = np.random.default_rng(seed)
    token_ids = [rng.integers(0, config.vocab_size, size=int(n)) for n in lengths]
    model = random_model(config, device, dtype)
    batchings = {"plain": plain_batches(lengths, PLAIN_BATCH), "project": length_sorted_batches(lengths, token_budget)}
    seconds, vectors = {name: [] for name in batchings}, {}
    for batches in batchings.values():  # warm-up: kernel selection and allocator, untimed
        embed(model, token_ids, batches[:1], device)
    for _ in range(repeats):
        for name, batches in batchings.items():
            if device == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            vectors[name] = embed(model, token_ids, batches, device)
            if device == "cuda":
                torch.cuda.synchronize()
            seconds[name].append(time.perf_counter() - started)
    flops = sum(flops_per_text(config, int(n)) for n in lengths)
    result = {
        "texts": len(lengths),
        "tokens": int(lengths.sum()),
        "max_abs_difference": float(np.abs(vectors["plain"] - vectors["project"]).max()),
    }
    for name, values in seconds.items():
        best = median(values)
        result[name] = {
            "seconds": values,
            "texts_per_s": len(lengths) / best,
            "tokens_per_s": lengths.sum() / best,
            "tflops": flops / best / 1e12,
            "mfu": flops / best / 1e12 / peak_tflops if peak_tflops else None,
        }
    return result


def summary_lengths(count: int, max_length: int) -> np.ndarray:
    """Token counts of `count` real instruction-prompted summaries (MiniLM's tokenizer), capped at `max_length`."""
    backbone = get_backbone("Qwen3-Embedding-8B")
    texts = summary_texts(count)
    tokenizer = load_encoder(get_backbone("all-MiniLM-L6-v2")).model.tokenizer
    ids = tokenizer([backbone.prompt + t for t in texts["text"]], truncation=True, max_length=max_length - 1)[
        "input_ids"
    ]
    return np.array([len(i) + 1 for i in ids])  # + the end-of-text token Qwen3 appends


def qwen3_gpu() -> list[Row]:
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("qwen3_gpu needs a CUDA GPU (torch sees none): run it on a GPU machine, see README.md.")
    name = torch.cuda.get_device_name()
    peak = next((value for model, value in PEAK_BF16_TFLOPS.items() if model in name), None)
    backbone = get_backbone("Qwen3-Embedding-8B")
    result = throughput(
        qwen3_8b_config(),
        summary_lengths(TEXTS, backbone.max_length),
        "cuda",
        torch.bfloat16,
        GPU_TOKEN_BUDGET,
        peak_tflops=peak,
    )
    rows = []
    for unit, key in (("texts/s", "texts_per_s"), ("tokens/s", "tokens_per_s")):
        plain, project = result["plain"][key], result["project"][key]
        mfu = "; ".join(
            f"{n} {result[n]['tflops']:.0f} TFLOP/s" + (f" = {result[n]['mfu']:.0%} MFU" if peak else "")
            for n in ("plain", "project")
        )
        rows.append(
            Row(
                comparison=f"Qwen3-Embedding-8B architecture (random weights, bf16, SDPA) on {name}, {TEXTS:,} summaries "
                f"({result['tokens']:,} tokens)",
                case=f"encode batches of {PLAIN_BATCH} vs token budget {GPU_TOKEN_BUDGET:,}",
                unit=unit,
                baseline=plain,
                project=project,
                speedup=project / plain,
                detail=f"{mfu} (peak {peak or 'unknown'} TFLOP/s); max |Δ| of vectors {result['max_abs_difference']:.1e}; "
                f"median of {REPEATS}",
            )
        )
    return rows

"""The GPU benchmark's Qwen3 path on CPU with a tiny configuration: the same code the 8B run takes on CUDA."""

import pytest

from benchmarks.qwen3_gpu import flops_per_text, qwen3_8b_config, summary_lengths, throughput
from gene_assets.embeddings.registry import get_backbone


def test_qwen3_config_has_the_8b_parameter_count():
    import torch
    from transformers import Qwen3Model

    with torch.device("meta"):
        model = Qwen3Model(qwen3_8b_config())
    assert sum(p.numel() for p in model.parameters()) == get_backbone("Qwen3-Embedding-8B").n_parameters


def test_tiny_qwen3_gives_the_same_vectors_in_token_budget_and_plain_batches():
    import torch

    tiny = qwen3_8b_config(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
    )
    lengths = summary_lengths(40, max_length=256)
    assert lengths.max() <= 256 and lengths.min() > 10  # real summaries with the instruction prompt
    result = throughput(tiny, lengths, "cpu", torch.float32, token_budget=2048, repeats=1, peak_tflops=1.0)
    assert result["max_abs_difference"] < 1e-4  # batching and left padding do not change a text's vector
    for name in ("plain", "project"):
        assert result[name]["texts_per_s"] > 0 and 0 < result[name]["mfu"] < 1
        assert result[name]["tokens_per_s"] == pytest.approx(result[name]["texts_per_s"] * lengths.mean())
    projections_and_mlp = 2 * (64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 128)  # q, k and v, o, gate/up/down
    assert flops_per_text(tiny, 10) == 2 * 10 * (projections_and_mlp + 4 * 10 * 64)  # layers × tokens × (… + scores)

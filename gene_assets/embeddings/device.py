"""The embedding-device resource: where and at which precision sentence-transformers backbones run."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from dagster import ConfigurableResource

from .registry import Backbone, Precision

GPU_TOKEN_BUDGET = 65_536
"""Padded tokens per batch on a GPU: ~1 GiB of activations for a 4096-d 8B model in bf16."""


@dataclass(frozen=True)
class Placement:
    """One backbone's run settings: device, precision, tokens per batch, attention implementation."""

    device: str
    precision: Precision
    token_budget: int
    attention: str | None = None
    """`sdpa` (PyTorch scaled-dot-product attention) on CUDA; None keeps the model's default."""


class EmbeddingDevice(ConfigurableResource):
    """`auto` picks CUDA for sentence-transformers backbones when torch sees a GPU (bf16 where the GPU supports it, else fp16; SDPA attention) and the
    CPU otherwise (the backbone's own `fast_path` precision). Batches hold at most `token_budget` padded tokens."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    gpu_precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    token_budget: int | None = None
    """None: the backbone's CPU budget on CPU, GPU_TOKEN_BUDGET on CUDA."""

    def placement(self, backbone: Backbone) -> Placement:
        """Where this backbone runs; only sentence-transformers models use the accelerator."""
        import torch

        if backbone.kind != "sentence_transformers":
            return Placement("cpu", "fp32", self.token_budget or backbone.fast_path.token_budget)
        use_cuda = self.device == "cuda" or (self.device == "auto" and torch.cuda.is_available())
        if self.device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"embedding_device is set to cuda but torch {torch.__version__} sees no GPU; set device: auto or cpu."
            )
        if not use_cuda:
            return Placement("cpu", backbone.fast_path.precision, self.token_budget or backbone.fast_path.token_budget)
        precision = self.gpu_precision
        if precision == "auto":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return Placement("cuda", precision, self.token_budget or GPU_TOKEN_BUDGET, attention="sdpa")


GPU_POOL = "gpu"
"""Concurrency pool of the steps that hold the embedding device (limit: `concurrency.pools` in dagster.yaml)."""
K8S_GPUS_ENV = "GENE_ASSETS_K8S_GPUS"


def k8s_gpu_tags() -> dict:
    """Op tags that make the Kubernetes executor request GPUs for the step's pod ($GENE_ASSETS_K8S_GPUS, default 1;
    0 requests none). Other executors ignore them."""
    gpus = int(os.environ.get(K8S_GPUS_ENV, "1"))
    if gpus <= 0:
        return {}
    limits = {"nvidia.com/gpu": str(gpus)}
    return {"dagster-k8s/config": {"container_config": {"resources": {"limits": limits, "requests": limits}}}}

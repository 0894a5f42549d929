"""The embedding-device resource: where and at which precision sentence-transformers backbones run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dagster import ConfigurableResource
from pydantic import Field

from ..settings import K8S_GPUS_ENV, int_setting
from .backbone import Backbone, Precision

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
    decision: dict | None = field(default=None, compare=False, repr=False)
    """How the CPU precision was chosen (calibration evidence, `PrecisionDecision.evidence()`); None on GPU."""


class EmbeddingDevice(ConfigurableResource):
    """`auto` picks CUDA for sentence-transformers backbones when torch sees a GPU (bf16 where the GPU supports it,
    else fp16; SDPA attention) and the CPU otherwise. On CPU the precision is the fastest of the backbone's allowed
    `fast_path.precisions` within its accuracy bar, found by a short calibration against fp32 on real summaries and
    remembered per (machine, backbone, revision) (`calibration.py`). Batches hold at most `token_budget` padded tokens."""

    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto",
        description=(
            "auto: CUDA for sentence-transformers backbones when torch sees a GPU, else CPU; cpu or cuda force one."
        ),
    )
    gpu_precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        default="auto", description="Precision on CUDA; auto: bf16 where the GPU supports it, else fp16."
    )
    cpu_precision: Literal["auto", "fp32", "bf16", "int8", "openvino-int8"] = Field(
        default="auto",
        description="auto: calibrated on this machine; any other value is used as given (recorded as configured).",
    )
    token_budget: int | None = Field(
        default=None, description="None: the backbone's CPU budget on CPU, GPU_TOKEN_BUDGET on CUDA."
    )
    calibration_texts: int = Field(
        default=32,
        description=(
            "Real RefSeq summaries timed per precision in a calibration (about a second of fp32 MiniLM on 2 idle "
            "cores)."
        ),
    )
    data_dir: str | None = Field(
        default=None,
        description="Where the calibration's RefSeq summaries are read; None: the project's data directory.",
    )
    decisions_path: str | None = Field(
        default=None,
        description="The remembered decisions; None: $GENE_ASSETS_PRECISION_DECISIONS or the project home's cache.",
    )

    def placement(self, backbone: Backbone) -> Placement:
        """Where this backbone runs; only sentence-transformers models use the accelerator."""
        import torch

        if not backbone.kind_spec.on_device:
            return Placement("cpu", "fp32", self.token_budget or backbone.fast_path.token_budget)
        if self.torch_device() == "cpu":
            budget = self.token_budget or backbone.fast_path.token_budget
            decision = self.cpu_decision(backbone, budget)
            return Placement("cpu", decision.precision, budget, decision=decision.evidence())
        precision = self.gpu_precision
        if precision == "auto":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return Placement("cuda", precision, self.token_budget or GPU_TOKEN_BUDGET, attention="sdpa")

    def torch_device(self) -> str:
        """cuda when configured so, or on auto when torch sees a GPU; else cpu."""
        import torch

        if self.device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"embedding_device is set to cuda but torch {torch.__version__} sees no GPU; set device: auto or cpu."
            )
        return "cuda" if self.device == "cuda" or (self.device == "auto" and torch.cuda.is_available()) else "cpu"

    def cpu_decision(self, backbone: Backbone, token_budget: int):
        """The remembered decision for this machine, else a calibration (stored for the next run)."""
        from .calibration import (
            DecisionStore,
            PrecisionDecision,
            calibrate,
            candidates,
            machine_fingerprint,
            summary_texts,
        )
        from .encoders import idle_cores

        fingerprint = machine_fingerprint()
        if self.cpu_precision != "auto":
            return PrecisionDecision(self.cpu_precision, "configured (embedding_device.cpu_precision)", fingerprint)
        store = DecisionStore(self.decisions_path)
        remembered = store.get(fingerprint, backbone)
        if remembered is not None:
            return remembered
        precisions, excluded = candidates(backbone, fingerprint["flags"])
        if not precisions:
            decision = PrecisionDecision(
                "fp32", "no reduced precision is a candidate here", fingerprint, excluded=excluded
            )
        else:
            decision = calibrate(
                backbone,
                precisions,
                summary_texts(self.calibration_texts, self.data_dir),
                token_budget,
                idle_cores(),
                fingerprint,
                excluded,
            )
        store.put(backbone, decision)
        return decision


GPU_POOL = "gpu"
"""Concurrency pool of the steps that hold the embedding device (limit: `concurrency.pools` in dagster.yaml)."""


def k8s_gpu_tags() -> dict:
    """Op tags that make the Kubernetes executor request GPUs for the step's pod ($GENE_ASSETS_K8S_GPUS, default 1;
    0 requests none). Other executors ignore them."""
    gpus = int_setting(K8S_GPUS_ENV, 1, 0)
    if gpus <= 0:
        return {}
    limits = {"nvidia.com/gpu": str(gpus)}
    return {"dagster-k8s/config": {"container_config": {"resources": {"limits": limits, "requests": limits}}}}

"""Static int8 on OpenVINO: a sentence-transformers model (transformer, pooling, normalization) converted to an
OpenVINO graph and quantized after training by NNCF for the transformer model type: per-channel int8 weights,
activations quantized with ranges calibrated on real RefSeq summaries, SmoothQuant moving activation outliers into
the weights. Matrix products then run on the CPU's int8 (VNNI) kernels; everything else in fp32 (bf16 is never
used, so the vectors are the same kind on CPUs with and without it).

The quantized model is built once per (backbone, recipe) into the model cache, atomically, with the sha256 of its
files recorded beside them and verified before every load; the recipe (versions, calibration texts) is part of
the embedding cache key, the sha256 goes with the vectors' metadata."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from ..storage import sha256_file, write_bytes_atomic
from .backbone import OPENVINO_INT8, Backbone
from .device import Placement
from .encoders import SentenceTransformerEncoder, length_sorted_batches
from .weights import BackboneUnavailableError, model_cache_dir

CALIBRATION_TEXTS = 300
"""Real summaries whose activation ranges set the int8 scales (a fixed sample, seed CALIBRATION_SEED)."""
CALIBRATION_SEED = 1
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
MODEL_FILES = ("model.xml", "model.bin")
RECORD = "sha256.json"


def quantization_recipe(backbone: Backbone) -> dict:
    """Everything besides the fp32 weights that decides the quantized model: part of the embedding cache key."""
    return {
        "method": "nncf post-training static int8, model_type transformer, preset mixed, SmoothQuant",
        "nncf": importlib.metadata.version("nncf"),
        "openvino": importlib.metadata.version("openvino"),
        "calibration_texts": CALIBRATION_TEXTS,
        "calibration_seed": CALIBRATION_SEED,
        "token_budget": backbone.fast_path.token_budget,
        "weights_sha256": backbone.weights_sha256,
    }


def quantized_model_dir(backbone: Backbone) -> Path:
    digest = hashlib.sha256(json.dumps(quantization_recipe(backbone), sort_keys=True).encode()).hexdigest()[:16]
    return model_cache_dir() / backbone.name / OPENVINO_INT8 / digest


def quantized_model_record(backbone: Backbone, st_model=None) -> dict:
    """The recipe and the sha256 of the quantized model's files, building the model first where it is missing
    (`st_model`: the loaded fp32 sentence-transformers model, else loaded here)."""
    target = quantized_model_dir(backbone)
    record = readable_record(target)
    if record is None:
        if target.exists():
            print(
                f"{target}: the quantized model of {backbone.name} has no readable {RECORD} (an interrupted build or "
                "an edit); building it again.",
                file=sys.stderr,
            )
            discard(target)
        if st_model is None:
            st_model = SentenceTransformerEncoder(backbone).model
        build_quantized_model(backbone, st_model, target)
        record = readable_record(target)
    for name, expected in record["sha256"].items():
        actual = sha256_file(target / name) if (target / name).is_file() else "missing"
        if actual != expected:
            raise BackboneUnavailableError(
                f"Backbone {backbone.name!r}: the quantized model file {target / name} has sha256 {actual}, but "
                f"{expected} was recorded when it was built. Delete {target}: the next run builds it again."
            )
    return record


def readable_record(target: Path) -> dict | None:
    """The quantized model's recorded recipe and sha256s, or None when the record is missing or unreadable."""
    try:
        record = json.loads((target / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("sha256"), dict) else None


def discard(target: Path) -> None:
    """Remove a quantized model directory that cannot be trusted: renamed aside first, so no reader sees half of it."""
    aside = target.with_name(f".{target.name}.discarded-{os.getpid()}")
    os.replace(target, aside)
    shutil.rmtree(aside)


def build_quantized_model(backbone: Backbone, st_model, target: Path) -> None:
    """Convert, quantize on the calibration summaries, save and record sha256s in a temporary directory beside
    `target`, then rename it: `target` appears complete or not at all."""
    import openvino as ov

    batches = calibration_batches(backbone, st_model)
    quantized = quantize(converted(st_model, batches[-1]), batches)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=target.parent) as tmp:
        built = Path(tmp) / "model"
        ov.save_model(quantized, built / MODEL_FILES[0], compress_to_fp16=False)
        record = {"recipe": quantization_recipe(backbone), "sha256": {n: sha256_file(built / n) for n in MODEL_FILES}}
        write_bytes_atomic(built / RECORD, json.dumps(record, indent=1, sort_keys=True).encode())
        try:
            os.replace(built, target)
        except OSError:
            if not (target / RECORD).is_file():
                raise  # else another process finished the same build first: its model is used


def calibration_batches(backbone: Backbone, st_model) -> list[dict[str, np.ndarray]]:
    """The calibration summaries tokenized in the project's length-sorted token-budget batches."""
    from .calibration import summary_texts

    strings = summary_texts(CALIBRATION_TEXTS, seed=CALIBRATION_SEED)["text"].tolist()
    lengths = np.array(
        [
            len(ids)
            for ids in st_model.tokenizer(strings, truncation=True, max_length=st_model.max_seq_length)["input_ids"]
        ]
    )
    return [
        model_inputs(st_model, [strings[i] for i in rows])
        for rows in length_sorted_batches(lengths, backbone.fast_path.token_budget)
    ]


def converted(st_model, example: dict[str, np.ndarray]):
    """The fp32 sentence-transformers model as an OpenVINO graph with dynamic batch and sequence dimensions."""
    import openvino as ov
    import torch

    with warnings.catch_warnings():  # the traced shape checks (mask length = sequence length) hold for every batch
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return ov.convert_model(sentence_embedding_module(st_model), example_input=example)


def quantize(graph, batches: list[dict], **options):
    """NNCF post-training int8 of `graph` for the transformer model type (mixed preset: symmetric per-channel
    weights, asymmetric activations; SmoothQuant) on `batches`; `options` go to nncf.quantize."""
    import nncf

    return nncf.quantize(
        graph,
        nncf.Dataset(batches),
        model_type=nncf.ModelType.TRANSFORMER,
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(batches),
        **options,
    )


def model_inputs(st_model, strings: list[str]) -> dict[str, np.ndarray]:
    features = st_model.preprocess(strings)
    return {name: features[name].numpy() for name in INPUTS if name in features}


def sentence_embedding_module(st_model):
    """The sentence-transformers model as a module taking the tokenizer's tensors (what convert_model traces)."""
    import torch

    class SentenceEmbedding(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.st_model = st_model

        def forward(self, input_ids, attention_mask, token_type_ids):
            features = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return self.st_model(features)["sentence_embedding"]

    return SentenceEmbedding().eval()


class OpenVINOEncoder(SentenceTransformerEncoder):
    """The project's length-sorted token-budget batches through an OpenVINO graph of the model (default: the
    backbone's quantized model from the model cache), compiled per thread count with fp32 inference precision."""

    def __init__(self, backbone: Backbone, placement: Placement, graph=None):
        if placement.device != "cpu":
            raise ValueError(f"{OPENVINO_INT8} runs on CPU only, not on {placement.device!r}.")
        super().__init__(backbone, placement)
        if graph is None:
            quantized_model_record(backbone, self.model)  # built here once, verified before every load
            graph = quantized_model_dir(backbone) / MODEL_FILES[0]
        self.graph = graph
        self.requests: dict[int, object] = {}

    def forward(self, features, threads: int) -> np.ndarray:
        if threads not in self.requests:
            import openvino as ov

            self.requests[threads] = (
                ov.Core()
                .compile_model(
                    self.graph,
                    "CPU",
                    {
                        "INFERENCE_PRECISION_HINT": "f32",
                        "INFERENCE_NUM_THREADS": threads,
                        "PERFORMANCE_HINT": "LATENCY",
                        "ENABLE_CPU_PINNING": False,
                    },
                )
                .create_infer_request()
            )
        outputs = self.requests[threads].infer({name: features[name].numpy() for name in INPUTS if name in features})
        return next(iter(outputs.values())).copy()


def sentence_transformer_encoder(backbone: Backbone, placement: Placement | None) -> SentenceTransformerEncoder:
    """A sentence-transformers backbone's encoder: the OpenVINO graph when its placement's precision is
    openvino-int8, else the PyTorch model."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if placement is not None and placement.precision == OPENVINO_INT8:
        return OpenVINOEncoder(backbone, placement)
    return SentenceTransformerEncoder(backbone, placement)

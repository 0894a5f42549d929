"""What a backbone is: its registry entry (`Backbone`) and its kind. A kind is one entry of `KINDS`: the encoder
that embeds its texts and how it is run, cached, scored and listed, so a new kind of model is one entry here (as an
mteb `ModelMeta(loader=...)` names its loader)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from ..errors import GeneAssetsError

BackboneKind = Literal[
    "sentence_transformers", "bag_of_words", "tfidf", "random", "text_availability", "precomputed", "openai"
]
Precision = Literal["fp32", "bf16", "fp16", "int8", "openvino-int8"]
OPENVINO_INT8 = "openvino-int8"
"""Static int8 on OpenVINO's CPU kernels, quantized by NNCF with activation ranges from real summaries (openvino_int8.py)."""

PARTITION_KEY_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
"""A partition key (backbone, dataset), matched whole: anchored at the very end, so a trailing newline (which `$`
lets through) does not pass."""


class InvalidBackboneError(GeneAssetsError, ValueError):
    """A registry entry cannot be used (e.g. its name is not a valid partition key)."""


@dataclass(frozen=True)
class FastPathSettings:
    """How a sentence-transformers backbone may run on CPU. The `embedding_device` resource picks the precision among
    `precisions` on each machine (`calibration.py`); it changes the vectors, so it is recorded with them."""

    precisions: tuple[Precision, ...] = ("fp32",)
    """Precisions allowed on CPU besides fp32 (always allowed). fp32: the model as published. bf16: weights and
    activations in 16 bits. int8: dynamic int8 quantization of every nn.Linear (activations quantized per batch).
    openvino-int8: the model converted to OpenVINO and quantized statically (per-channel weights, calibrated
    activation ranges, SmoothQuant), everything but the int8 matrix products in fp32."""
    min_cosine: float = 0.99
    """Accuracy floor: a reduced precision's smallest cosine to fp32 vectors over the calibration texts."""
    token_budget: int = 4096
    """Padded tokens per batch: texts sorted by token length are packed into batches of at most this many tokens."""


@dataclass(frozen=True)
class Backbone:
    """A text-embedding backbone. `name` is its partition key."""

    name: str
    kind: BackboneKind
    dims: int
    model_id: str | None = None
    """Hub model id, a local model directory, or the API model name (openai)."""
    revision: str | None = None
    prompt: str | None = None
    max_length: int | None = None
    pooling: str | None = None
    n_parameters: int | None = None
    weights_package: str | None = None
    """A Python package that ships the weights (its `get_model_path()` gives the model directory)."""
    weights_sha256: str | None = None
    """sha256 of model.safetensors when the weights are shipped locally; verified before loading."""
    weights_requirements: str | None = None
    """A requirements file (relative to the project root) of packages whose files concatenate into a zip of the
    model directory; reassembled once into the model cache (`weights.py`)."""
    trust_remote_code: bool = False
    """Run the model repository's own Python code; only entries that need it and were reviewed set it."""
    seed: int | None = None
    offline: bool = False
    """True when the backbone works without network access."""
    fast_path: FastPathSettings = field(default_factory=FastPathSettings)
    """CPU precision and batching; unmeasured backbones run in fp32, so their vectors are the published model's."""
    source_path: str | None = None
    """precomputed: the file of published gene embeddings (CSV/TSV/parquet, pickle of {symbol: vector}, word2vec text)."""
    symbol_column: str = "symbol"
    """precomputed tables: the column with gene symbols."""
    api_key_env: str | None = None
    """openai: the environment variable holding the API key (never stored anywhere else)."""
    origin: str = "registry"
    """Where the entry comes from: `registry` (this file), `mteb` or `huggingface_hub` (discovery)."""
    description: str = ""

    @property
    def kind_spec(self) -> KindSpec:
        return kind_spec(self.kind)

    def __post_init__(self) -> None:
        if not PARTITION_KEY_PATTERN.fullmatch(self.name):
            raise InvalidBackboneError(
                f"Backbone name {self.name!r} is not a valid partition key: use letters, digits, '.', '_' or '-' "
                "(at most 128 characters, starting with a letter or digit)."
            )
        for field_name in ("dims", "max_length"):
            value = getattr(self, field_name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise InvalidBackboneError(
                    f"Backbone {self.name!r}: {field_name} must be a whole number of 1 or more, got {value!r}."
                )


@dataclass(frozen=True)
class KindSpec:
    """How the backbones of one kind embed texts and run."""

    encoder: str | None
    """`.module:name` (in this package) of the encoder's class or factory, imported when first used and called with
    the backbone (and its placement, when the kind runs on the device). None: the vectors are read from the
    backbone's file."""
    cached: bool = False
    """Vectors are kept per text in the embedding cache: models and web APIs, costly to recompute. Corpus-fitted
    kinds (bag-of-words, TF-IDF) depend on the whole corpus, and the controls are cheaper to compute than to look up."""
    on_device: bool = False
    """Runs on the accelerator when there is one, at a precision chosen per machine; everything else runs on CPU in
    fp32."""
    embeds_sentences: bool = False
    """Embeds GenePT-s cell sentences: text models. Bag-of-words learns its vocabulary from gene texts (gene symbols
    are rarely in it) and the controls ignore text, so GenePT-s would not mean anything for them."""
    redrawn: bool = False
    """A random control: scored as a band over fresh draws, one per seed."""
    needs_api_key: bool = False
    """Calls a web API with a key read from the environment."""

    @property
    def from_file(self) -> bool:
        return self.encoder is None


KINDS: dict[str, KindSpec] = {
    "sentence_transformers": KindSpec(
        ".openvino_int8:sentence_transformer_encoder", cached=True, on_device=True, embeds_sentences=True
    ),
    "bag_of_words": KindSpec(".encoders:BagOfWordsEncoder"),
    "tfidf": KindSpec(".encoders:TfidfEncoder"),
    "random": KindSpec(".encoders:RandomEncoder", redrawn=True),
    "text_availability": KindSpec(".encoders:TextAvailabilityEncoder"),
    "precomputed": KindSpec(None),
    "openai": KindSpec(".openai_api:OpenAIEncoder", cached=True, needs_api_key=True),
}
UNKNOWN_KIND = KindSpec(None)
"""The spec of a kind this version does not know (a stored table's or a newer registry's): nothing to run."""


def kind_spec(kind: str | None) -> KindSpec:
    return KINDS.get(kind, UNKNOWN_KIND)

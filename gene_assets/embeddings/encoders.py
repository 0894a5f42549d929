"""Encoders turn (gene ids, texts) into float32 matrices, one implementation per backbone kind."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import pandas as pd

from ..storage import sha256_file
from .registry import Backbone

Progress = Callable[[int, int], None]


class BackboneUnavailableError(RuntimeError):
    """The backbone's weights cannot be loaded here (offline, missing or not verified)."""


class Encoder(Protocol):
    backbone: Backbone

    def embed(self, texts: pd.DataFrame, progress: Progress | None = None) -> np.ndarray:
        """One float32 row per row of `texts` (columns entrez_id, text, source)."""


def random_gene_vectors(entrez_ids, dims: int, seed: int) -> np.ndarray:
    """N(0, 1) vectors seeded by (seed, Entrez id): the same gene gets the same vector in any subset."""
    if len(entrez_ids) == 0:
        return np.zeros((0, dims), dtype=np.float32)
    return np.stack([np.random.default_rng([seed, int(g)]).standard_normal(dims) for g in entrez_ids]).astype(np.float32)


class RandomEncoder:
    """The negative control: random vectors that ignore the text."""

    def __init__(self, backbone: Backbone):
        self.backbone = backbone

    def embed(self, texts, progress=None):
        return random_gene_vectors(texts["entrez_id"].to_numpy(), self.backbone.dims, self.backbone.seed or 0)


class TextAvailabilityEncoder:
    """The confound control: [has the view's full text (not a fallback), log(1 + words in the text)]."""

    def __init__(self, backbone: Backbone, primary_sources: dict[str, str]):
        self.backbone = backbone
        self.primary_sources = set(primary_sources.values())

    def embed(self, texts, progress=None):
        available = texts["source"].isin(self.primary_sources).to_numpy(dtype=np.float32)
        words = np.log1p(texts["text"].str.split().str.len().to_numpy(dtype=np.float32))
        return np.column_stack([available, words]).astype(np.float32)


class BagOfWordsEncoder:
    """Counts of the `dims` most frequent words (English stop words removed) over the texts embedded together."""

    def __init__(self, backbone: Backbone):
        self.backbone = backbone

    def embed(self, texts, progress=None):
        from sklearn.feature_extraction.text import CountVectorizer

        vectorizer = CountVectorizer(max_features=self.backbone.dims, stop_words="english")
        counts = vectorizer.fit_transform(texts["text"].tolist()).toarray().astype(np.float32)
        if counts.shape[1] < self.backbone.dims:
            counts = np.pad(counts, ((0, 0), (0, self.backbone.dims - counts.shape[1])))
        return counts


class SentenceTransformerEncoder:
    def __init__(self, backbone: Backbone, device: str = "cpu", batch_size: int = 32):
        from sentence_transformers import SentenceTransformer

        self.backbone = backbone
        self.batch_size = batch_size
        source = model_source(backbone)
        try:
            kwargs = {} if Path(source).is_dir() else {"revision": backbone.revision}
            self.model = SentenceTransformer(
                source, device=device, trust_remote_code=backbone.trust_remote_code, **kwargs
            )
        except Exception as exc:  # the hub client raises several error types for missing weights
            raise BackboneUnavailableError(
                f"Backbone {backbone.name!r}: weights for {backbone.model_id}@{backbone.revision} could not be loaded "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). This machine has no copy of them and "
                "cannot reach the Hugging Face Hub. Download them where there is network "
                f"(`hf download {backbone.model_id} --revision {backbone.revision}`) into the HF_HOME used here, "
                "or leave this backbone out of the run."
            ) from exc
        if backbone.max_length:
            self.model.max_seq_length = backbone.max_length

    def embed(self, texts, progress=None):
        texts = texts["text"].tolist()
        chunk = 1024
        parts = []
        for start in range(0, len(texts), chunk):
            parts.append(
                self.model.encode(
                    texts[start : start + chunk],
                    batch_size=self.batch_size,
                    prompt=self.backbone.prompt,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
            )
            if progress:
                progress(min(start + chunk, len(texts)), len(texts))
        if not parts:
            return np.zeros((0, self.backbone.dims), dtype=np.float32)
        return np.concatenate(parts).astype(np.float32)


def model_source(backbone: Backbone) -> str:
    """A verified local model directory for packaged weights, otherwise the hub model id."""
    if not backbone.weights_package:
        return backbone.model_id
    try:
        package = importlib.import_module(backbone.weights_package)
    except ImportError as exc:
        raise BackboneUnavailableError(
            f"Backbone {backbone.name!r}: the weights package {backbone.weights_package} is not installed. "
            "Run `make setup` (it installs the pinned requirements)."
        ) from exc
    path = Path(package.get_model_path())
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise BackboneUnavailableError(f"Backbone {backbone.name!r}: {weights} is missing; reinstall {backbone.weights_package}.")
    if backbone.weights_sha256:
        actual = sha256_file(weights)
        if actual != backbone.weights_sha256:
            raise BackboneUnavailableError(
                f"Backbone {backbone.name!r}: {weights} has sha256 {actual}, expected {backbone.weights_sha256}. "
                f"The weights are not the pinned {backbone.model_id}@{backbone.revision}; reinstall "
                f"{backbone.weights_package} from a trusted index. Nothing was embedded."
            )
    return str(path)


_ENCODERS: dict[str, Encoder] = {}


def load_encoder(backbone: Backbone, device: str = "cpu") -> Encoder:
    """An encoder for the backbone, loaded once per process."""
    key = f"{backbone.name}@{device}"
    if key not in _ENCODERS:
        if backbone.kind == "random":
            _ENCODERS[key] = RandomEncoder(backbone)
        elif backbone.kind == "text_availability":
            from ..texts.views import VIEWS

            _ENCODERS[key] = TextAvailabilityEncoder(backbone, {name: v.primary_source for name, v in VIEWS.items()})
        elif backbone.kind == "bag_of_words":
            _ENCODERS[key] = BagOfWordsEncoder(backbone)
        elif backbone.kind == "sentence_transformers":
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            _ENCODERS[key] = SentenceTransformerEncoder(backbone, device=device)
        else:
            raise ValueError(f"Backbone {backbone.name!r} has unknown kind {backbone.kind!r}.")
    return _ENCODERS[key]

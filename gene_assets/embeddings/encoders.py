"""Encoders turn (gene ids, texts) into float32 matrices, one implementation per backbone kind."""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import logging
import os
from collections.abc import Callable, Iterator
from typing import Protocol

import numpy as np
import pandas as pd

from ..texts.views import VIEWS
from .backbone import OPENVINO_INT8, Backbone, Precision
from .device import Placement
from .weights import BackboneUnavailableError, model_source, weights_origin

Progress = Callable[..., None]
"""progress(texts_done, texts_total[, characters_done]): an encoder's report after each batch."""

logger = logging.getLogger(__name__)


class Encoder(Protocol):
    backbone: Backbone

    def embed(self, texts: pd.DataFrame, progress: Progress | None = None) -> np.ndarray:
        """One float32 row per row of `texts` (columns entrez_id, text, source)."""


def random_gene_vectors(entrez_ids, dims: int, seed: int) -> np.ndarray:
    """N(0, 1) vectors seeded by (seed, Entrez id): the same gene gets the same vector in any subset."""
    if len(entrez_ids) == 0:
        return np.zeros((0, dims), dtype=np.float32)
    return np.stack([np.random.default_rng([seed, int(g)]).standard_normal(dims) for g in entrez_ids]).astype(
        np.float32
    )


class RandomEncoder:
    """The negative control: random vectors that ignore the text."""

    def __init__(self, backbone: Backbone):
        self.backbone = backbone

    def embed(self, texts, progress=None):
        return random_gene_vectors(texts["entrez_id"].to_numpy(), self.backbone.dims, self.backbone.seed or 0)


class TextAvailabilityEncoder:
    """The confound control: [has the view's full text (not a fallback), log(1 + words in the text)]."""

    def __init__(self, backbone: Backbone):
        self.backbone = backbone
        self.primary_sources = {view.primary_source for view in VIEWS.values()}

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


class TfidfEncoder:
    """Latent semantic analysis of the texts embedded together: sublinear TF-IDF rows (English stop words removed,
    l2-normalized), reduced by truncated SVD to `dims` components (randomized, fixed seed, signs fixed by
    scikit-learn), l2-normalized again; zero columns pad a vocabulary too small for `dims` components. The SVD runs on
    one BLAS thread: the same vectors on any machine (a threaded BLAS sums in a core-dependent order), and no
    oversubscription beside torch's threads on shared cores."""

    def __init__(self, backbone: Backbone):
        self.backbone = backbone

    def embed(self, texts, progress=None):
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.preprocessing import normalize
        from threadpoolctl import threadpool_limits

        tfidf = TfidfVectorizer(sublinear_tf=True, stop_words="english", norm="l2").fit_transform(
            texts["text"].tolist()
        )
        components = min(self.backbone.dims, tfidf.shape[1] - 1, tfidf.shape[0] - 1)
        with threadpool_limits(limits=1, user_api="blas"):
            reduced = TruncatedSVD(n_components=components, random_state=self.backbone.seed or 0).fit_transform(tfidf)
        vectors = normalize(reduced).astype(np.float32)
        return np.pad(vectors, ((0, 0), (0, self.backbone.dims - components)))


def vector_settings(backbone: Backbone, precision: Precision) -> dict:
    """What determines a sentence-transformers backbone's vector besides the text: the embedding cache key."""
    from .openvino_int8 import quantization_recipe

    return {
        "backbone": backbone.name,
        "model_id": backbone.model_id,
        "revision": backbone.revision,
        "weights_sha256": backbone.weights_sha256,
        "prompt": backbone.prompt,
        "max_length": backbone.max_length,
        "pooling": backbone.pooling,
        "dims": backbone.dims,
        "precision": precision,
        "sentence_transformers_major": importlib.metadata.version("sentence-transformers").split(".")[0],
        **({"quantization": quantization_recipe(backbone)} if precision == OPENVINO_INT8 else {}),
    }


def length_sorted_batches(lengths: np.ndarray, token_budget: int) -> list[np.ndarray]:
    """Row indices grouped by length into batches, each padded batch within `token_budget` tokens. The longest batch
    comes first (a batch that does not fit in memory fails at once); the others follow in a fixed shuffled order,
    so the rate seen early predicts the time left. A batch's vectors do not depend on when it runs."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    batches, start = [], 0
    while start < len(order):
        size = max(1, token_budget // max(1, int(lengths[order[start]])))
        batches.append(order[start : start + size])
        start += size
    rest = batches[1:]
    np.random.default_rng(0).shuffle(rest)
    return batches[:1] + rest


def idle_cores(sample_seconds: float = 0.1) -> int:
    """Cores of this process not busy with other work right now (at least one).

    torch threads beyond the idle cores wait for each other at every parallel region: on 2 cores shared with one
    busy process, MiniLM on 2 threads embeds 3-5x slower than on 1.
    """
    import psutil

    usable = len(os.sched_getaffinity(0))
    total = psutil.cpu_count() or usable
    busy = psutil.cpu_percent(interval=sample_seconds) / 100 * total
    return max(1, min(usable, round(total - busy)))


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run torch's intra-op parallelism on `count` threads inside the block."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class SentenceTransformerEncoder:
    """Length-sorted, token-budgeted batches through the sentence-transformers model at the backbone's precision."""

    def __init__(self, backbone: Backbone, placement: Placement | None = None):
        from sentence_transformers import SentenceTransformer

        self.backbone = backbone
        self.placement = placement or Placement("cpu", "fp32", backbone.fast_path.token_budget)
        source = model_source(backbone)
        kwargs = {}
        if self.placement.device != "cpu":  # load in the run precision: an 8B model does not fit twice in fp32
            kwargs["model_kwargs"] = {
                "dtype": torch_dtype(self.placement.precision),
                "attn_implementation": self.placement.attention,
            }
        try:
            model = SentenceTransformer(
                source, device=self.placement.device, trust_remote_code=backbone.trust_remote_code, **kwargs
            )
        except Exception as exc:  # a truncated or unreadable file fails in safetensors, transformers or tokenizers
            raise BackboneUnavailableError(
                f"Backbone {backbone.name!r}: {backbone.model_id}@{backbone.revision} from {weights_origin(backbone)} "
                f"could not be loaded from {source} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). "
                "Delete that copy to fetch it again, or leave this backbone out of the run."
            ) from exc
        if backbone.max_length:
            model.max_seq_length = backbone.max_length
        self.model = at_precision(model.eval(), self.placement.precision, self.placement.device)

    def token_lengths(self, texts: list[str]) -> np.ndarray:
        """Tokens per text (prompt and special tokens included), truncated at the model's max length."""
        prompted = [(self.backbone.prompt or "") + text for text in texts]
        encoded = self.model.tokenizer(prompted, truncation=True, max_length=self.model.max_seq_length)
        return np.array([len(ids) for ids in encoded["input_ids"]], dtype=np.int64)

    def embed(self, texts, progress=None, threads: int | None = None):
        """`threads`: torch threads on CPU (None: the idle cores)."""
        import torch

        strings = texts["text"].tolist()
        vectors = np.zeros((len(strings), self.backbone.dims), dtype=np.float32)
        if not strings:
            return vectors
        done = characters = 0
        on_cpu = self.placement.device == "cpu"
        threads = threads or (idle_cores() if on_cpu else torch.get_num_threads())
        logger.info(
            f"{self.backbone.name}: {len(strings)} texts on {self.placement.device}, {self.placement.precision}"
            + (f", {threads} torch threads" if on_cpu else "")
        )
        with torch_threads(threads), torch.inference_mode():
            for rows in length_sorted_batches(self.token_lengths(strings), self.placement.token_budget):
                features = self.model.preprocess([strings[i] for i in rows], prompt=self.backbone.prompt)
                vectors[rows] = self.forward(features, threads)
                done += len(rows)
                characters += sum(len(strings[i]) for i in rows)
                if progress:
                    progress(done, len(strings), characters)
        return vectors

    def forward(self, features: dict, threads: int) -> np.ndarray:
        """One tokenized batch's sentence embeddings as float32 rows (`threads`: set by the caller for torch)."""
        from sentence_transformers.util import batch_to_device

        features = batch_to_device(features, self.model.device)
        return self.model(features)["sentence_embedding"].float().cpu().numpy()


def torch_dtype(precision: Precision):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


def at_precision(model, precision: Precision, device: str):
    """The model converted to bf16 / fp16 or dynamically int8-quantized; fp32 leaves it as loaded."""
    import torch

    if precision in ("bf16", "fp16"):
        return model.to(torch_dtype(precision))
    if precision == "int8":
        if device != "cpu":
            raise ValueError(f"int8 dynamic quantization runs on CPU only, not on {device!r}.")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return model


_ENCODERS: dict[str, Encoder] = {}


def load_encoder(backbone: Backbone, placement: Placement | None = None) -> Encoder:
    """An encoder for the backbone (its kind's `encoder`), loaded once per process and placement."""
    key = f"{backbone.name}@{placement}"
    if key not in _ENCODERS:
        kind = backbone.kind_spec
        if kind.encoder is None:
            raise ValueError(f"Backbone {backbone.name!r} has kind {backbone.kind!r}, which has no text encoder.")
        module, name = kind.encoder.split(":")
        encoder = getattr(importlib.import_module(module, __package__), name)
        _ENCODERS[key] = encoder(backbone, placement) if kind.on_device else encoder(backbone)
    return _ENCODERS[key]

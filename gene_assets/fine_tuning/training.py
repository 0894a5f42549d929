"""Fine-tuning a sentence-transformers backbone with a classification head on a binary gene task (Gan & Li).

Protocol: one stratified 80/10/10 split chooses the learning rate and the number of epochs (validation ROC-AUC after
each epoch; the learning rate is constant, so the model after epoch e is the one a run of e epochs gives); then
`repeats` stratified 90/10 splits, each fine-tuned from the pretrained weights with the chosen settings and scored
on its test tenth. Logistic regression on the frozen embeddings of the same model (same texts, same truncation) is
fitted on exactly the same splits, and both are resampled with the same bootstrap counts, so their difference has a
paired CI (statistics.paired_gap)."""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedShuffleSplit, train_test_split

from ..tasks.evaluation import Protocol, binary_classifiers, fitted_scores, result_row
from ..tasks.spec import GeneTask, TaskLabelError
from ..tasks.statistics import resample_rng, stratified_counts, weighted_auc

FINE_TUNED = "fine_tuned"
FROZEN = "frozen_logistic_regression"


@dataclass(frozen=True)
class FineTuningSettings:
    """How much fine-tuning a run does: the selection grid, the repeats and the truncation of the texts."""

    learning_rates: tuple[float, ...]
    max_epochs: int
    """Epochs the selection run trains for; the chosen number of epochs is at most this."""
    repeats: int
    max_length: int
    """Tokens per text (longer texts are truncated), for fine-tuning and for the frozen embedding alike."""
    batch_size: int = 16
    head_learning_rate: float = 1e-3
    """The new linear head starts from random weights: it learns at a higher rate than the pretrained encoder."""
    weight_decay: float = 0.01
    n_bootstrap: int = 1000
    seed: int = 0


PUBLISHED = FineTuningSettings(learning_rates=(1e-5, 2e-5, 5e-5), max_epochs=10, repeats=10, max_length=256)
"""On a GPU: ten 90/10 repeats, epochs chosen up to 10, the backbone's full length (MiniLM: 256 tokens)."""
CPU_REDUCED = FineTuningSettings(learning_rates=(5e-5,), max_epochs=2, repeats=3, max_length=128)
"""On CPU, to fit the four Geneformer tasks into the time of one `make run` on 2 cores: 3 repeats, one learning
rate, at most 2 epochs, texts truncated at 128 tokens."""


@contextlib.contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """torch's deterministic algorithms and a fixed seed inside the block (cuBLAS needs its workspace setting)."""
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


class Classifier:
    """A sentence-transformers model and a linear head on its sentence embedding; every fit starts from the weights
    the model had when this was made (the pretrained ones) and a new head."""

    def __init__(self, model, prompt: str | None):
        self.model, self.prompt = model, prompt
        self.pretrained = copy.deepcopy(model.state_dict())
        self.dims = model.get_embedding_dimension()
        self.head = None

    def logits(self, texts: list[str]):
        from sentence_transformers.util import batch_to_device

        features = batch_to_device(self.model.preprocess(texts, prompt=self.prompt), self.model.device)
        return self.head(self.model(features)["sentence_embedding"])

    def fit(self, texts: list[str], y: np.ndarray, settings: FineTuningSettings, seed: int, on_epoch=None) -> list:
        """Fine-tune from the pretrained weights for max_epochs at the first learning rate; returns the mean training
        loss of each epoch. `on_epoch(epoch)` is called after each."""
        import torch

        self.model.load_state_dict(self.pretrained)
        with deterministic(seed):
            self.head = torch.nn.Linear(self.dims, 2).to(self.model.device)
            optimizer = torch.optim.AdamW(
                [
                    {"params": self.model.parameters(), "lr": settings.learning_rates[0]},
                    {"params": self.head.parameters(), "lr": settings.head_learning_rate},
                ],
                weight_decay=settings.weight_decay,
            )
            rng = np.random.default_rng(seed)
            target = torch.as_tensor(y, dtype=torch.long, device=self.model.device)
            losses = []
            for epoch in range(1, settings.max_epochs + 1):
                self.model.train()
                total = 0.0
                order = rng.permutation(len(texts))
                for start in range(0, len(order), settings.batch_size):
                    rows = order[start : start + settings.batch_size]
                    loss = torch.nn.functional.cross_entropy(self.logits([texts[i] for i in rows]), target[rows])
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    total += loss.item() * len(rows)
                losses.append(total / len(texts))
                if on_epoch is not None:
                    on_epoch(epoch)
        return losses

    def scores(self, texts: list[str]) -> np.ndarray:
        """Positive-class logit margin of each text (what ROC-AUC ranks)."""
        import torch

        self.model.eval()
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), 64):
                logits = self.logits(texts[start : start + 64]).float()
                out.append((logits[:, 1] - logits[:, 0]).cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)


def with_learning_rate(settings: FineTuningSettings, rate: float, epochs: int | None = None) -> FineTuningSettings:
    return replace(settings, learning_rates=(rate,), max_epochs=epochs or settings.max_epochs)


def select_settings(
    classifier: Classifier, texts: list[str], y: np.ndarray, settings: FineTuningSettings
) -> tuple[float, int, float]:
    """Learning rate and epochs with the best validation ROC-AUC on one stratified 80/10/10 split (ties: the smaller
    rate, then the fewer epochs); returns (rate, epochs, validation AUC). The 10% test part is left unused."""
    rest, _ = train_test_split(np.arange(len(y)), test_size=0.1, stratify=y, random_state=settings.seed)
    train, valid = train_test_split(rest, test_size=1 / 9, stratify=y[rest], random_state=settings.seed)
    best = (-np.inf, 0.0, 0)
    for rate in sorted(settings.learning_rates):

        def validate(epoch, rate=rate):
            nonlocal best
            auc = roc_auc_score(y[valid], classifier.scores([texts[i] for i in valid]))
            if auc > best[0]:
                best = (auc, rate, epoch)

        classifier.fit([texts[i] for i in train], y[train], with_learning_rate(settings, rate), settings.seed, validate)
    return best[1], best[2], float(best[0])


def fine_tuning_rows(
    task: GeneTask,
    classifier: Classifier,
    texts: list[str],
    frozen: np.ndarray,
    labels: pd.Series,
    settings: FineTuningSettings,
    log=None,
) -> list[dict]:
    """The fine-tuned and the frozen-embedding rows of one binary task: mean test ROC-AUC over the repeats, the
    per-repeat values, and bootstrap replicates of the mean drawn with the same counts for both."""
    y = (labels.to_numpy() == task.positive).astype(int)
    if min(np.bincount(y, minlength=2)) < 10:
        raise TaskLabelError(f"Task {task.name}: fewer than 10 genes in a class; too few for 80/10/10 splits.")
    rate, epochs, valid_auc = select_settings(classifier, texts, y, settings)
    if log:
        log(f"{task.name}: learning rate {rate:g}, {epochs} epochs (validation ROC-AUC {valid_auc:.3f})")
    chosen = with_learning_rate(settings, rate, epochs)
    splits = StratifiedShuffleSplit(settings.repeats, test_size=0.1, random_state=settings.seed).split(texts, y)
    values = {FINE_TUNED: [], FROZEN: []}
    replicates = {FINE_TUNED: [], FROZEN: []}
    losses = []
    for repeat, (train, test) in enumerate(splits):
        counts = stratified_counts(y[test], settings.n_bootstrap, resample_rng(settings.seed, task.name, repeat))
        losses.append(classifier.fit([texts[i] for i in train], y[train], chosen, settings.seed + repeat))
        probe = binary_classifiers(Protocol(seed=settings.seed), frozen.shape[1])["logistic_regression"]()
        for name, score in (
            (FINE_TUNED, classifier.scores([texts[i] for i in test])),
            (FROZEN, fitted_scores(probe, frozen[train], y[train], frozen[test])),
        ):
            values[name].append(roc_auc_score(y[test], score))
            replicates[name].append(weighted_auc(y[test], score, counts))
        if log:
            log(
                f"{task.name} repeat {repeat + 1}/{settings.repeats}: fine-tuned {values[FINE_TUNED][-1]:.3f}, "
                f"frozen {values[FROZEN][-1]:.3f}"
            )
    shared = {
        "n_genes": len(y),
        "n_positive": int(y.sum()),
        "repeats": settings.repeats,
        "max_length": settings.max_length,
        "seed": settings.seed,
    }
    return [
        result_row(
            task,
            FINE_TUNED,
            "roc_auc",
            values[FINE_TUNED],
            np.mean(replicates[FINE_TUNED], axis=0),
            **shared,
            learning_rate=rate,
            epochs=epochs,
            validation_auc=valid_auc,
            training_loss=[float(np.mean(epoch)) for epoch in zip(*losses)],
        ),
        result_row(
            task,
            FROZEN,
            "roc_auc",
            values[FROZEN],
            np.mean(replicates[FROZEN], axis=0),
            **shared,
        ),
    ]


def settings_record(settings: FineTuningSettings) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()}

"""Models from a perturbed gene's embedding to its response over every measured gene, and the baseline.

Both models predict the training fold's mean response plus a deviation that lies in the span of the training
responses: the targets are centred and rotated into that span (n_train orthonormal directions over all G genes;
exact for the squared loss, since a squared loss is unchanged by rotating the targets), so the output layer is
n_train wide instead of G wide. That is what makes a full-batch MLP fast on two cores."""

from __future__ import annotations

import contextlib
import copy
import functools
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import RidgeCV
from sklearn.preprocessing import StandardScaler

RIDGE_ALPHAS = tuple(np.logspace(-1, 6, 15))


@dataclass(frozen=True)
class MlpSettings:
    hidden_units: int = 256
    learning_rate: float = 3e-4
    weight_decay: float = 1e-4
    max_epochs: int = 600
    patience: int = 50
    """Training stops when the validation loss has not improved for this many epochs; the best epoch is kept."""
    validation_fraction: float = 1 / 9


class ResponseBasis:
    """The training responses' mean and an orthonormal basis of their centred span (from the n × n Gram matrix);
    the basis is computed on first use (the mean-signature baseline needs only the mean)."""

    def __init__(self, responses: np.ndarray):
        self.responses = responses
        self.mean = responses.mean(0)

    @functools.cached_property
    def components(self) -> np.ndarray:
        centred = (self.responses - self.mean).astype(np.float64)
        eigenvalues, eigenvectors = np.linalg.eigh(centred @ centred.T)
        keep = eigenvalues > 1e-9 * max(eigenvalues.max(), 1e-30)
        return (eigenvectors[:, keep] / np.sqrt(eigenvalues[keep])).T @ centred

    @functools.cached_property
    def scores(self) -> np.ndarray:
        """Training responses in the basis (n × n_components)."""
        return ((self.responses - self.mean) @ self.components.T).astype(np.float32)

    def expand(self, scores: np.ndarray) -> np.ndarray:
        return (self.mean + scores @ self.components).astype(np.float32)


def mean_response(basis: ResponseBasis, n_test: int) -> np.ndarray:
    """The baseline: every held-out perturbation gets the training set's mean response (no embedding)."""
    return np.tile(basis.mean.astype(np.float32), (n_test, 1))


def ridge_response(X_train: np.ndarray, basis: ResponseBasis, X_test: np.ndarray) -> np.ndarray:
    """Ridge on standardized features, one penalty for all genes chosen by generalized cross-validation."""
    scaler = StandardScaler().fit(X_train)
    model = RidgeCV(alphas=RIDGE_ALPHAS).fit(scaler.transform(X_train), basis.scores)
    return basis.expand(model.predict(scaler.transform(X_test)))


@contextlib.contextmanager
def seeded_torch(seed: int, threads: int):
    """Fixed seed and CPU thread count inside the block; the caller's RNG state and thread count are restored."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        torch.set_num_threads(previous)


def mlp_response(
    X_train: np.ndarray,
    basis: ResponseBasis,
    X_test: np.ndarray,
    seed: int = 0,
    settings: MlpSettings = MlpSettings(),
    threads: int = 1,
) -> np.ndarray:
    """One hidden layer (ReLU), full-batch AdamW on the squared error, early stopping on a seeded validation
    split of the training perturbations. The output layer starts at zero, so epoch 0 is the mean response."""
    import torch  # here, not at the top: every Dagster step process imports this module

    scale = float(basis.scores.std()) or 1.0
    scaler = StandardScaler().fit(X_train)
    inputs = torch.tensor(scaler.transform(X_train), dtype=torch.float32)
    targets = torch.tensor(basis.scores / scale)
    order = np.random.default_rng([seed, len(X_train)]).permutation(len(X_train))
    n_validation = max(1, int(round(len(X_train) * settings.validation_fraction)))
    validation, train = torch.tensor(order[:n_validation]), torch.tensor(order[n_validation:])
    with seeded_torch(seed, threads):
        model = torch.nn.Sequential(
            torch.nn.Linear(inputs.shape[1], settings.hidden_units),
            torch.nn.ReLU(),
            torch.nn.Linear(settings.hidden_units, targets.shape[1]),
        )
        torch.nn.init.zeros_(model[2].weight)
        torch.nn.init.zeros_(model[2].bias)
        optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)

        def validation_loss() -> float:
            with torch.no_grad():
                return torch.mean((model(inputs[validation]) - targets[validation]) ** 2).item()

        best_loss, best_epoch, best_state = validation_loss(), 0, copy.deepcopy(model.state_dict())
        for epoch in range(1, settings.max_epochs + 1):
            optimizer.zero_grad()
            loss = torch.mean((model(inputs[train]) - targets[train]) ** 2)
            loss.backward()
            optimizer.step()
            current = validation_loss()
            if current < best_loss:
                best_loss, best_epoch, best_state = current, epoch, copy.deepcopy(model.state_dict())
            elif epoch - best_epoch >= settings.patience:
                break
        model.load_state_dict(best_state)
        with torch.no_grad():
            predicted = model(torch.tensor(scaler.transform(X_test), dtype=torch.float32)).numpy()
    return basis.expand(predicted * scale)

"""Linear probes fitted without the work the plain scikit-learn fit repeats.

Gene pairs: the pair task's probe is scikit-learn's LogisticRegression (L2, C = 1, unpenalized intercept) on
z_a + z_b for hundreds of thousands of pairs. Here X·θ = S·(Z·θ) with S the sparse pair × gene incidence, so a step
costs O(genes · dims + pairs) instead of O(pairs · dims), and L-BFGS runs on whitened parameters θ = H₀^(-1/2)·v
(H₀: the objective's Hessian at zero), which needs tens of steps rather than hundreds.

Classes: scikit-learn's multinomial logistic regression itself, each fold's fit warm-started from the previous
fold's coefficients. (Whitening, which helps the pair probe, triples the steps here: the softmax's curvature at the
optimum is far from its curvature at zero; float32 products gain nothing at 15 classes.)

Labels: scikit-learn's LogisticRegression (L2, C = 1, unpenalized intercept) for each label of a multilabel task.
The labels' problems are independent but share X: on centered features, in the eigenbasis of their Gram matrix
(directions the training rows do not span dropped: the optimum is zero there), a label's curvature is diagonal
where its p(1 − p) is the same on every gene; it is not (a rare label's positive genes carry most of it), so each
label is preconditioned by that diagonal plus a low-rank term from the genes whose p(1 − p) is largest, estimated
at the start and again after a few steps. Every label runs its own L-BFGS (own history, own line search, own
stopping test), all of them in lockstep: one product X·W per step for the labels still running (through the sparse
features when they are word counts), a label leaving the batch when it has converged. Each fold starts from the
previous fold's solution (benchmarks/multilabel_probe.py measures the steps).

Folds: ridge on standardized features for every fold of a task from statistics that add up over folds.

Tuning: logistic regression whose C is chosen inside the training data by inner stratified folds (nested
cross-validation), the candidates of an inner fold fitted along the regularization path (warm starts).

Each reaches the plain fit's answer; tests compare them with scikit-learn on real gene vectors."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import linalg, optimize, sparse
from scipy.special import expit
from sklearn.linear_model import LogisticRegression


def _minimize_logistic(
    margins: Callable, transpose: Callable, gram: np.ndarray, y: np.ndarray, C: float, tol: float, max_iter: int
) -> np.ndarray:
    """θ (coefficients, then intercept) minimizing mean(log(1 + e^m) − y·m) + ‖w‖² / (2·C·n), m = X·θ, given
    m = margins(θ), Xᵀr = transpose(r) and gram = XᵀX (X carries the intercept column last)."""
    n = len(y)
    target = np.asarray(y, dtype=np.float64)
    penalty = np.full(len(gram), 1.0 / (C * n))
    penalty[-1] = 0.0
    values, vectors = linalg.eigh(gram / (4 * n) + np.diag(penalty))
    roots = np.sqrt(np.maximum(values, values.max() * 1e-12))
    whiten = (vectors / roots) @ vectors.T

    def loss_and_gradient(v):
        theta = whiten @ v
        m = margins(theta)
        loss = np.sum(np.logaddexp(0.0, m) - target * m) / n + 0.5 * np.sum(penalty * theta**2)
        return loss, whiten @ (transpose((expit(m) - target) / n) + penalty * theta)

    result = optimize.minimize(
        loss_and_gradient,
        np.zeros(len(gram)),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "gtol": tol, "ftol": 64 * np.finfo(float).eps},
    )
    return whiten @ result.x


class PairLogisticRegression:
    """LogisticRegression(C) on pair features Z[a] + Z[b], fitted and applied without building them."""

    def __init__(self, C: float = 1.0, tol: float = 1e-8, max_iter: int = 1000):
        self.C, self.tol, self.max_iter = C, tol, max_iter

    def fit(self, Z: np.ndarray, a: np.ndarray, b: np.ndarray, y: np.ndarray) -> PairLogisticRegression:
        used, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
        n = len(a)
        incidence = sparse.csr_matrix(
            (np.ones(2 * n), (np.tile(np.arange(n), 2), inverse)), shape=(n, len(used))
        )  # row i has a 1 at a_i and at b_i (a 2 when a_i == b_i)
        # the intercept column holds ½ per gene: the two genes of a pair add up to 1
        Zu = np.hstack([np.asarray(Z[used], dtype=np.float64), np.full((len(used), 1), 0.5)])
        theta = _minimize_logistic(
            lambda t: incidence @ (Zu @ t),
            lambda r: Zu.T @ (incidence.T @ r),
            Zu.T @ ((incidence.T @ incidence) @ Zu),
            y,
            self.C,
            self.tol,
            self.max_iter,
        )
        self.coef_, self.intercept_ = theta[:-1], float(theta[-1])
        return self

    def predict_proba(self, Z: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Positive-class probability of each pair (a_i, b_i)."""
        gene_margin = np.asarray(Z, dtype=np.float64) @ self.coef_
        return expit(gene_margin[a] + gene_margin[b] + self.intercept_)


def logistic_fold_probabilities(X: np.ndarray, y: np.ndarray, folds: list) -> list[np.ndarray]:
    """Test-fold class probabilities of scikit-learn's LogisticRegression(max_iter=5000) (multinomial on three classes
    or more) fitted on each training fold, each fit started from the previous fold's coefficients (training folds
    share three quarters of their genes): fewer L-BFGS steps, the same predictions up to the solver's tolerance
    (benchmarks/gene_type_probe.py measures both)."""
    model = LogisticRegression(max_iter=5000, warm_start=True)
    return [model.fit(X[train], y[train]).predict_proba(X[test]) for train, test in folds]


def _column_dots(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->j", a, b)


def _lockstep_lbfgs(
    objective: Callable, precondition: Callable, x: np.ndarray, tol: float, max_iter: int, memory: int = 10
) -> tuple[np.ndarray, int]:
    """Minimize each column of x's own objective: objective(X, columns) gives the values and gradients (as columns)
    of the named columns at X, precondition(G, columns) applies each named column's inverse-curvature estimate to
    the columns of G. Each column runs L-BFGS (`memory` pairs, the estimate scaled as its initial inverse Hessian,
    backtracking Armijo line search) and stops when its gradient's largest entry is at most `tol` or its value
    stops falling; all columns step together. Returns the minimizers and the number of steps taken."""
    solution = x.copy()
    columns = np.arange(x.shape[1])
    value, gradient = objective(x, columns)
    running = np.abs(gradient).max(0) > tol
    columns, x, value, gradient = columns[running], x[:, running], value[running], gradient[:, running]
    moves, changes, inverse_curvatures = [], [], []
    steps = 0
    while len(columns):
        direction = gradient.copy()
        alphas = []
        for s, y, rho in zip(reversed(moves), reversed(changes), reversed(inverse_curvatures)):
            alphas.append(rho * _column_dots(s, direction))
            direction -= alphas[-1] * y
        direction = precondition(direction, columns)
        if moves:
            change = changes[-1]
            direction *= _column_dots(moves[-1], change) / _column_dots(change, precondition(change, columns))
        for s, y, rho, alpha in zip(moves, changes, inverse_curvatures, reversed(alphas)):
            direction += (alpha - rho * _column_dots(y, direction)) * s
        direction = -direction
        slope = _column_dots(gradient, direction)
        length = np.ones(len(columns))
        new_value, new_gradient = value.copy(), gradient.copy()
        trying = np.arange(len(columns))
        for _ in range(50):
            trial_value, trial_gradient = objective(
                x[:, trying] + length[trying] * direction[:, trying], columns[trying]
            )
            accepted = trial_value <= value[trying] + 1e-4 * length[trying] * slope[trying]
            new_value[trying[accepted]] = trial_value[accepted]
            new_gradient[:, trying[accepted]] = trial_gradient[:, accepted]
            trying, tried, trial_value = trying[~accepted], length[trying[~accepted]], trial_value[~accepted]
            if not len(trying):
                break
            # the minimum of the quadratic through the value and slope at 0 and the value at the rejected length
            excess = 2 * (trial_value - value[trying] - slope[trying] * tried)
            shorter = -slope[trying] * tried**2 / np.where(excess > 0, excess, 1.0)
            length[trying] = np.clip(np.where(excess > 0, shorter, 0.5 * tried), 0.1 * tried, 0.5 * tried)
        length[trying] = 0.0  # no decrease found: the column stops where it is
        move, change = length * direction, new_gradient - gradient
        curvature = _column_dots(move, change)
        moves.append(move)
        changes.append(change)
        inverse_curvatures.append(np.divide(1.0, curvature, out=np.zeros_like(curvature), where=curvature > 0))
        if len(moves) > memory:
            del moves[0], changes[0], inverse_curvatures[0]
        x += move
        steps += 1
        fall = (value - new_value) / np.maximum(np.maximum(np.abs(value), np.abs(new_value)), 1.0)
        value, gradient = new_value, new_gradient
        done = (np.abs(gradient).max(0) <= tol) | (fall <= 64 * np.finfo(float).eps) | (steps >= max_iter)
        if done.any():
            solution[:, columns[done]] = x[:, done]
            keep = ~done
            columns, x, value, gradient = columns[keep], x[:, keep], value[keep], gradient[:, keep]
            moves, changes = [s[:, keep] for s in moves], [y[:, keep] for y in changes]
            inverse_curvatures = [rho[keep] for rho in inverse_curvatures]
    return solution, steps


PILOT_STEPS = 20  # lockstep steps before each label's curvature is re-estimated where its fit has got to
CURVATURE_GENES = 200  # at most this many genes per label in the low-rank part of its curvature


class _EigenbasisProducts:
    """R·W and Rᵀ·E for R, the centered features in the eigenbasis V of their Gram matrix: with R itself, or, for
    sparse features (word counts), as X·(V·W) − 1·(meanᵀV·W) and Vᵀ·(Xᵀ·E) − (Vᵀmean)·1ᵀE, fewer operations."""

    SPARSE_COST = 4  # a sparse product's time per nonzero, in dense products' time per entry

    def __init__(self, X: np.ndarray, mean: np.ndarray, vectors: np.ndarray):
        self.rows = (X - mean) @ vectors
        self.sparse = self.SPARSE_COST * np.count_nonzero(X) + vectors.size < self.rows.size
        if self.sparse:
            self.features, self.features_t = sparse.csr_matrix(X), sparse.csr_matrix(X.T)
            self.vectors, self.vectors_t = vectors, np.ascontiguousarray(vectors.T)
            self.mean_rotated = mean @ vectors
        else:
            self.rows_t = np.ascontiguousarray(self.rows.T)

    def forward(self, W: np.ndarray) -> np.ndarray:
        if not self.sparse:
            return self.rows @ W
        return self.features @ (self.vectors @ W) - self.mean_rotated @ W

    def backward(self, E: np.ndarray) -> np.ndarray:
        if not self.sparse:
            return self.rows_t @ E
        return self.vectors_t @ (self.features_t @ E) - np.outer(self.mean_rotated, E.sum(0))


def _label_curvature_fit(
    products: _EigenbasisProducts,
    values: np.ndarray,
    Y: np.ndarray,
    penalty: float,
    weight: np.ndarray,
    coefficients: np.ndarray,
    tol: float,
    max_iter: int,
) -> tuple[np.ndarray, int]:
    """The lockstep L-BFGS of _label_logistic_fit from `coefficients` (eigenbasis weights, intercept last) × labels,
    preconditioned by each label's curvature Rᵀ·diag(weight)·R/n + penalty (R: the rows, weight: the label's
    p(1 − p) per gene) approximated as its median weight m on every gene, which the eigenbasis makes diagonal, plus
    the excess weight − m of the genes where it is largest, a low-rank term (Woodbury). Parameters are scaled by
    the diagonal part, so the estimate is I + UUᵀ and its inverse I − QQᵀ."""
    rows = products.rows
    n = len(rows)
    typical = np.maximum(np.median(weight, 0), np.finfo(np.float64).eps)
    scale = np.vstack([np.sqrt(np.outer(values / n, typical) + penalty), np.sqrt(typical)])
    excess = weight - typical
    corrections = []
    for j in range(Y.shape[1]):
        genes = np.flatnonzero(excess[:, j] > 0.1 * excess[:, j].max())
        genes = genes[np.argsort(-excess[genes, j], kind="stable")[:CURVATURE_GENES]]
        if not len(genes):  # the same weight on every gene: the diagonal part is the curvature
            corrections.append(np.zeros((len(scale), 0)))
            continue
        U = np.vstack([rows[genes].T, np.ones(len(genes))]) / scale[:, [j]] * np.sqrt(excess[genes, j] / n)
        lower = linalg.cholesky(np.eye(len(genes)) + U.T @ U, lower=True)
        corrections.append(linalg.solve_triangular(lower, U.T, lower=True).T)

    def precondition(G, labels):
        out = G.copy()
        for c, j in enumerate(labels):
            out[:, c] -= corrections[j] @ (corrections[j].T @ G[:, c])
        return out

    def objective(u, labels):
        theta = u / scale[:, labels]
        w, b = theta[:-1], theta[-1]
        margins = products.forward(w) + b
        target = Y[:, labels]
        small = np.exp(-np.abs(margins))  # log(1 + e^m) and expit(m) from one exponential
        value = np.sum(np.maximum(margins, 0.0) + np.log1p(small) - target * margins, axis=0) / n
        residual = (np.where(margins >= 0, 1.0, small) / (1.0 + small) - target) / n
        gradient = np.vstack([products.backward(residual) + penalty * w, residual.sum(0)])
        return value + 0.5 * penalty * np.sum(w * w, 0), gradient / scale[:, labels]

    u, steps = _lockstep_lbfgs(objective, precondition, coefficients * scale, tol, max_iter)
    return u / scale, steps


def _label_logistic_fit(
    X: np.ndarray, Y: np.ndarray, C: float, tol: float, max_iter: int, start: np.ndarray
) -> tuple[np.ndarray, int]:
    """Coefficients (rows, intercept last) × labels of LogisticRegression(C) fitted to each column of Y (both classes
    present), and the lockstep L-BFGS steps taken. `start`, that shape, is where the steps begin; a label without
    one (a NaN column) starts from zero coefficients and its log-odds as intercept, its curvature guessed as that of
    p = ½ on its positive genes. After PILOT_STEPS the curvature is re-estimated at the point reached."""
    n, d = X.shape
    mean = X.mean(0)
    centered = X - mean
    values, vectors = linalg.eigh(centered.T @ centered)
    spanned = values > values.max() * d * np.finfo(np.float64).eps
    values, vectors = values[spanned], vectors[:, spanned]
    products = _EigenbasisProducts(X, mean, vectors)
    prevalence = Y.mean(0)
    fresh = np.isnan(start).any(0)
    weights = np.where(fresh, 0.0, start[:-1])
    intercept = np.where(fresh, np.log(prevalence / (1 - prevalence)), start[-1] + mean @ weights)
    coefficients = np.vstack([vectors.T @ weights, intercept])
    p = np.where(fresh, np.where(Y > 0, 0.5, prevalence), expit(products.forward(coefficients[:-1]) + coefficients[-1]))
    steps = 0
    for budget in (PILOT_STEPS, max_iter - PILOT_STEPS):
        coefficients, taken = _label_curvature_fit(
            products, values, Y, 1.0 / (C * n), p * (1 - p), coefficients, tol, budget
        )
        steps += taken
        if taken < budget:
            break
        p = expit(products.forward(coefficients[:-1]) + coefficients[-1])
    weights = vectors @ coefficients[:-1]
    return np.vstack([weights, coefficients[-1] - mean @ weights]), steps


def label_logistic_fold_probabilities(
    X: np.ndarray, Y: np.ndarray, folds: list, C: float = 1.0, tol: float = 1e-6, max_iter: int = 5000
) -> tuple[list[np.ndarray], list[int]]:
    """Test-fold probabilities of one scikit-learn LogisticRegression(C) per label (column of Y) fitted on each
    training fold, and the lockstep L-BFGS steps of each fold (_label_logistic_fit), each fold started from the
    previous fold's solution. A label with one class in a training fold has no fit there: NaN in that test fold."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64).reshape(len(X), -1)
    previous = np.full((X.shape[1] + 1, Y.shape[1]), np.nan)
    probabilities, steps = [], []
    for train, test in folds:
        target = Y[train]
        fitted = (target.min(0) < target.max(0)).nonzero()[0]
        theta, taken = _label_logistic_fit(X[train], target[:, fitted], C, tol, max_iter, previous[:, fitted])
        previous[:, fitted] = theta
        scores = np.full((len(test), Y.shape[1]), np.nan)
        scores[:, fitted] = expit(X[test] @ theta[:-1] + theta[-1])
        probabilities.append(scores)
        steps.append(taken)
    return probabilities, steps


def ridge_fold_predictions(X: np.ndarray, Y: np.ndarray, folds: list, alpha: float = 1.0) -> list[np.ndarray]:
    """Test-fold predictions of make_pipeline(StandardScaler(), Ridge(alpha)) fitted on each training fold.

    Every statistic the fit needs (row count, feature sums, Gram matrix XᵀX, XᵀY, target sums, feature minima and
    maxima) adds up over folds, so one pass over X gives each test fold's share and the training fold's is the
    total minus that share: one Gram product in all instead of one per fold. Solved in float64."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64).reshape(len(X), -1)
    shares, lows, highs = [], [], []
    for _, test in folds:
        rows, targets = X[test], Y[test]
        shares.append((len(test), rows.sum(0), rows.T @ rows, rows.T @ targets, targets.sum(0)))
        lows.append(rows.min(0))
        highs.append(rows.max(0))
    total = [sum(parts) for parts in zip(*shares)]
    predictions = []
    for f, (_, test) in enumerate(folds):
        others = [g for g in range(len(folds)) if g != f]
        constant = np.min([lows[g] for g in others], axis=0) == np.max([highs[g] for g in others], axis=0)
        n, sums, gram, cross, target_sums = [whole - share for whole, share in zip(total, shares[f])]
        mean, target_mean = sums / n, target_sums / n
        centered_gram = gram - n * np.outer(mean, mean)
        variance = np.maximum(np.diag(centered_gram), 0.0) / n
        eps = np.finfo(np.float64).eps  # StandardScaler's bound on the round-off of a constant feature's variance
        constant |= variance <= n * eps * variance + (n * mean * eps) ** 2
        scale = np.sqrt(variance)
        scale[constant] = 1.0  # StandardScaler leaves constant features unscaled
        system = centered_gram / np.outer(scale, scale) + alpha * np.eye(len(scale))
        right = (cross - n * np.outer(mean, target_mean)) / scale[:, None]
        weights = linalg.solve(system, right, assume_a="pos")
        predictions.append(((X[test] - mean) / scale) @ weights + target_mean)
    return predictions


class NestedLogisticRegression:
    """Logistic regression (L2) whose C is the candidate with the best mean ROC-AUC over `inner_splits` stratified
    folds of the data it is fitted on (ties: the smallest C, the strongest regularization), then refitted on all of
    it from scratch. Inside an outer training fold this is nested cross-validation; `C_` is the choice. In each
    inner fold the candidates are fitted in increasing C, each L-BFGS run started from the previous solution (the
    regularization path): the same optima to the solver's tolerance in a fraction of the steps."""

    def __init__(self, Cs, inner_splits: int, seed: int):
        self.Cs, self.inner_splits, self.seed = tuple(sorted(Cs)), inner_splits, seed

    def fit(self, X: np.ndarray, y: np.ndarray):
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import roc_auc_score
        from sklearn.model_selection import StratifiedKFold

        scores = np.zeros((self.inner_splits, len(self.Cs)))
        inner = StratifiedKFold(self.inner_splits, shuffle=True, random_state=self.seed).split(X, y)
        for f, (train, test) in enumerate(inner):
            path = LogisticRegression(max_iter=5000, warm_start=True)
            for i, c in enumerate(self.Cs):
                path.set_params(C=c).fit(X[train], y[train])
                scores[f, i] = roc_auc_score(y[test], path.decision_function(X[test]))
        self.inner_scores_ = scores.mean(axis=0)
        self.C_ = self.Cs[int(np.argmax(self.inner_scores_))]
        self.model_ = LogisticRegression(C=self.C_, max_iter=5000).fit(X, y)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.model_.predict_proba(X)

"""Linear models over the classifier's features, trained with L-BFGS.

sklearn's LogisticRegression takes the 512-d sentence block as part of one
sparse matrix, and on 2 cores spends minutes multiplying it (clinc150: ~580 s).
Keeping the dense block dense (BLAS) and the n-grams sparse makes the same fit
an order of magnitude faster. Two heads share the code: `softmax` (one intent
per message) and `sigmoid` (independent yes/no per label, for multi-label acts).
The loss is sklearn's: C times the summed log loss plus half the squared
weights (biases not penalised).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, log_expit, logsumexp

from bot.nlu.features import Features


@dataclass
class LinearModel:
    weights: np.ndarray  # (features, outputs), float32
    bias: np.ndarray  # (outputs,)

    def scores(self, features: Features) -> np.ndarray:
        n_sparse = features.sparse.shape[1]
        return (
            np.asarray(features.sparse @ self.weights[:n_sparse])
            + features.dense @ self.weights[n_sparse:]
            + self.bias
        )


def fit(
    features: Features,
    targets: np.ndarray,
    head: str,
    C: float,
    sample_weight: np.ndarray | None = None,
    max_iter: int = 300,
    tol: float = 1e-4,
) -> LinearModel:
    """targets: (n, outputs) 0/1 (one 1 per row for softmax)."""
    from scipy.optimize import minimize  # training only: keeps it out of server start-up

    sparse = features.sparse.astype(np.float32).tocsr()
    dense = np.asarray(features.dense, np.float32)
    dense_dim = dense.shape[1]
    sparse_t = sparse.T.tocsr()
    n, k = targets.shape
    n_sparse = sparse.shape[1]
    y = targets.astype(np.float64)
    sw = np.ones(n) if sample_weight is None else sample_weight.astype(np.float64)

    def unpack(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        w = theta[: -k].reshape(n_sparse + dense_dim, k)
        return w[:n_sparse], w[n_sparse:], theta[-k:]

    def loss_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        # float32 products (half the memory traffic); L-BFGS itself keeps float64.
        ws, wd, b = (part.astype(np.float32) for part in unpack(theta))
        z = (sparse @ ws + dense @ wd + b).astype(np.float64)
        if head == "softmax":
            lse = logsumexp(z, axis=1)
            loss = float(np.dot(sw, lse - (z * y).sum(axis=1)))
            g = np.exp(z - lse[:, None]) - y
        else:
            loss = float(-np.dot(sw, (y * log_expit(z) + (1 - y) * log_expit(-z)).sum(axis=1)))
            g = expit(z) - y
        g *= (C * sw)[:, None]
        g32 = g.astype(np.float32)
        grad_w = np.vstack([sparse_t @ g32, dense.T @ g32])
        w_all = theta[: -k]
        loss = C * loss + 0.5 * float(np.dot(w_all, w_all))
        grad = np.concatenate([grad_w.ravel() + w_all, g.sum(axis=0)])
        return loss, grad

    theta0 = np.zeros((n_sparse + dense_dim + 1) * k)
    result = minimize(
        loss_grad, theta0, jac=True, method="L-BFGS-B",
        options={"maxiter": max_iter, "gtol": tol, "maxcor": 20},
    )
    ws, wd, b = unpack(result.x)
    fit.last_iterations = result.nit  # type: ignore[attr-defined]
    return LinearModel(np.vstack([ws, wd]).astype(np.float32), b.astype(np.float32))


def one_hot(labels: list[int], k: int) -> np.ndarray:
    out = np.zeros((len(labels), k), dtype=np.float64)
    out[np.arange(len(labels)), labels] = 1.0
    return out

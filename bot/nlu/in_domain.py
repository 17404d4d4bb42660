"""How far a message is from everything the bot was trained on.

A softmax classifier is confident about messages unlike any of its training
examples (a cooking question comes out as some FAQ with 0.6), so the classifier
also looks at the sentence vector's cosine similarity to the nearest in-scope
training example. Where that is lower than almost any training example's
similarity to its own nearest neighbour (leave-one-out, the `quantile` of them),
the message is out of the bot's domain: its confidences fall linearly to 0
between that bound and the lowest such similarity, and the classifier gives
what they lose to the out-of-scope class (or to nothing, so the
FallbackClassifier turns the message into `nlu_fallback`). A steeper fall
(0 at 0.1 below the bound) cost our English held-out examples 0.7 points. The bound
comes from the training data alone, so no per-data-set tuning is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_CHUNK = 2048


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (vectors / norms).astype(np.float32)


@dataclass
class InDomainGate:
    examples: np.ndarray  # unit sentence vectors of the in-scope training examples
    floor: float  # similarity at which the factor reaches 0
    bound: float  # similarity from which on the factor is 1

    def __post_init__(self) -> None:
        # Stored as float16 (half the file); multiplied as float32, converted once.
        self._matrix = np.ascontiguousarray(self.examples.astype(np.float32).T)

    @classmethod
    def fit(cls, vectors: np.ndarray, quantile: float) -> InDomainGate:
        examples = unit_rows(vectors)
        nearest = np.empty(len(examples), dtype=np.float32)
        for begin in range(0, len(examples), _CHUNK):
            sims = examples[begin : begin + _CHUNK] @ examples.T
            rows = np.arange(sims.shape[0])
            sims[rows, rows + begin] = -1.0  # not itself
            nearest[begin : begin + _CHUNK] = sims.max(axis=1)
        bound = float(np.quantile(nearest, quantile))
        floor = min(float(nearest.min()), bound - 1e-3)
        return cls(examples.astype(np.float16), floor, bound)

    def similarity(self, vectors: np.ndarray) -> np.ndarray:
        return (unit_rows(vectors) @ self._matrix).max(axis=1)

    def factor(self, vectors: np.ndarray) -> np.ndarray:
        """1 inside the domain, falling linearly to 0 at the floor."""
        sims = self.similarity(vectors)
        return np.clip((sims - self.floor) / (self.bound - self.floor), 0.0, 1.0)

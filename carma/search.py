"""Ranking beyond the vector index: the search modes, their fusion, and search as of a moment.

- `semantic`: cosine between the query's vector and the fragments' (the vector index).
- `keyword`: BM25 over the words of the fragments' bodies (the ledger's full-text index;
  SQLite FTS5, unicode61 tokens). An id-like token ("INV-2291", `copytree`) is found by its
  letters, where a vector only finds what it means.
- `hybrid`: both rankings fused by reciprocal rank fusion: a fragment scores
  sum(1 / (RRF_K + rank)) over the rankings it appears in (rank 1 the best). RRF_K = 60, the
  constant of Cormack, Clarke and Büttcher (SIGIR 2009), keeps a single first place from
  outweighing agreement lower down. Each side contributes its best HYBRID_DEPTH (or k, if more).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from typing import Any, TypeVar

import numpy as np

from carma.domain import InvalidInput

MODES = ("semantic", "keyword", "hybrid")
RRF_K = 60
HYBRID_DEPTH = 50
SCORE_DIGITS = 6  # a hit's score as reported
# Extra neighbours asked of the index, so that hits tied with the k-th are all seen.
TIED_MARGIN = 8
MAX_QUERY_WORDS = 64
# BM25's usual constants (Robertson and Zaragoza), as FTS5's bm25() uses them.
BM25_K1, BM25_B = 1.2, 0.75
_WORD = re.compile(r"\w+", re.UNICODE)

Key = TypeVar("Key", bound=Hashable)


def check_mode(mode: object) -> str:
    if mode not in MODES:
        raise InvalidInput(f"mode must be one of {', '.join(MODES)}, not {mode!r:.40}")
    return str(mode)


def words(text: str) -> list[str]:
    """A text's words as the keyword index reads them: lower case, letters and digits."""
    return [w.lower() for w in _WORD.findall(text)]


def query_words(query: str) -> list[str]:
    """A query's distinct words, in order (at most MAX_QUERY_WORDS)."""
    return list(dict.fromkeys(words(query)))[:MAX_QUERY_WORDS]


def fuse(*rankings: Sequence[Key]) -> list[tuple[Key, float]]:
    """Reciprocal rank fusion of rankings (best first): (key, fused score), best first; ties
    keep the order in which keys first appear."""
    scores: dict[Key, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, 1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(scores.items(), key=lambda item: -item[1])


def bm25(documents: dict[Key, list[str]], query: Iterable[str]) -> dict[Key, float]:
    """BM25 scores (higher better) of the documents holding at least one query word: what the
    keyword index computes, for a search over fragments as they were (as_of)."""
    wanted = set(query)
    if not documents or not wanted:
        return {}
    counts = {key: Counter(w for w in doc if w in wanted) for key, doc in documents.items()}
    average = sum(len(doc) for doc in documents.values()) / len(documents)
    holding = Counter(w for c in counts.values() for w in c)
    n = len(documents)
    scores: dict[Key, float] = {}
    for key, count in counts.items():
        if not count:
            continue
        length = len(documents[key])
        score = 0.0
        for word, tf in count.items():
            idf = math.log((n - holding[word] + 0.5) / (holding[word] + 0.5) + 1.0)
            score += (
                idf * tf * (BM25_K1 + 1) / (tf + BM25_K1 * (1 - BM25_B + BM25_B * length / average))
            )
        scores[key] = score
    return scores


def cosine_ranking(
    vector: np.ndarray, candidates: dict[Key, Any], k: int
) -> list[tuple[Key, float]]:
    """The k candidates (key -> float32 embedding bytes) nearest the vector, by inner product
    of normalised vectors (cosine), best first; ties (to SCORE_DIGITS) by key."""
    if not candidates:
        return []
    keys = list(candidates)
    matrix = np.stack([np.frombuffer(candidates[key], dtype="<f4") for key in keys])
    scores = matrix @ np.asarray(vector, dtype=np.float32)
    order = sorted(range(len(keys)), key=lambda i: ranking_key(float(scores[i]), keys[i]))[:k]
    return [(keys[i], float(scores[i])) for i in order]


def ranking_key(score: float, key: Key) -> tuple[float, str]:
    """How hits are ordered: by score as reported (SCORE_DIGITS), then by id. Scores that
    agree to the reported digits are a tie whichever path computed them (FAISS and numpy sum
    in different orders), so the index and a replay of the log rank alike."""
    return (-round(score, SCORE_DIGITS), str(key))

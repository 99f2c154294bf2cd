"""Semantic reconstruction: a text rebuilt from a surviving embedding and its neighbours.

The last resort of healing, when no exact copy of a fragment's body is left but its embedding
is. The model is the judge: a candidate text is kept only if its embedding is nearer the
surviving one. Fidelity is that cosine; it says how near the meaning is, not how many of the
original's words came back (see docs/reconstruction.md on fidelity and expected recall).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

METHOD = "semantic-blend"
# Budgets are counted in texts the model scores, not in seconds, so that a reconstruction does
# the same work however busy the machine is: a calibration measured under load then describes
# repairs made on a quiet machine, and the other way round (a budget in seconds made the
# fidelity of both depend on the load, and biased the one against the other).
RECONSTRUCT_EVALUATIONS = 288  # per fragment, the first attempt (~1.5 s on 2 quiet cores)
REFINE_EVALUATIONS = 192  # per fragment and refinement (~1 s)
_SENTENCE = re.compile(r"(?<=[.!?;:])\s+|\n+")
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class ScoredPieces:
    """The neighbours' whole texts and sentences, scored against a target: where a blend
    starts, and how near the namespace's own text comes to the lost one."""

    texts: list[str]
    scores: np.ndarray  # cosine of each with the target
    sources: list[int]  # index of the neighbour each came from

    def best(self) -> Reconstruction:
        i = int(np.argmax(self.scores))
        return Reconstruction(self.texts[i], float(self.scores[i]), (self.sources[i],))


@dataclass(frozen=True)
class Reconstruction:
    text: str
    fidelity: float  # cosine(embed(text), surviving embedding), in [0, 1]
    sources: tuple[int, ...]  # indexes of the neighbour texts it drew on


class Reconstructor:
    """Blends neighbour sentences, then improves the blend by small word edits.

    1. Blend: the neighbours' sentences (and whole texts) are scored against the surviving
       embedding; starting from the best, the sentence whose addition raises the cosine most
       is appended, while one does.
    2. Refine: batches of single-word edits (delete a word, replace one with, or insert, a
       word of the neighbours' vocabulary) are scored together; the best is kept if it
       raises the cosine. Each call has a budget of texts to score; later calls go on from
       the result, so fidelity only ever rises. The result depends only on the target, the
       neighbours and the budget.
    """

    method = METHOD

    def __init__(
        self,
        embed: Callable[[Sequence[str]], np.ndarray],
        *,
        max_words: int = 80,
        batch: int = 48,
        blend_rounds: int = 4,
    ):
        self._embed = embed
        self.max_words = max_words
        self.batch = batch
        self.blend_rounds = blend_rounds

    def settings(self) -> dict[str, Any]:
        """What, besides its method and budgets, decides what it makes (a calibration
        measured with other settings describes another reconstructor)."""
        return {}

    def embed_one(self, text: str) -> np.ndarray:
        return np.asarray(self._embed([text]), dtype=np.float32)[0]

    def score(self, texts: Sequence[str], target: np.ndarray) -> np.ndarray:
        """Cosine of each text's embedding with the target, clipped to [0, 1]."""
        vectors = np.asarray(self._embed(list(texts)), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1) * (np.linalg.norm(target) or 1.0)
        cosines = vectors @ np.asarray(target, dtype=np.float32) / np.maximum(norms, 1e-12)
        return np.clip(cosines, 0.0, 1.0)

    def reconstruct(
        self,
        target: np.ndarray,
        neighbours: Sequence[str],
        evaluations: int = RECONSTRUCT_EVALUATIONS,
    ) -> Reconstruction | None:
        """The best blend of the neighbours, refined until about `evaluations` texts have
        been scored (the neighbours' own sentences are always scored); None without any."""
        pieces = self.pieces(target, neighbours)
        if pieces is None:
            return None
        return self.blend(target, neighbours, pieces, evaluations)

    def pieces(self, target: np.ndarray, neighbours: Sequence[str]) -> ScoredPieces | None:
        """The neighbours' texts and sentences, each scored against the target; None if
        they hold none."""
        found: dict[str, int] = {}  # sentence -> index of the neighbour it came from
        for i, text in enumerate(neighbours):
            for piece in [text, *_SENTENCE.split(text)]:
                piece = piece.strip()
                if piece and len(piece.split()) <= self.max_words:
                    found.setdefault(piece, i)
        if not found:
            return None
        texts = list(found)
        return ScoredPieces(texts, self.score(texts, target), [found[t] for t in texts])

    def blend(
        self,
        target: np.ndarray,
        neighbours: Sequence[str],
        pieces: ScoredPieces,
        evaluations: int = RECONSTRUCT_EVALUATIONS,
    ) -> Reconstruction:
        """Starting from the best piece, append the piece that raises the cosine most while
        one does, then refine what remains of `evaluations` (the pieces' scores count)."""
        candidates, scores = pieces.texts, pieces.scores
        spent = len(candidates)
        order = np.argsort(-scores)
        best = int(order[0])
        text, fidelity, used = candidates[best], float(scores[best]), [candidates[best]]
        pool = [candidates[i] for i in order[1:25]]
        for _ in range(self.blend_rounds):
            trials = [
                (s, f"{text} {s}")
                for s in pool
                if s not in used and len(f"{text} {s}".split()) <= self.max_words
            ]
            if not trials or spent >= evaluations:
                break
            spent += len(trials)
            trial_scores = self.score([t for _, t in trials], target)
            i = int(np.argmax(trial_scores))
            if trial_scores[i] <= fidelity:
                break
            text, fidelity = trials[i][1], float(trial_scores[i])
            used.append(trials[i][0])
        origin = dict(zip(candidates, pieces.sources))
        sources = tuple(sorted({origin[s] for s in used}))
        vocabulary = vocabulary_of(neighbours)
        return self.refine(
            target, Reconstruction(text, fidelity, sources), vocabulary, max(0, evaluations - spent)
        )

    def refine(
        self,
        target: np.ndarray,
        current: Reconstruction,
        vocabulary: Sequence[str],
        evaluations: int = REFINE_EVALUATIONS,
    ) -> Reconstruction:
        """Single-word edits kept only when they raise the cosine, until `evaluations` texts
        have been scored or no edit helps. Deterministic for a given target and text."""
        seed = hashlib.sha256(
            np.asarray(target, dtype=np.float32).tobytes() + current.text.encode()
        ).digest()
        rng = random.Random(seed)
        words = _WORD.findall(current.text)
        fidelity = current.fidelity
        spent = stale = 0
        while spent < evaluations and stale < 3:
            proposals = self._edits(words, vocabulary, rng)
            if not proposals:
                break
            spent += len(proposals)
            scores = self.score([" ".join(p) for p in proposals], target)
            i = int(np.argmax(scores))
            if scores[i] > fidelity + 1e-6:
                words, fidelity, stale = proposals[i], float(scores[i]), 0
            else:
                stale += 1
        return Reconstruction(" ".join(words), fidelity, current.sources)

    def _edits(
        self, words: list[str], vocabulary: Sequence[str], rng: random.Random
    ) -> list[list[str]]:
        proposals: list[list[str]] = []
        n = len(words)
        third = self.batch // 3
        for i in rng.sample(range(n), min(third, n)) if n > 1 else []:
            proposals.append(words[:i] + words[i + 1 :])  # delete a word
        if vocabulary:
            for _ in range(third):
                i = rng.randrange(max(n, 1))
                word = rng.choice(vocabulary)
                if n:
                    proposals.append(words[:i] + [word] + words[i + 1 :])  # replace
            if n < self.max_words:
                for _ in range(self.batch - len(proposals)):
                    i = rng.randrange(n + 1)
                    proposals.append(words[:i] + [rng.choice(vocabulary)] + words[i:])  # insert
        return proposals


def vocabulary_of(neighbours: Sequence[str]) -> list[str]:
    """The neighbours' distinct words, in the order they first appear."""
    return list(dict.fromkeys(w for text in neighbours for w in _WORD.findall(text)))

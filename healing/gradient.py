"""Gradient-guided token search: the other way to rebuild a text from its embedding.

Starting from the nearest neighbour's text, the model's own gradient proposes edits: the
gradient of the cosine (between the text's embedding and the surviving one) with respect to a
one-hot choice of token at each position says, to first order, which token swapped in where
would raise it most (HotFlip / GCG). A batch of such swaps, insertions and deletions is then
scored exactly by the real model, and the best is kept if it raises the cosine. It pushes the
cosine higher than the neighbour blend for the same time, but the text it buys is often word
pieces in junk: its calibration (healing/calibrator.py) says how much of it is real.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
from carma.healing.reconstructor import (
    RECONSTRUCT_EVALUATIONS,
    REFINE_EVALUATIONS,
    Reconstruction,
    Reconstructor,
)

METHOD = "gradient-swap"
GRADIENT_COST = 3  # a forward and a backward pass: about three scored texts' worth of work


class TokenModel(Protocol):
    """The embedding model seen token by token (an adapter over the transformer)."""

    max_tokens: int
    allowed: np.ndarray  # bool per token id: the tokens a search may propose

    def tokenize(self, text: str) -> list[int]: ...

    def detokenize(self, ids: Sequence[int]) -> str: ...

    def gradient(self, ids: Sequence[int], target: np.ndarray) -> np.ndarray:
        """d cosine(embed(ids), target) / d one-hot(ids): one row per position, one column
        per token id."""
        ...


class GradientReconstructor(Reconstructor):
    method = METHOD

    def __init__(
        self,
        embed: Callable[[Sequence[str]], np.ndarray],
        tokens: Callable[[], TokenModel],
        *,
        batch: int = 48,
        top_k: int = 24,
        max_tokens: int = 64,
    ):
        super().__init__(embed, batch=batch)
        self._tokens = tokens  # loaded on first use: opening a store never loads the model
        self._model: TokenModel | None = None
        self.top_k = top_k
        self.max_tokens = max_tokens

    @property
    def tokens(self) -> TokenModel:
        if self._model is None:
            self._model = self._tokens()
        return self._model

    def reconstruct(
        self,
        target: np.ndarray,
        neighbours: Sequence[str],
        evaluations: int = RECONSTRUCT_EVALUATIONS,
    ) -> Reconstruction | None:
        """Search from the nearest neighbour's text (neighbours come nearest first)."""
        if not neighbours or not neighbours[0].strip():
            return None
        start = neighbours[0]
        fidelity = float(self.score([start], target)[0])
        return self.refine(
            target, Reconstruction(start, fidelity, (0,)), (), max(0, evaluations - 1)
        )

    def refine(
        self,
        target: np.ndarray,
        current: Reconstruction,
        vocabulary: Sequence[str],
        evaluations: int = REFINE_EVALUATIONS,
    ) -> Reconstruction:
        """Gradient-proposed edits kept only when they raise the cosine, until `evaluations`
        texts' worth of model work is spent or no edit helps (the vocabulary is not used: the
        model proposes)."""
        tokens = self.tokens
        limit = min(self.max_tokens, tokens.max_tokens)
        seed = hashlib.sha256(
            np.asarray(target, dtype=np.float32).tobytes() + current.text.encode()
        ).digest()
        rng = random.Random(seed)
        text, fidelity = current.text, current.fidelity
        ids = tokens.tokenize(text)[:limit]
        spent = stale = 0
        while ids and spent < evaluations and stale < 3:
            proposals = self._proposals(ids, tokens.gradient(ids, target), limit, rng)
            texts = list(
                dict.fromkeys(
                    t for t in (tokens.detokenize(p) for p in proposals) if t.strip() and t != text
                )
            )
            spent += GRADIENT_COST + len(texts)
            if not texts:
                break
            scores = self.score(texts, target)
            i = int(np.argmax(scores))
            if scores[i] > fidelity + 1e-6:
                text, fidelity, stale = texts[i], float(scores[i]), 0
                ids = tokens.tokenize(text)[:limit]  # the text is what is kept and scored
            else:
                stale += 1
        return Reconstruction(text, fidelity, current.sources)

    def _proposals(
        self, ids: list[int], gradient: np.ndarray, limit: int, rng: random.Random
    ) -> list[list[int]]:
        grad = np.array(gradient, dtype=np.float32, copy=True)
        grad[:, ~self.tokens.allowed] = -np.inf
        k = min(self.top_k, grad.shape[1] - 1)
        top = np.argpartition(-grad, k, axis=1)[:, :k]  # per position: the likeliest gains
        n = len(ids)
        proposals: list[list[int]] = []
        for _ in range(self.batch - self.batch // 3):  # swap a token
            i = rng.randrange(n)
            proposals.append(ids[:i] + [int(top[i, rng.randrange(k)])] + ids[i + 1 :])
        for _ in range(self.batch // 6):  # delete one
            if n > 1:
                i = rng.randrange(n)
                proposals.append(ids[:i] + ids[i + 1 :])
        for _ in range(self.batch // 6):  # insert one, as the gradient at that place suggests
            if n < limit:
                i = rng.randrange(n)
                proposals.append(ids[:i] + [int(top[i, rng.randrange(k)])] + ids[i:])
        return proposals

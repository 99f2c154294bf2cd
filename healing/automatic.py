"""The automatic reconstructor: the best rebuild the store can make, fragment by fragment.

The neighbour blend and the gradient-guided search each win where the other loses:

- In a namespace of many texts alike (a large collection of one style), the neighbours'
  sentences hold many of the lost text's words: the blend starts from them and brings back
  more of the original's words than the search does (docs/benchmarks.md: 0.57 against 0.42 on
  3,000 docstring sentences).
- In a small namespace of texts on unrelated subjects, as one agent's memories are, the
  nearest neighbour is about something else: a blend of such sentences stays far from the
  lost text (fidelity 0.57 in issue 26's trial), while the search, which draws its words from
  the model's own vocabulary, is not bound to the neighbours' words.

Which case a fragment is in shows in work the blend does anyway: it scores every sentence of
the neighbours against the surviving embedding. When the best of them comes near
(NEAR_NEIGHBOUR), the fragment is blended; else the search starts from that best sentence.
Either way the model's gradient then refines the result, within the same budget of texts
scored, and in later cycles: it raises the cosine faster than word edits from the
neighbours' vocabulary do, and a refinement keeps a text only when it raises the cosine.

The choice depends only on the surviving embedding and the neighbours, so a calibration
(healing/calibrator.py), which rebuilds known fragments exactly as a repair would, measures
the same mix of choices that the repairs make in that namespace: this is one method, with its
own calibration per namespace and refinement stage.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from carma.healing.gradient import GradientReconstructor, TokenModel
from carma.healing.reconstructor import RECONSTRUCT_EVALUATIONS, Reconstruction

METHOD = "automatic"
# The best neighbour sentence's cosine at or above which the neighbours' words are worth
# blending. Chosen on the "tuning" part of carma.demo.corpus.by_module and on docstring
# sentences outside the large benchmark's 3,000 (docs/reconstruction.md).
NEAR_NEIGHBOUR = 0.6
# Blends run to several sentences: the search may edit all of a blend's tokens.
MAX_TOKENS = 128


class AutomaticReconstructor(GradientReconstructor):
    method = METHOD

    def __init__(
        self,
        embed: Callable[[Sequence[str]], np.ndarray],
        tokens: Callable[[], TokenModel],
        *,
        near_neighbour: float = NEAR_NEIGHBOUR,
        max_tokens: int = MAX_TOKENS,
    ):
        super().__init__(embed, tokens, max_tokens=max_tokens)
        self.near_neighbour = near_neighbour

    def settings(self) -> dict[str, Any]:
        return {"near_neighbour": self.near_neighbour, "max_tokens": self.max_tokens}

    def reconstruct(
        self,
        target: np.ndarray,
        neighbours: Sequence[str],
        evaluations: int = RECONSTRUCT_EVALUATIONS,
    ) -> Reconstruction | None:
        """Blend the neighbours' sentences when the best of them comes near the target, else
        start the search from that sentence; the gradient refines either with what is left
        of `evaluations` (the sentences' scores count). None without any neighbour text."""
        pieces = self.pieces(target, neighbours)
        if pieces is None:
            return None
        if float(np.max(pieces.scores)) >= self.near_neighbour:
            return self.blend(target, neighbours, pieces, evaluations)  # refined by gradient
        spent = len(pieces.texts)
        return self.refine(target, pieces.best(), (), max(0, evaluations - spent))

"""The gradient-guided search over a small model whose gradient is known in closed form: the
embedding of a text is the mean of its tokens' vectors (the real one runs in tests/realmodel)."""

import numpy as np
from carma.healing.gradient import GradientReconstructor
from carma.healing.reconstructor import Reconstruction

WORDS = [f"w{i}" for i in range(60)]


class MeanOfTokens:
    """A token model: embed(ids) = mean of W[ids]; its gradient is exact."""

    max_tokens = 16

    def __init__(self, seed=0):
        self.weights = np.random.default_rng(seed).normal(size=(len(WORDS), 12))
        self.allowed = np.ones(len(WORDS), dtype=bool)
        self.allowed[0] = False  # a "special" token the search must never propose
        self.index = {w: i for i, w in enumerate(WORDS)}

    def tokenize(self, text):
        return [self.index[w] for w in text.split() if w in self.index]

    def detokenize(self, ids):
        return " ".join(WORDS[i] for i in ids)

    def embed_ids(self, ids):
        return self.weights[list(ids)].mean(axis=0)

    def embed(self, texts):
        return np.stack([self.embed_ids(self.tokenize(t) or [1]) for t in texts])

    def gradient(self, ids, target):
        e = self.embed_ids(ids)
        ne, nt = np.linalg.norm(e), np.linalg.norm(target)
        g = target / (ne * nt) - (e @ target) * e / (ne**3 * nt)  # d cos / d e
        return np.tile(self.weights @ g / len(ids), (len(ids), 1))  # d e / d one-hot = W / L


def test_the_search_raises_the_cosine_from_the_neighbours_text_and_never_lowers_it():
    model = MeanOfTokens()
    search = GradientReconstructor(model.embed, lambda: model, batch=24, top_k=6)
    original = "w5 w9 w17 w23 w31 w40"
    target = model.embed([original])[0]
    neighbour = "w5 w2 w3 w44 w50 w51"
    start = float(search.score([neighbour], target)[0])
    rebuilt = search.reconstruct(target, [neighbour, "w7 w8"], evaluations=400)
    assert rebuilt is not None and rebuilt.sources == (0,)
    assert rebuilt.fidelity > start + 0.1
    assert abs(rebuilt.fidelity - float(search.score([rebuilt.text], target)[0])) < 1e-5
    assert "w0" not in rebuilt.text.split()  # a token the model marks unusable
    again = search.refine(target, rebuilt, (), evaluations=200)
    assert again.fidelity >= rebuilt.fidelity
    # Deterministic for the same target, text and budget: work, not time, bounds it.
    same = search.refine(target, Reconstruction(neighbour, start, (0,)), (), evaluations=600)
    twice = search.refine(target, Reconstruction(neighbour, start, (0,)), (), evaluations=600)
    assert same == twice
    assert search.reconstruct(target, [neighbour], evaluations=400) == rebuilt


def test_no_neighbour_no_reconstruction():
    model = MeanOfTokens()
    search = GradientReconstructor(model.embed, lambda: model)
    assert search.reconstruct(model.embed(["w1"])[0], [], evaluations=10) is None

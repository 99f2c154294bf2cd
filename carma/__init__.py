"""CARMA: a self-healing, event-sourced memory store for AI agents.

import carma
with carma.open("./memory") as mem:
    id = mem.add("The cat sat on the mat.", {"source": "notes"})
    hits = mem.search("where did the cat sit?")
"""

import os
from typing import Any as _Any

from carma.bootstrap import open_memory as _open_memory
from carma.bootstrap import recover_store as _recover_store
from carma.config import Options as _Options
from carma.domain.errors import (
    CarmaError,
    ConflictError,
    CorruptEvent,
    EmbedderMismatch,
    FragmentGone,
    FragmentNotFound,
    InvalidInput,
    LogLost,
    StorageError,
)
from carma.embedding import Embedder, HashingEmbedder, SentenceTransformerEmbedder
from carma.lines import InvalidLines
from carma.memory import Memory
from carma.records import (
    BatchResult,
    FragmentEvent,
    FragmentRecord,
    HistoryEntry,
    Hit,
    ImportResult,
)

__version__ = "0.2.0"


def open(
    path: str | os.PathLike[str] | None = None,
    *,
    embedder: Embedder | None = None,
    dream_every: float | None = None,
    cipher_key: str | None = None,
    refine_budget: float | None = None,
    calibrate_budget: float | None = None,
    reconstructor: str | None = None,
    database_url: str | None = None,
    log_passes: int | None = None,
    dimension: int | None = None,
    approximate_above: int | None = None,
    **settings: _Any,
) -> Memory:
    """Open (creating if needed) the store at `path` (default $CARMA_HOME, else ./.carma).

    dream_every: run a scrub-and-heal cycle in a background thread every so many seconds.
    refine_budget: seconds each dream cycle may spend improving approximate reconstructions
    (default 10).
    calibrate_budget: seconds each dream cycle may spend calibrating the reconstructor in
    namespaces that hold approximate bodies (default 20; see `Memory.calibrate`).
    reconstructor: how a body with no exact copy left is rebuilt from its embedding:
    "automatic" (default: per fragment, the neighbours' sentences where they come near, else
    the model's gradient-guided search, refined by the gradient; with an embedder that has no
    gradient, the blend), or one method pinned: "semantic-blend" (neighbours' sentences,
    refined by word edits) or "gradient-swap" (token edits proposed by the model's gradient).
    Default $CARMA_RECONSTRUCTOR. Each is calibrated on its own.
    cipher_key: encrypt the log at rest with AES-GCM (base64 of 16, 24 or 32 bytes; default
    $CARMA_CIPHER_KEY). A store is always opened with the key it was created with.
    log_passes: a scrub reads the log's new events and a rolling slice of its old ones, so
    that every event's checksum is read again at least every `log_passes` scrubs (default 8;
    1: the whole log at every scrub, the most prompt and the costliest).
    dimension: a store with no text model, whose vectors its callers give (add(...,
    embedding=...), search_by_vector); with an embedder, its dimension must be this one.
    approximate_above: past this many live fragments, searches are answered by an HNSW graph
    (approximate nearest neighbours: recall@10 about 0.95, in a fraction of the time) instead
    of a scan of every vector (default 50,000; 0: always the graph). Removals count at once
    either way, and a filter the graph cannot satisfy in full is searched exactly.
    database_url: keep the log in PostgreSQL, shared with every process opened on the same
    URL (postgresql://user:password@host:5432/dbname[?schema=name]; default
    $CARMA_DATABASE_URL). The home then holds this process's projections of that log; a
    home whose log is its own SQLite file keeps it. "": the home's own SQLite file, whatever
    the environment says.
    """
    if settings:
        raise InvalidInput(f"unknown setting(s): {', '.join(sorted(settings))}")
    options = _Options(
        dream_every=dream_every,
        refine_budget=refine_budget,
        calibrate_budget=calibrate_budget,
        log_passes=log_passes,
        dimension=dimension,
        approximate_above=approximate_above,
    )
    return _open_memory(
        path,
        embedder=embedder,
        cipher_key=cipher_key,
        reconstructor=reconstructor,
        database_url=database_url,
        options=options,
    )


def recover(
    path: str | os.PathLike[str] | None = None,
    *,
    embedder: Embedder | None = None,
    cipher_key: str | None = None,
) -> dict[str, _Any]:
    """Build a new log for a store whose log is lost (deleted, cut short or replaced: opening
    it raises LogLost) from the copies that survive in its home: every live fragment whose
    exact text survives is recorded again, saying so; the old history is declared lost in
    the new log; the damaged log and the old ledger are kept aside, never deleted. `embedder`:
    the one the store was made with (default: the default model). Returns the report: what
    was recovered, from where, and what could not be (by id, with why)."""
    return _recover_store(path, embedder=embedder, cipher_key=cipher_key)


__all__ = [
    "BatchResult",
    "CarmaError",
    "ConflictError",
    "CorruptEvent",
    "Embedder",
    "EmbedderMismatch",
    "FragmentEvent",
    "FragmentGone",
    "FragmentNotFound",
    "FragmentRecord",
    "HashingEmbedder",
    "Hit",
    "HistoryEntry",
    "ImportResult",
    "InvalidInput",
    "InvalidLines",
    "LogLost",
    "Memory",
    "SentenceTransformerEmbedder",
    "StorageError",
    "__version__",
    "open",
    "recover",
]

"""CARMA: a self-healing, event-sourced memory store for AI agents.

    import carma
    with carma.open("./memory") as mem:
        id = mem.add("The cat sat on the mat.", {"source": "notes"})
        hits = mem.search("where did the cat sit?")
"""

from __future__ import annotations

import os
from typing import Any

from carma.embedding import Embedder, HashingEmbedder, SentenceTransformerEmbedder
from carma.memory import Memory, storage_errors
from carma.models import BatchResult, FragmentRecord, HistoryEntry, Hit
from domain.errors import (
    CarmaError,
    ConflictError,
    CorruptEvent,
    EmbedderMismatch,
    FragmentGone,
    FragmentNotFound,
    InvalidInput,
    StorageError,
)

__version__ = "0.1.0"


def open(path: str | os.PathLike[str] | None = None, *, embedder: Embedder | None = None,
         dream_every: float | None = None, cipher_key: str | None = None,
         refine_budget: float | None = None, calibrate_budget: float | None = None,
         reconstructor: str | None = None, database_url: str | None = None,
         log_passes: int | None = None, **settings: Any) -> Memory:
    """Open (creating if needed) the store at `path` (default $CARMA_HOME, else ./.carma).

    dream_every: run a scrub-and-heal cycle in a background thread every so many seconds.
    refine_budget: seconds each dream cycle may spend improving approximate reconstructions
    (default 10).
    calibrate_budget: seconds each dream cycle may spend calibrating the reconstructor in
    namespaces that hold approximate bodies (default 20; see `Memory.calibrate`).
    reconstructor: how a body with no exact copy left is rebuilt from its embedding:
    "semantic-blend" (default; neighbours' sentences, refined by word edits: readable) or
    "gradient-swap" (token edits proposed by the model's gradient; default
    $CARMA_RECONSTRUCTOR). Each is calibrated on its own.
    cipher_key: encrypt the log at rest with AES-GCM (base64 of 16, 24 or 32 bytes; default
    $CARMA_CIPHER_KEY). A store is always opened with the key it was created with.
    log_passes: a scrub reads the log's new events and a rolling slice of its old ones, so
    that every event's checksum is read again at least every `log_passes` scrubs (default 8;
    1: the whole log at every scrub, the most prompt and the costliest).
    database_url: keep the log in PostgreSQL, shared with every process opened on the same
    URL (postgresql://user:password@host:5432/dbname[?schema=name]; default
    $CARMA_DATABASE_URL). The home then holds this process's projections of that log; a
    home whose log is its own SQLite file keeps it. "": the home's own SQLite file, whatever
    the environment says.
    """
    from carma.bootstrap import (
        LOG_PASSES,
        RECONSTRUCTOR_VARIABLE,
        RECONSTRUCTORS,
        bootstrap,
        cipher_key_from,
        database_for,
        reconstructor_for,
        resolve_home,
    )

    if settings:
        raise InvalidInput(f"unknown setting(s): {', '.join(sorted(settings))}")
    if dream_every is not None and (isinstance(dream_every, bool)
                                    or not isinstance(dream_every, (int, float))
                                    or not dream_every > 0):
        raise InvalidInput("dream_every must be a positive number of seconds")
    budgets = {"refine_budget": refine_budget, "calibrate_budget": calibrate_budget}
    for name, value in budgets.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not 0 <= value <= 86_400):
            raise InvalidInput(f"{name} must be a number of seconds from 0 to 86400")
    if log_passes is not None and (isinstance(log_passes, bool)
                                   or not isinstance(log_passes, int)
                                   or not 1 <= log_passes <= 10_000):
        raise InvalidInput("log_passes must be a whole number of scrubs from 1 to 10000")
    chosen = reconstructor or os.environ.get(RECONSTRUCTOR_VARIABLE) or None
    if chosen is not None and chosen not in RECONSTRUCTORS:
        raise InvalidInput(f"unknown reconstructor {chosen!r}; known: {', '.join(RECONSTRUCTORS)}")
    if chosen is not None and embedder is not None:
        reconstructor_for(chosen, embedder)  # a wrong pairing is refused before any change
    home = resolve_home(path)
    key = cipher_key_from(cipher_key)
    database = database_for(home, database_url)
    with storage_errors(f"cannot open the store at {home}"):
        return bootstrap(home, embedder, dream_every, cipher_key=key,
                         reconstructor=reconstructor, database=database,
                         log_passes=LOG_PASSES if log_passes is None else log_passes,
                         **{k: v for k, v in budgets.items() if v is not None})


__all__ = [
    "BatchResult",
    "CarmaError",
    "ConflictError",
    "CorruptEvent",
    "Embedder",
    "EmbedderMismatch",
    "FragmentGone",
    "FragmentNotFound",
    "FragmentRecord",
    "HashingEmbedder",
    "Hit",
    "HistoryEntry",
    "InvalidInput",
    "Memory",
    "SentenceTransformerEmbedder",
    "StorageError",
    "__version__",
    "open",
]

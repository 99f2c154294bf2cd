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
from carma.memory import Memory
from carma.models import BatchResult, FragmentRecord, HistoryEntry, Hit
from domain.errors import (
    CarmaError,
    ConflictError,
    CorruptEvent,
    EmbedderMismatch,
    FragmentGone,
    FragmentNotFound,
    InvalidInput,
)

__version__ = "0.1.0"


def open(path: str | os.PathLike[str] | None = None, *, embedder: Embedder | None = None,
         **settings: Any) -> Memory:
    """Open (creating if needed) the store at `path` (default $CARMA_HOME, else ./.carma)."""
    from carma.bootstrap import bootstrap, resolve_home

    if settings:
        raise InvalidInput(f"unknown setting(s): {', '.join(sorted(settings))}")
    return bootstrap(resolve_home(path), embedder)


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
    "__version__",
    "open",
]

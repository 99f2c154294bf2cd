"""The event store: the log every fragment's life is recorded in, the source of truth.

Split as the `eventsourcing` library splits its own persistence:
    mapper       how an event is stored: checksum, sealing of bodies, frozen topics
    application  MemoryLog, the eventsourcing Application whose methods are the write use cases
    chain        the keyed hash chain over every stored event (tamper evidence), replay copies
    keys         the fragments' keys (crypto-shredding), in two copies in the home
    sqlite       the log in the home's own SQLite file (the default)
    postgres     the log in PostgreSQL, shared by many processes (the `postgres` extra: psycopg
                 is imported there only)
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from eventsourcing.persistence import PersistenceError

from carma.domain import CarmaError, StorageError
from carma.log.application import (
    CHAIN_KEY_SETTING,
    EVENT_KINDS,
    EVENT_TOPICS,
    Change,
    MemoryLog,
    Write,
)
from carma.log.mapper import checksum_holds, verified_payload


def _storage_failures() -> tuple[type[BaseException], ...]:
    """What the disk or a database raises when it refuses: psycopg's errors only where it is
    loaded (nothing else can raise them)."""
    # (a UnicodeDecodeError here is stored text damaged on disk)
    failures: tuple[type[BaseException], ...] = (
        OSError,
        sqlite3.Error,
        PersistenceError,
        UnicodeDecodeError,
    )
    psycopg = sys.modules.get("psycopg")
    return failures + (psycopg.Error,) if psycopg is not None else failures


@contextmanager
def storage_errors(doing: str) -> Iterator[None]:
    """Turn a refusal of the disk or the database into StorageError, with one clear line."""
    try:
        yield
    except CarmaError:
        raise
    except _storage_failures() as exc:
        reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0] or type(exc).__name__
        raise StorageError(f"{doing}: {reason}") from exc


__all__ = [
    "CHAIN_KEY_SETTING",
    "EVENT_KINDS",
    "EVENT_TOPICS",
    "Change",
    "MemoryLog",
    "Write",
    "checksum_holds",
    "storage_errors",
    "verified_payload",
]

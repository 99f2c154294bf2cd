"""Tamper evidence: every stored event is chained to the one before it with an HMAC.

The chain value of the event at position n is
    mac_n = HMAC-SHA256(key, mac_{n-1} || n || aggregate id || version || topic || stored bytes)
and is written in the same transaction as the event (table `event_chain`), by the recorder,
under the write lock (SQLite's, or the table lock the library takes on PostgreSQL): the chain
follows commit order exactly. On SQLite the key lives outside the log (`<home>/keys/chain.key`,
mirrored in `<home>/keys.mirror/`), so whoever can write the database file cannot recompute
the chain. On PostgreSQL every process needs it, so it is kept in the database: the chain
then proves integrity and order against faults and against anyone who cannot read that
table, and the head anchored elsewhere proves it against the rest. `verify` replays it: an
edited, deleted, reordered, renumbered or inserted event breaks it at the first bad position.
Cutting events off the end cannot be told from the file alone: anchor the head
(`verify --json`) elsewhere.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from carma.domain import StorageError

GENESIS = bytes(32)
KEY_BYTES = 32


def chain_mac(
    key: bytes,
    previous: bytes,
    position: int,
    originator_id: UUID | str,
    version: int,
    topic: str,
    state: bytes,
) -> bytes:
    h = hmac.new(key, previous, hashlib.sha256)
    h.update(f"\x1f{position}\x1f{originator_id}\x1f{version}\x1f{topic}\x1f".encode())
    h.update(state)
    return h.digest()


class ChainKey:
    """The chain's key, kept in two files: losing one loses nothing."""

    def __init__(self, paths: tuple[Path, Path]):
        self.paths = paths  # the key file and its mirror (carma.home)

    def load(self, create: bool) -> bytes | None:
        found = [p.read_bytes() for p in self.paths if p.is_file()]
        found = [k for k in found if len(k) == KEY_BYTES]
        if not found:
            if not create:
                return None
            key = os.urandom(KEY_BYTES)
        else:
            key = found[0]
            if any(k != key for k in found):
                raise StorageError(
                    "the two copies of the chain key differ: restore keys/ "
                    "and keys.mirror/ from a backup"
                )
        for path in self.paths:  # write the missing copy back
            if not path.is_file() or path.read_bytes() != key:
                path.parent.mkdir(mode=0o700, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(key)
                    f.flush()
                    os.fsync(f.fileno())
        return key


def chain_links(
    key: bytes, previous: bytes, positions: Sequence[int], stored_events: Sequence[StoredEvent]
) -> list[tuple[int, bytes]]:
    """(position, mac) of newly inserted events, each chained to the one before."""
    links = []
    for position, s in zip(positions, stored_events):
        previous = chain_mac(
            key, previous, position, _id(s.originator_id), s.originator_version, s.topic, s.state
        )
        links.append((position, previous))
    return links


def _id(originator_id: UUID | str) -> str:
    return originator_id.hex if isinstance(originator_id, UUID) else originator_id


@dataclass
class Verification:
    ok: bool
    events: int
    first_bad: int | None
    reason: str | None
    head: str
    head_position: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def verify_chain(
    tables: Any, key: bytes, verify_checksum: Any, progress: Any = None
) -> Verification:
    """Replay the chain over the whole log, reading its tables directly (carma.log.postgres)."""
    started = time.perf_counter()
    chained, rows = tables.chained()
    previous, expected, count = GENESIS, 1, 0
    first_bad: int | None = None
    reason: str | None = None
    for position, originator_id, version, topic, state, mac in rows:
        count += 1
        chained.discard(position)
        if first_bad is None:
            if mac is None:
                first_bad, reason = position, "an event that was never chained"
            else:
                computed = chain_mac(key, previous, position, originator_id, version, topic, state)
                if not hmac.compare_digest(computed, mac):
                    # A gap alone is no evidence (on PostgreSQL a rolled-back transaction
                    # leaves one in the sequence); a gap where the chain breaks is.
                    first_bad, reason = (
                        (expected, "an event is missing (a gap in the log)")
                        if position != expected
                        else (position, "the chain breaks here (edited, reordered or inserted)")
                    )
                elif not verify_checksum(StoredEvent(UUID(originator_id), version, topic, state)):
                    first_bad, reason = position, "the event fails its checksum"
                else:
                    previous = computed  # the head of the verified prefix
        expected = position + 1
        if progress and count % 5000 == 0:
            progress(5000)
    if first_bad is None and chained:
        first_bad, reason = min(chained), "an event is missing (its chain entry remains)"
    head_position = first_bad - 1 if first_bad is not None else expected - 1
    return Verification(
        ok=first_bad is None,
        events=count,
        first_bad=first_bad,
        reason=reason,
        head=previous.hex(),
        head_position=head_position,
        seconds=round(time.perf_counter() - started, 4),
    )

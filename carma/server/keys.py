"""Keys to `carma serve`, scoped to namespaces, with separate rights (read, write, admin).

A key is `carma_<id>_<secret>`: the id is public (it names the key in `carma keys list` and
`revoke`), the secret is 256 random bits shown once. The log records that a key was issued —
its id, the sha256 of its secret, its namespaces and rights — and that it was revoked
(`AccessKey`: KeyIssued, KeyRevoked), so every server on one log (one SQLite file, or one
PostgreSQL log shared by several) knows the same keys, and the audit trail is the log's.
The secret is never stored. Each use is counted in the home's key store (`access.sqlite`),
not in the log: a request is not an event of the store.

This module needs no web framework: the CLI's `carma keys` uses it without the server extra.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

import carma
from carma.domain import CorruptEvent, InvalidInput, validate_namespace
from carma.domain.access import RIGHTS, AccessKey, access_key_uuid
from carma.home import Home

PREFIX = "carma"
LABEL_MAX_CHARS = 200
NAMESPACES_MAX = 100
KEY_EVENTS = (AccessKey.KeyIssued, AccessKey.KeyRevoked)
# How stale the server's view of the keys may be when it authenticates a request: a key
# issued or revoked by any process on the log takes effect within this many seconds.
FRESH_S = 1.0


@dataclass(frozen=True)
class Grant:
    """What a request may do: its key's rights, within its namespaces (None: all of them)."""

    key_id: str | None
    namespaces: frozenset[str] | None
    rights: frozenset[str]

    def can(self, right: str) -> bool:
        return right in self.rights

    def sees(self, namespace: str) -> bool:
        return self.namespaces is None or namespace in self.namespaces

    @property
    def scope(self) -> list[str] | None:
        """The namespaces as the API takes them (None: every namespace)."""
        return None if self.namespaces is None else sorted(self.namespaces)

    def as_dict(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "namespaces": self.scope, "rights": sorted(self.rights)}


#: Every right in every namespace: a server on loopback with no key configured.
OPEN_GRANT = Grant(None, None, frozenset(RIGHTS))


@dataclass
class KeyRecord:
    """A key as the log records it (never its secret)."""

    id: str
    digest: str
    namespaces: list[str] | None
    rights: list[str]
    label: str
    issued_at: datetime
    position: int
    revoked_at: datetime | None = None
    revoked_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def grant(self) -> Grant:
        return Grant(
            self.id,
            None if self.namespaces is None else frozenset(self.namespaces),
            frozenset(self.rights),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "namespaces": self.namespaces,
            "rights": self.rights,
            "label": self.label,
            "issued_at": self.issued_at.isoformat(),
            "position": self.position,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "revoked_reason": self.revoked_reason,
        }


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def checked_scope(namespaces: Iterable[str] | None) -> list[str] | None:
    """Namespaces for a key, each checked, sorted, once each (None: every namespace)."""
    if namespaces is None:
        return None
    if isinstance(namespaces, str):
        namespaces = [namespaces]
    chosen = sorted({validate_namespace(n) for n in namespaces})
    if not chosen:
        raise InvalidInput("a key needs at least one namespace (or all of them)")
    if len(chosen) > NAMESPACES_MAX:
        raise InvalidInput(f"a key may name at most {NAMESPACES_MAX} namespaces")
    return chosen


def checked_rights(rights: Iterable[str]) -> list[str]:
    """Rights for a key, checked, in their usual order."""
    chosen = set(rights)
    unknown = chosen - set(RIGHTS)
    if unknown:
        raise InvalidInput(f"unknown right(s) {sorted(unknown)}; rights are {', '.join(RIGHTS)}")
    if not chosen:
        raise InvalidInput("a key needs at least one right: read, write or admin")
    return [r for r in RIGHTS if r in chosen]


def _checked_label(label: str) -> str:
    if not isinstance(label, str) or len(label) > LABEL_MAX_CHARS or not label.isprintable():
        raise InvalidInput(f"a key's label is printable text of at most {LABEL_MAX_CHARS} chars")
    return label


def issue_key(
    mem: carma.Memory,
    namespaces: Iterable[str] | None,
    rights: Iterable[str],
    label: str = "",
) -> tuple[str, str]:
    """Issue a key for these namespaces (None: every namespace) with these rights, recorded
    in the log. Returns (the key, its id): the key is shown this once, never stored."""
    scope = checked_scope(namespaces)
    chosen = checked_rights(rights)
    label = _checked_label(label)
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    mem.log.record(AccessKey.issue(key_id, _digest(secret), scope, chosen, label))
    mem.catch_up()
    return f"{PREFIX}_{key_id}_{secret}", key_id


def revoke_key(mem: carma.Memory, key_id: str, reason: str = "") -> bool:
    """Revoke a key, recorded in the log; False if it was revoked already."""
    if not isinstance(key_id, str) or not key_id.isalnum() or len(key_id) > 64:
        raise InvalidInput(f"no key with id {key_id!r}")
    if not isinstance(reason, str) or len(reason) > 1_000 or not reason.isprintable():
        raise InvalidInput("reason must be printable text of at most 1000 characters")
    try:
        key = mem.log.repository.get(access_key_uuid(key_id))
    except AggregateNotFoundError:
        raise InvalidInput(f"no key with id {key_id!r}") from None
    if not key.revoke(reason):
        return False
    mem.log.record(key)
    mem.catch_up()
    return True


class KeyRing:
    """Every key the log records, kept current by reading the log's key events as they come
    (only those: a filter by topic), and the check of a presented key against them."""

    def __init__(self, mem: carma.Memory, usage: KeyUsage | None = None):
        self._mem = mem
        self.usage = usage
        self._keys: dict[str, KeyRecord] = {}
        self._by_uuid: dict[UUID, str] = {}
        # Aggregates whose key events cannot be read: their keys are refused (fail closed:
        # an unreadable KeyRevoked must not bring a revoked key back).
        self._damaged: set[UUID] = set()
        self._position = 0
        self._read_at = 0.0
        self._lock = threading.Lock()

    def refresh(self) -> None:
        """Read the key events recorded since the last read."""
        with self._lock:
            head = self._mem.log.position()  # read up to here, then on from here next time
            for position, event in self._mem.log.stream(self._position + 1, head, KEY_EVENTS):
                if isinstance(event, CorruptEvent):
                    if isinstance(event.originator_id, UUID):
                        self._damaged.add(event.originator_id)
                    continue
                if isinstance(event, AccessKey.KeyIssued):
                    self._keys[event.key_id] = KeyRecord(
                        id=event.key_id,
                        digest=event.digest,
                        namespaces=event.namespaces,
                        rights=list(event.rights),
                        label=event.label,
                        issued_at=event.timestamp,
                        position=position,
                    )
                    self._by_uuid[event.originator_id] = event.key_id
                elif (key_id := self._by_uuid.get(event.originator_id)) is not None:
                    self._keys[key_id].revoked_at = event.timestamp
                    self._keys[key_id].revoked_reason = event.reason
            self._position = max(self._position, head)
            self._read_at = time.monotonic()

    def ensure_fresh(self, max_age: float = FRESH_S) -> None:
        if time.monotonic() - self._read_at > max_age:
            self.refresh()

    def keys(self) -> list[KeyRecord]:
        with self._lock:
            return sorted(self._keys.values(), key=lambda k: k.position)

    @property
    def any_active(self) -> bool:
        """Whether any key may be used: then every request must present one."""
        with self._lock:
            return bool(self._damaged) or any(k.active for k in self._keys.values())

    def authenticate(self, presented: str) -> tuple[Grant | None, str]:
        """The grant of a presented key, or None and why not (one line, for a 401). The
        secret is compared by its digest, in constant time."""
        self.ensure_fresh()
        parts = presented.split("_", 2)
        if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
            return None, "the key is not a CARMA key (carma_<id>_<secret>)"
        key_id, secret = parts[1], parts[2]
        with self._lock:
            known = key_id in self._keys
        if not known:  # issued a moment ago, perhaps by another process: read the log now
            self.refresh()
        with self._lock:
            record = self._keys.get(key_id)
            damaged = access_key_uuid(key_id) in self._damaged if key_id.isalnum() else False
        expected = record.digest if record is not None else _digest("")
        matches = hmac.compare_digest(_digest(secret), expected)
        if record is None or not matches or damaged:
            if self.usage is not None and record is not None:
                self.usage.refused(key_id)
            return None, "the key is not known (or its record in the log is damaged)"
        if not record.active:
            if self.usage is not None:
                self.usage.refused(key_id)
            return None, f"the key {key_id} was revoked"
        if self.usage is not None:
            self.usage.used(key_id)
        return record.grant(), ""


class KeyUsage:
    """Per-key counters of use and refusal in the home's key store (access.sqlite), counted
    in memory and written every few seconds (and on close): a request costs no disk write."""

    def __init__(self, home: Path):
        self.path = Home(home).access
        self._lock = threading.Lock()
        self._used: Counter[str] = Counter()
        self._refused: Counter[str] = Counter()
        self._last: dict[str, str] = {}
        self._db = _open_usage(self.path)

    def used(self, key_id: str) -> None:
        with self._lock:
            self._used[key_id] += 1
            self._last[key_id] = datetime.now(UTC).isoformat()

    def refused(self, key_id: str) -> None:
        with self._lock:
            self._refused[key_id] += 1

    def flush(self) -> None:
        with self._lock:
            used, refused, last = self._used, self._refused, self._last
            self._used, self._refused, self._last = Counter(), Counter(), {}
        if not used and not refused:
            return
        with self._db:
            for key_id in set(used) | set(refused):
                self._db.execute(
                    "INSERT INTO usage(key_id, uses, refused, last_used_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT(key_id) DO UPDATE SET uses = uses + excluded.uses,"
                    " refused = refused + excluded.refused,"
                    " last_used_at = coalesce(excluded.last_used_at, last_used_at)",
                    [key_id, used[key_id], refused[key_id], last.get(key_id)],
                )

    def close(self) -> None:
        self.flush()
        self._db.close()


def _open_usage(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS usage (key_id TEXT PRIMARY KEY, uses INTEGER NOT NULL,"
        " refused INTEGER NOT NULL, last_used_at TEXT)"
    )
    return db


def usage_of(home: Path) -> dict[str, dict[str, Any]]:
    """Each key's counters in a home's key store (none where no server has run there)."""
    path = Home(home).access
    if not path.is_file():
        return {}
    db = _open_usage(path)
    try:
        return {
            key_id: {"uses": uses, "refused": refused, "last_used_at": last}
            for key_id, uses, refused, last in db.execute(
                "SELECT key_id, uses, refused, last_used_at FROM usage"
            )
        }
    finally:
        db.close()


def list_keys(mem: carma.Memory) -> list[dict[str, Any]]:
    """Every key the log records, oldest first, with this home's counters of its use."""
    ring = KeyRing(mem)
    ring.refresh()
    usage = usage_of(mem.home)
    return [
        {
            **k.as_dict(),
            **usage.get(k.id, {"uses": 0, "refused": 0, "last_used_at": None}),
        }
        for k in ring.keys()
    ]

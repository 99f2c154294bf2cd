"""Per-fragment keys for crypto-shredding, kept outside the log in two copies.

Each fragment's text, metadata and embedding are sealed in the log with AES-GCM under a key of
its own. Forgetting destroys that key in both copies, which makes every stored copy of the
body unreadable for ever, backups of the log included, while the events themselves (and the
tamper-evident chain over them) stay untouched. Both key stores use SQLite's secure_delete and
a rollback journal, so a destroyed key leaves no bytes in free pages or in a WAL.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from carma.domain import StorageError

KEY_BYTES = 32


class FragmentKeys:
    def __init__(self, paths: tuple[Path, Path]):
        self.paths = paths  # the key store and its mirror (carma.home)
        self._lock = threading.Lock()
        self._conns = []
        for path in self.paths:
            path.parent.mkdir(mode=0o700, exist_ok=True)
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            conn.execute("PRAGMA journal_mode=DELETE")
            conn.execute("PRAGMA secure_delete=ON")
            conn.execute("CREATE TABLE IF NOT EXISTS keys (uuid TEXT PRIMARY KEY, key BLOB)")
            os.chmod(path, 0o600)
            self._conns.append(conn)

    def key_for(self, uuid: str, create: bool = False) -> bytes | None:
        """The fragment's key (from either copy), a new one when asked to create, or None
        when it was destroyed."""
        with self._lock:
            for conn in self._conns:
                row = conn.execute("SELECT key FROM keys WHERE uuid = ?", [uuid]).fetchone()
                if row:
                    return row[0]
        if not create:
            return None
        self.create_many([uuid])
        return self.key_for(uuid)

    def keys_for(self, uuids: list[str]) -> dict[str, bytes | None]:
        """Many fragments' keys (from either copy; None for one destroyed), one query per
        500 per copy: a replay of a batch of fragments needs all of theirs."""
        found: dict[str, bytes] = {}
        with self._lock:
            for conn in self._conns:
                missing = [u for u in uuids if u not in found]
                for start in range(0, len(missing), 500):
                    chunk = missing[start : start + 500]
                    found.update(
                        conn.execute(
                            "SELECT uuid, key FROM keys WHERE uuid IN"
                            f" ({','.join('?' * len(chunk))})",
                            chunk,
                        ).fetchall()
                    )
        return {u: found.get(u) for u in uuids}

    def create_many(self, uuids: list[str]) -> None:
        """New keys for new fragments, one durable transaction per copy for the whole batch
        (written before the events that need them)."""
        if not uuids:
            return
        rows = [(u, os.urandom(KEY_BYTES)) for u in uuids]
        with self._lock:
            for conn in self._conns:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany("INSERT OR IGNORE INTO keys VALUES (?, ?)", rows)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise

    def adopt(self, uuid: str, key: bytes) -> None:
        """Keep a key that came with imported events (unless one is here already)."""
        if len(key) != KEY_BYTES:
            raise ValueError("a fragment key has 32 bytes")
        with self._lock:
            for conn in self._conns:
                conn.execute("INSERT OR IGNORE INTO keys VALUES (?, ?)", [uuid, key])

    def destroy(self, uuid: str) -> None:
        with self._lock:
            for conn in self._conns:
                conn.execute("DELETE FROM keys WHERE uuid = ?", [uuid])
            if any(
                c.execute("SELECT 1 FROM keys WHERE uuid = ?", [uuid]).fetchone()
                for c in self._conns
            ):
                raise StorageError("a fragment key could not be destroyed")

    def restore_copies(self) -> int:
        """Write back every key that one of the two copies lacks; returns how many (a scrub
        calls this: the keys are a copy like any other, and must not be a single point of
        failure)."""
        restored = 0
        with self._lock:
            rows = [dict(c.execute("SELECT uuid, key FROM keys").fetchall()) for c in self._conns]
            for conn, mine, theirs in (
                (self._conns[0], rows[0], rows[1]),
                (self._conns[1], rows[1], rows[0]),
            ):
                for uuid in theirs.keys() - mine.keys():
                    conn.execute("INSERT OR IGNORE INTO keys VALUES (?, ?)", [uuid, theirs[uuid]])
                    restored += 1
        return restored

    def close(self) -> None:
        for conn in self._conns:
            conn.close()

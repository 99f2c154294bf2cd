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
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from carma.domain import StorageError

KEY_BYTES = 32


GAP_WITHOUT_ROWS = 10_000  # rowids probed past the last row found, when max(rowid) fails
COPIES = ("keys", "keys-mirror")  # the names of the two copies' findings

# Compared inside SQLite. First the rows alike at the same rowid: when every row of each copy
# has its twin there, the two hold the same keys (a uuid is unique in each), and that is all a
# sound pair needs (0.1 s for a million). Otherwise by uuid, never by position: a uuid's
# absence through the other's index (its covering index scanned, 0.2 s), a key's difference
# through a join (1.4 s).
_ALIKE_IN_PLACE = (
    "SELECT (SELECT count(*) FROM main.keys), (SELECT count(*) FROM mirror.keys),"
    " (SELECT count(*) FROM main.keys a JOIN mirror.keys b"
    " ON a.rowid = b.rowid AND a.uuid = b.uuid AND a.key = b.key)"
)
_UUIDS_LACKING = (
    "SELECT CAST(uuid AS BLOB) FROM {theirs}.keys WHERE uuid NOT IN (SELECT uuid FROM {mine}.keys)"
)
_KEY_OF = "SELECT key FROM {}.keys WHERE CAST(uuid AS BLOB) = ?"
_KEYS_THAT_DIFFER = (
    "SELECT count(*) FROM main.keys a JOIN mirror.keys b ON a.uuid = b.uuid WHERE a.key != b.key"
)


class FragmentKeys:
    """The fragments' keys in two SQLite files. Either copy serves a read; a write goes to
    both, and stands if one of them is damaged (the dream cycle repairs it from the other:
    `check`, `repair`)."""

    def __init__(self, paths: tuple[Path, Path]):
        self.paths = paths  # the key store and its mirror (carma.home)
        self._lock = threading.Lock()
        self._conns: list[sqlite3.Connection] = []
        self.opened_damaged: dict[str, str] = {}  # copy -> why it was begun again at open
        for name, path in zip(COPIES, self.paths):
            try:
                self._conns.append(_connect(path))
            except sqlite3.DatabaseError as exc:  # not even a database: begun again, empty
                _aside(path)
                self._conns.append(_connect(path))
                self.opened_damaged[name] = str(exc)

    def key_for(self, uuid: str, create: bool = False) -> bytes | None:
        """The fragment's key (from either copy), a new one when asked to create, or None
        when it was destroyed."""
        with self._lock:
            damaged = []
            for conn in self._conns:
                try:
                    key = _key_in(conn, uuid)
                except sqlite3.DatabaseError:
                    damaged.append(conn)
                    continue  # a damaged copy: the other serves
                if key is not None:
                    return key
            if damaged and (key := _scanned(self._conns, [uuid]).get(uuid)) is not None:
                return key
        if not create:
            return None
        self.create_many([uuid])
        return self.key_for(uuid)

    def key_candidates(self, uuid: str) -> list[bytes]:
        """The fragment's key as each readable copy holds it (they differ only if damaged)."""
        found: list[bytes] = []
        with self._lock:
            for conn in self._conns:
                try:
                    key = _key_in(conn, uuid)
                except sqlite3.DatabaseError:
                    key = _scanned([conn], [uuid]).get(uuid)
                if key is not None and key not in found:
                    found.append(key)
        return found

    def keys_for(self, uuids: list[str]) -> dict[str, bytes | None]:
        """Many fragments' keys (from either copy; None for one destroyed), one query per
        500 per copy: a replay of a batch of fragments needs all of theirs."""
        found: dict[str, bytes] = {}
        damaged = False
        with self._lock:
            for conn in self._conns:
                missing = [u for u in uuids if u not in found]
                for start in range(0, len(missing), 500):
                    chunk = missing[start : start + 500]
                    try:
                        found.update(
                            conn.execute(
                                "SELECT uuid, key FROM keys WHERE uuid IN"
                                f" ({','.join('?' * len(chunk))})",
                                chunk,
                            ).fetchall()
                        )
                    except sqlite3.DatabaseError:
                        # A damaged page of this copy: one key at a time, so that only the
                        # keys on that page fall to the other copy. (Both copies damaged,
                        # each batch failed whole, left keys unread that one of the two
                        # held, and their fragments read as forgotten until the repair.)
                        damaged = True
                        found.update(_keys_one_by_one(conn, chunk))
            if damaged and (missing := [u for u in uuids if u not in found]):
                found.update(_scanned(self._conns, missing))
        return {u: found.get(u) for u in uuids}

    def create_many(self, uuids: list[str]) -> None:
        """New keys for new fragments, one durable transaction per copy for the whole batch
        (written before the events that need them)."""
        if not uuids:
            return
        rows = [(u, os.urandom(KEY_BYTES)) for u in uuids]
        with self._lock:
            self._in_both(
                lambda conn: conn.executemany("INSERT OR IGNORE INTO keys VALUES (?, ?)", rows)
            )

    def _in_both(self, write: Callable[[sqlite3.Connection], object]) -> None:
        """One durable transaction per copy; a damaged copy may refuse it (the repair writes
        it again from the other), but not both."""
        failures = []
        for conn in self._conns:
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    write(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            except sqlite3.DatabaseError as exc:
                if not _damaged(exc):
                    raise
                failures.append(exc)
        if len(failures) == len(self._conns):
            raise failures[0]

    def adopt(self, uuid: str, key: bytes) -> None:
        """Keep a key that came with imported events (unless one is here already)."""
        if len(key) != KEY_BYTES:
            raise ValueError("a fragment key has 32 bytes")
        with self._lock:
            self._in_both(
                lambda conn: conn.execute("INSERT OR IGNORE INTO keys VALUES (?, ?)", [uuid, key])
            )

    def destroy(self, uuid: str) -> None:
        with self._lock:
            self._in_both(lambda conn: conn.execute("DELETE FROM keys WHERE uuid = ?", [uuid]))
            for conn in self._conns:
                try:
                    left = conn.execute("SELECT 1 FROM keys WHERE uuid = ?", [uuid]).fetchone()
                except sqlite3.DatabaseError:
                    continue  # a damaged copy: its repair never restores a forgotten key
                if left:
                    raise StorageError("a fragment key could not be destroyed")

    def restore_copies(self) -> int:
        """Write back every key that one of the two copies lacks; returns how many (a scrub
        calls this: the keys are a copy like any other, and must not be a single point of
        failure). The two are compared inside SQLite: a million keys read into Python took
        2.9 s and half a gigabyte at each scrub."""
        restored = 0
        with self._lock:
            try:
                lacking, _ = self._differences()
            except sqlite3.DatabaseError:
                return 0  # a damaged copy: check() finds it, repair() writes it again
            for conn, theirs in zip(self._conns, reversed(lacking)):
                rows = [row for row in map(_sound, theirs) if row is not None]
                if rows:
                    conn.execute("BEGIN IMMEDIATE")
                    conn.executemany("INSERT OR IGNORE INTO keys VALUES (?, ?)", rows)
                    conn.execute("COMMIT")
                    restored += len(rows)
        return restored

    @contextmanager
    def _both(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection to the key store with its mirror attached, to compare the
        two in SQL."""
        # Read-only URIs: a copy's file gone meanwhile is an error here, never made anew.
        store, mirror = (f"{Path(p).resolve().as_uri()}?mode=ro" for p in self.paths)
        conn = sqlite3.connect(store, uri=True, isolation_level=None, timeout=30)
        try:
            conn.text_factory = _strict_text
            conn.execute("ATTACH DATABASE ? AS mirror", [mirror])
            yield conn
        finally:
            conn.close()

    def _differences(self) -> tuple[tuple[list[tuple[bytes, object]], ...], int]:
        """The rows of the key store its mirror lacks and those of the mirror the key store
        lacks (by uuid; as stored: the uuid's bytes, the key), and how many keys differ
        between the two."""
        with self._both() as both:
            store, mirror, alike = both.execute(_ALIKE_IN_PLACE).fetchone()
            if store == mirror == alike:
                return ([], []), 0
            lacking = tuple(
                [
                    (uuid, both.execute(_KEY_OF.format(theirs), [uuid]).fetchone()[0])
                    for (uuid,) in both.execute(_UUIDS_LACKING.format(mine=mine, theirs=theirs))
                ]
                for mine, theirs in (("mirror", "main"), ("main", "mirror"))
            )
            (differ,) = both.execute(_KEYS_THAT_DIFFER).fetchone()
        return lacking, differ

    # -- checks and repairs of the two copies ------------------------------------------------------

    def check(self) -> dict[str, tuple[str, str]]:
        """Damaged copies: name -> (fault, what was seen). SQLite's page checks on each, then
        the two compared key by key (a key present in one only is restore_copies' to write
        back; a key that differs between them is damage)."""
        found = {name: ("corrupt", why) for name, why in self.opened_damaged.items()}
        with self._lock:
            for name, conn in zip(COPIES, self._conns):
                try:
                    problems = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
                    if problems != ["ok"]:
                        found[name] = ("corrupt", "; ".join(problems[:3]))
                except sqlite3.DatabaseError as exc:
                    found[name] = ("corrupt", str(exc))
            if found:
                return found
            try:
                lacking, differ = self._differences()
                for name, rows in zip(COPIES, lacking):
                    malformed = sum(1 for row in rows if _sound(row) is None)
                    if malformed:
                        found[name] = ("corrupt", f"{malformed} row(s) not a key")
            except sqlite3.DatabaseError as exc:  # pages sound, yet a read failed: say which
                if not _damaged(exc):
                    return found  # busy, or a file gone meanwhile: the next scrub sees
                for name, conn in zip(COPIES, self._conns):
                    try:
                        conn.execute("SELECT count(uuid), count(key) FROM keys").fetchone()
                    except sqlite3.DatabaseError as own:
                        found[name] = ("corrupt", str(own))
                if not found:
                    found["keys"] = ("corrupt", str(exc))
                return found
        if differ:
            found.setdefault("keys", ("corrupt", f"{differ} key(s) differ between the copies"))
        return found

    def repair(
        self,
        copy: str,
        opens: Callable[[str, bytes], bool | None],
        forgotten: Callable[[list[str]], set[str]],
    ) -> str:
        """Write both copies again from the keys that prove themselves. A key both copies
        hold alike stands; one that only a damaged copy gives, or that the two disagree on,
        is kept only if it opens its fragment's sealed body in the log (`opens`: True,
        False, or None when nothing can tell: then a sound copy's is kept). Never a key of a
        forgotten fragment (`forgotten`), whichever copy still had it."""
        with self._lock:
            read: list[dict[str, bytes]] = []
            sound: list[bool] = []
            for conn in self._conns:
                rows, whole = _readable_rows(conn)
                read.append(rows)
                sound.append(whole)
        # Decided without the lock: proving a key reads the log, which reads keys.
        every = read[0].keys() | read[1].keys()
        gone = forgotten(sorted(every - (read[0].keys() & read[1].keys())))
        chosen: dict[str, bytes] = {}
        for uuid in every - gone:
            candidates = [(rows[uuid], ok) for rows, ok in zip(read, sound) if uuid in rows]
            distinct = {key for key, _ in candidates}
            trusted = {key for key, ok in candidates if ok}
            if len(distinct) == 1 and (len(candidates) == 2 or trusted):
                chosen[uuid] = next(iter(distinct))  # two copies agree, or a sound one
                continue
            for key in sorted(distinct, key=lambda k: k not in trusted):
                verdict = opens(uuid, key)
                if verdict or (verdict is None and key in trusted):
                    chosen[uuid] = key
                    break
        with self._lock:
            # Keys made since they were read (new writes) go in as well.
            for conn in self._conns:
                rows, _ = _readable_rows(conn)
                chosen.update({u: k for u, k in rows.items() if u not in every})
            for i, path in enumerate(self.paths):
                if read[i] != chosen or not sound[i]:
                    self._conns[i].close()
                    rebuilt = path.with_name(path.name + ".rebuilding")
                    rebuilt.unlink(missing_ok=True)
                    fresh = _connect(rebuilt)
                    fresh.execute("BEGIN IMMEDIATE")
                    fresh.executemany("INSERT INTO keys VALUES (?, ?)", sorted(chosen.items()))
                    fresh.execute("COMMIT")
                    fresh.close()
                    _aside(path)
                    os.replace(rebuilt, path)
                    self._conns[i] = _connect(path)
            self.opened_damaged.clear()
        return "restored-from-mirror" if copy == "keys" else "restored-from-keys"

    def close(self) -> None:
        for conn in self._conns:
            conn.close()


def _connect(path: Path) -> sqlite3.Connection:
    try:
        return _connected(path)
    except UnicodeDecodeError as exc:
        # SQLite's message about a damaged schema quotes its bytes, and Python could not
        # decode them: the same damage, said as SQLite's own error (the copy is begun again
        # and repaired from the other, as for any other damage).
        raise sqlite3.DatabaseError(f"malformed database schema ({exc.reason})") from None


def _connected(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(mode=0o700, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.text_factory = _strict_text
    conn.execute("PRAGMA journal_mode=DELETE")
    # A key is written before its event is logged, and an event whose key a power cut took
    # is unreadable: each commit is synced, whatever the SQLite build's default.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA secure_delete=ON")
    conn.execute("CREATE TABLE IF NOT EXISTS keys (uuid TEXT PRIMARY KEY, key BLOB)")
    os.chmod(path, 0o600)
    return conn


def _key_in(conn: sqlite3.Connection, uuid: str) -> bytes | None:
    """The fragment's key in one copy (sqlite3.DatabaseError where the copy is damaged)."""
    row = conn.execute("SELECT key FROM keys WHERE uuid = ?", [uuid]).fetchone()
    return row[0] if row else None


def _keys_one_by_one(conn: sqlite3.Connection, uuids: list[str]) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for uuid in uuids:
        try:
            key = _key_in(conn, uuid)
        except sqlite3.DatabaseError:
            continue  # on the damaged page: the other copy's to give
        if key is not None:
            found[uuid] = key
    return found


def _scanned(conns: list[sqlite3.Connection], uuids: list[str]) -> dict[str, bytes]:
    """Keys that no lookup reached, read off the copies' tables row by row. A damaged page
    of the uuid index can hide a key from lookups in both copies while the table of one of
    them still holds it: until the repair, its fragment would read as forgotten. (Slow, and
    only where a copy is damaged.)"""
    found: dict[str, bytes] = {}
    for conn in conns:
        rows, _ = _table_rows(conn)
        found.update({u: rows[u] for u in uuids if u not in found and u in rows})
    return found


def _readable_rows(conn: sqlite3.Connection) -> tuple[dict[str, bytes], bool]:
    """The rows a copy still gives, and whether the copy is whole (SQLite's page checks)."""
    try:
        whole = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()] == ["ok"]
    except sqlite3.DatabaseError:
        whole = False
    rows, complete = _table_rows(conn)
    return rows, whole and complete


def _table_rows(conn: sqlite3.Connection) -> tuple[dict[str, bytes], bool]:
    """The rows a scan of the copy's table gives (not its uuid index), and whether the scan
    read it to the end."""
    whole = True
    rows: dict[str, bytes] = {}
    last = 0
    try:
        for rowid, uuid, key in conn.execute("SELECT rowid, uuid, key FROM keys ORDER BY rowid"):
            last = rowid
            _keep(rows, uuid, key)
    except sqlite3.DatabaseError:
        # A scan stops at the damaged page, but the rows after it are sound: each is read by
        # its own rowid (a seek that passes the damaged page by). Reading only what came
        # before lost every key past it, in both copies when both were damaged.
        whole = False
        rows.update(_rows_past(conn, last))
    return rows, whole


def _rows_past(conn: sqlite3.Connection, last: int) -> dict[str, bytes]:
    """The rows after rowid `last` that a seek still reaches, one at a time (a repair's
    read, not a query's: slow, and only on a damaged copy)."""
    try:
        (top,) = conn.execute("SELECT max(rowid) FROM keys").fetchone()
    except sqlite3.DatabaseError:
        top = None
    rows: dict[str, bytes] = {}
    rowid, misses = last, 0
    # Up to the highest rowid, or (that unreadable too) until a long run of rowids is empty.
    while (rowid < top) if isinstance(top, int) else (misses < GAP_WITHOUT_ROWS):
        rowid += 1
        try:
            found = conn.execute("SELECT uuid, key FROM keys WHERE rowid = ?", [rowid]).fetchone()
        except sqlite3.DatabaseError:
            found = None
        if found is None:
            misses += 1
            continue
        misses = 0
        _keep(rows, *found)
    return rows


def _keep(rows: dict[str, bytes], uuid: object, key: object) -> None:
    if isinstance(uuid, str) and isinstance(key, bytes) and len(key) == KEY_BYTES:
        rows[uuid] = key


def _sound(row: tuple[bytes, object]) -> tuple[str, bytes] | None:
    """A row as stored (the uuid's bytes, the key), if it is text and a key (as `_keep`)."""
    uuid, key = row
    try:
        text = uuid.decode("utf-8") if isinstance(uuid, bytes) else None
    except UnicodeDecodeError:
        return None
    if not text or not isinstance(key, bytes) or len(key) != KEY_BYTES:
        return None
    return text, key


def _strict_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:  # a damaged copy, as SQLite's own error
        raise sqlite3.DatabaseError(f"the key store holds damaged text ({exc.reason})") from None


def _aside(path: Path) -> None:
    """Keep a damaged copy's file under another name (never deleted: it may be all there is)."""
    if path.exists():
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        path.replace(path.with_name(f"{path.name}.damaged-{stamp}"))


def _damaged(exc: sqlite3.DatabaseError) -> bool:
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text or "corrupt" in text

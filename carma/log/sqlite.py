"""The log in a SQLite file of the home (the default): the library's own SQLite persistence,
made durable, with a recorder that also chains each event it inserts (carma.log.chain), and
the raw reads that replay, the scrub and audit need beside it.

Durability: the log runs in WAL mode with `synchronous=FULL` on every connection that writes
it, so the WAL is synced at every commit and an acknowledged write survives a power cut, not
only a killed process. (`NORMAL`, enough for a projection such as the ledger, lets the last
commits roll back after a power cut: never for the log, whose commit is the acknowledgement.)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import (
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteCursor,
    SQLiteFactory,
    SQLiteProcessRecorder,
)

from carma.domain import StorageError
from carma.log.chain import GENESIS, chain_links
from carma.log.keys import FragmentKeys

if TYPE_CHECKING:
    from carma.home import Home  # the homes a replay copies between


SYNCHRONOUS = "FULL"
FACTORY_TOPIC = "carma.log.sqlite:LogSQLiteFactory"  # the log's PERSISTENCE_MODULE


def strict_text(raw: bytes) -> str:
    """A text column's value; bytes that are not UTF-8 are the file's damage, raised as
    SQLite's own error (a StorageError to the caller), never a bare UnicodeDecodeError."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise sqlite3.DatabaseError(f"the file holds damaged text ({exc.reason})") from None


def connect(path: Path | str) -> sqlite3.Connection:
    """A connection of CARMA's own that writes a log file (a replay's copy, say): as durable
    as the library's."""
    conn = sqlite3.connect(path)
    conn.text_factory = strict_text
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={SYNCHRONOUS}")
    return conn


class DurableConnectionPool(SQLiteConnectionPool):
    """The library's SQLite connections, each set to sync the WAL at every commit."""

    def _create_connection(self) -> SQLiteConnection:
        connection = super()._create_connection()
        connection.cursor().execute(f"PRAGMA synchronous={SYNCHRONOUS}")
        # (the library keeps the sqlite3 connection in this attribute)
        connection._sqlite_conn.text_factory = strict_text
        return connection


class LogSQLiteFactory(SQLiteFactory):
    """The library's SQLite persistence with durable connections, and the log's own recorder
    and raw reads."""

    def __init__(self, env: Any):
        super().__init__(env)
        pool = self.datastore.pool
        self.datastore.pool = DurableConnectionPool(
            db_name=pool.db_name, lock_timeout=pool.lock_timeout
        )

    def log_recorder(self) -> ChainedSQLiteRecorder:
        return ChainedSQLiteRecorder(datastore=self.datastore)

    def log_tables(self) -> SQLiteTables:
        return SQLiteTables(self.datastore, Path(self.datastore.pool.db_name))


class ChainedSQLiteRecorder(SQLiteProcessRecorder):
    """The library's SQLite process recorder, which also chains each event it inserts."""

    key: bytes = b""

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            "CREATE TABLE IF NOT EXISTS event_chain "
            "(position INTEGER PRIMARY KEY, mac BLOB NOT NULL)",
        ]

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        positions = super()._insert_events(c, stored_events, **kwargs)
        if not stored_events:
            return positions
        if not self.key:
            raise StorageError(
                "the log's chain key is lost from both copies: restore keys/ from a backup"
            )
        c.execute("SELECT mac FROM event_chain ORDER BY position DESC LIMIT 1")
        row = c.fetchone()
        c.executemany(
            "INSERT INTO event_chain(position, mac) VALUES (?, ?)",
            chain_links(self.key, row[0] if row else GENESIS, positions or [], stored_events),
        )
        return positions


class SQLiteTables:
    """Raw reads of the SQLite log (the library's `stored_events` and `stored_snapshots`,
    CARMA's `event_chain`). Originator ids come back as 32-digit hex, as SQLite stores them."""

    def __init__(self, datastore: Any, path: Path):
        self.datastore = datastore
        self.path = path

    def _rows(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(sql, params)
            return [tuple(r) for r in c.fetchall()]

    def snapshots_and_events(self, uuids: list[UUID]) -> tuple[list[tuple], list[tuple]]:
        chunk = [u.hex for u in uuids]
        marks = ",".join("?" * len(chunk))
        return (
            self._rows(
                "SELECT originator_id, originator_version, topic, state FROM"
                f" stored_snapshots WHERE originator_id IN ({marks})"
                " ORDER BY originator_id, originator_version DESC",
                chunk,
            ),
            self._rows(
                "SELECT originator_id, originator_version, topic, state FROM"
                f" stored_events WHERE originator_id IN ({marks})"
                " ORDER BY originator_id, originator_version",
                chunk,
            ),
        )

    def stored_at(self, uuid: UUID, version: int) -> list[tuple[str, bytes]]:
        return self._rows(
            "SELECT topic, state FROM stored_events WHERE originator_id = ?"
            " AND originator_version = ?",
            [uuid.hex, version],
        )

    def scan(self, after: int, limit: int, upto: int | None = None) -> list[tuple]:
        """(position, originator id, version, topic, state) after a position (and up to
        `upto`, if given), in log order."""
        return self._rows(
            "SELECT rowid, originator_id, originator_version, topic, state"
            " FROM stored_events WHERE rowid > ? AND rowid <= ?"
            " ORDER BY rowid LIMIT ?",
            [after, _up_to(upto), limit],
        )

    def chained(self) -> tuple[set[int], Iterator[tuple]]:
        """The chain's positions, and (position, originator id, version, topic, state, mac)
        of every event in log order, read straight from the file."""
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        positions = {p for (p,) in conn.execute("SELECT position FROM event_chain")}

        def rows() -> Iterator[tuple]:
            try:
                yield from conn.execute(
                    # CAST: an edited payload may have been stored back as text.
                    "SELECT e.rowid, e.originator_id, e.originator_version, e.topic,"
                    " CAST(e.state AS BLOB), CAST(c.mac AS BLOB) FROM stored_events e"
                    " LEFT JOIN event_chain c ON c.position = e.rowid ORDER BY e.rowid"
                )
            finally:
                conn.close()

        return positions, rows()

    def overwrite(self, uuid: UUID, version: int, state: bytes) -> None:
        """Put other bytes in a stored event's place (chaos and benchmarks damage the log
        with this; nothing in CARMA's own paths ever rewrites an event)."""
        with contextlib.closing(connect(self.path)) as conn, conn:
            conn.execute(
                "UPDATE stored_events SET state = ? WHERE originator_id = ? AND"
                " originator_version = ?",
                [state, uuid.hex, version],
            )


def _up_to(upto: int | None) -> int:
    """A scan's upper bound: positions are 64-bit integers in both dialects."""
    return 2**63 - 1 if upto is None else upto


# -- replays: a new home with a copy of a log's prefix -----------------------------------------


def _new_log(path: Path) -> sqlite3.Connection:
    """A connection to a new log file with the tables a replay's copy fills (the library's
    and the chain's, as they make them)."""
    conn = connect(path)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS stored_events (originator_id TEXT, originator_version "
        "INTEGER, topic TEXT, state BLOB, PRIMARY KEY (originator_id, originator_version))"
    )
    conn.execute(
        "CREATE TABLE IF NOT EXISTS event_chain (position INTEGER PRIMARY KEY, mac BLOB NOT NULL)"
    )
    return conn


def copy_log(source: Home, target: Home, until: int) -> None:
    """Copy the log's events and chain up to position `until`, byte for byte and at the same
    positions, and the keys, into a new home (the start of a replay)."""
    target.path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for copied, folder in zip(target.key_folders, source.key_folders):
        if folder.is_dir():
            shutil.copytree(folder, copied, dirs_exist_ok=True)
    conn = _new_log(target.events)
    try:
        conn.execute("ATTACH DATABASE ? AS source", (f"file:{source.events}?mode=ro",))
        with conn:
            conn.execute(
                "INSERT INTO stored_events(rowid, originator_id, originator_version, topic, state)"
                " SELECT rowid, originator_id, originator_version, topic, state"
                " FROM source.stored_events WHERE rowid <= ? ORDER BY rowid",
                (until,),
            )
            conn.execute(
                "INSERT INTO event_chain SELECT position, mac FROM source.event_chain"
                " WHERE position <= ?",
                (until,),
            )
        conn.execute("DETACH DATABASE source")
    finally:
        conn.close()


def copy_shared_log(
    tables: Any, keys: Any, chain_key: bytes, target: Home, until: int, replica: str
) -> None:
    """Copy a PostgreSQL log's events and chain up to position `until`, byte for byte and at
    the same positions, with the keys it needs, into a new home with a SQLite log of its
    own (a replay is a copy to read, taken away from the shared log), which reads the log
    as the replica it was taken from (its copies' findings are that replica's)."""
    target.path.mkdir(mode=0o700, parents=True, exist_ok=True)
    target.replica_file.write_text(replica + "\n")
    for path in target.key_copies("chain.key"):
        path.parent.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(chain_key)
    copied = FragmentKeys(target.key_copies("fragments.sqlite"))
    try:
        for uuid, key in keys.all().items():
            copied.adopt(uuid, key)
    finally:
        copied.close()
    conn = _new_log(target.events)
    try:
        _, rows = tables.chained()
        with conn:
            for position, originator_id, version, topic, state, mac in rows:
                if position > until:
                    break
                conn.execute(
                    "INSERT INTO stored_events(rowid, originator_id,"
                    " originator_version, topic, state) VALUES (?, ?, ?, ?, ?)",
                    (position, originator_id, version, topic, state),
                )
                if mac is not None:
                    conn.execute("INSERT INTO event_chain VALUES (?, ?)", (position, mac))
    finally:
        conn.close()

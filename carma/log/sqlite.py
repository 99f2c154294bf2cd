"""The log in a SQLite file of the home (the default): the library's own SQLite recorder,
which also chains each event it inserts (carma.log.chain), and the raw reads that replay, the
scrub and audit need beside it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteCursor, SQLiteProcessRecorder

from carma.domain import StorageError
from carma.log.chain import GENESIS, chain_links


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
        with sqlite3.connect(self.path) as conn:
            conn.execute(
                "UPDATE stored_events SET state = ? WHERE originator_id = ? AND"
                " originator_version = ?",
                [state, uuid.hex, version],
            )


def _up_to(upto: int | None) -> int:
    """A scan's upper bound: positions are 64-bit integers in both dialects."""
    return 2**63 - 1 if upto is None else upto

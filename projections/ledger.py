"""HealthLedger: SQLite tables (sqlite-utils) with one row per fragment and one per event.

Rows and the ledger's position change in one transaction, so the ledger never shows half a
batch, and several processes sharing a home never apply an event twice.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple
from uuid import UUID

import numpy as np
import sqlite_utils
from carma.domain import (
    DreamCycle,
    Fragment,
    ReconstructionCalibration,
    VectorIndexCopy,
)
from carma.domain.calibration import NAMESPACE_SOURCE, curve_for, lowest_measured, read_off
from carma.domain.filters import EVERYTHING, AllOf, AnyOf, Filter
from carma.domain.fragment import SOLE_REPLICA, Replica, copy_kind
from carma.domain.healing import ProjectionCopy, index_copy_id
from carma.projections.cache import file_digest, rendered
from carma.projections.index import embedding_fingerprint, embedding_fingerprints, faiss_id
from carma.projections.ledger_file import ROW_CHECKED, check, check_apart, connect, row_checked
from carma.projections.runner import Batch, unreadable_body

KIND_OF = {
    ProjectionCopy.ProjectionLost: "projection-lost",
    ProjectionCopy.ProjectionRepaired: "projection-repaired",
    Fragment.FragmentWritten: "written",
    Fragment.FragmentRevised: "revised",
    Fragment.FragmentDeleted: "deleted",
    Fragment.FragmentForgotten: "forgotten",
    Fragment.FragmentLost: "lost",
    Fragment.FragmentReconstructed: "reconstructed",
    Fragment.EmbeddingKept: "embedding-kept",
    VectorIndexCopy.IndexLost: "index-lost",
    VectorIndexCopy.IndexRebuilt: "index-rebuilt",
    DreamCycle.DreamCycleStarted: "cycle-started",
    DreamCycle.DreamCycleCompleted: "cycle-completed",
    ReconstructionCalibration.CalibrationOpened: "calibration-opened",
    ReconstructionCalibration.CalibrationStarted: "calibration-started",
    ReconstructionCalibration.CalibrationSampled: "calibration-sampled",
    ReconstructionCalibration.ReconstructionCalibrated: "calibration-completed",
    ReconstructionCalibration.CalibrationDeclined: "calibration-declined",
}
SCHEMA = 12  # bump when a table changes: old ledgers are rebuilt from the log
LIVE = "status NOT IN ('deleted', 'forgotten')"  # SQL: a fragment that is neither
# A row made after repairs were applied to its fragment (its first event unreadable when the
# ledger was built) keeps their method, as the row they would have updated did.
LAST_REPAIR_METHOD = "(SELECT method FROM repairs WHERE uuid = ? ORDER BY position DESC LIMIT 1)"
INDEX_FILE = "index-file"  # the `copy` of findings about the whole index file
# The upper bounds of the bins of health's distributions: reconstructions mostly land between
# 0.8 and 0.95; an exact body is 1, a lost one 0.
FIDELITY_BUCKETS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
RECALL_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


SCAN_CHUNK = 65_536  # rows turned into arrays at a time: the tuples never number a million
BULK_CACHE_KIB = 32 * 1024  # the page cache of a replay into an empty ledger (_in_bulk)


@dataclass(frozen=True, eq=False)
class ScanRows:
    """Fragments' scan columns, one array each: what a scrub compares every copy with, and
    keeps between scrubs. About 80 bytes a fragment (as Python tuples of strings and ints,
    about 0.6 kB: a million of them were most of a scrub's memory)."""

    hexes: np.ndarray  # "S32": the uuid in hex, as its cache file is named
    faiss_ids: np.ndarray  # int64
    fingerprints: np.ndarray  # int64: of the embedding (0: unknown)
    digests: np.ndarray  # (n, 32) uint8: sha256 of the cache file (zeros: none recorded)
    gone: np.ndarray  # bool: deleted or forgotten (must have no copies)

    @classmethod
    def of(cls, rows: list[tuple[Any, ...]]) -> ScanRows:
        """From (uuid hex, faiss id, gone, fingerprint, cache digest in hex or '') tuples."""
        count = len(rows)
        hexes, ids, gone, prints, digests = zip(*rows) if rows else ((),) * 5
        try:
            unhexed = bytes.fromhex("".join(d or NO_DIGEST for d in digests))
            if len(unhexed) != 32 * count:
                raise ValueError
        except ValueError:  # a digest damaged in the ledger: no file can match it
            unhexed = b"".join(_digest_bytes(d) for d in digests)
        return cls(
            np.array(hexes, dtype="S32").reshape(count),
            np.fromiter(ids, dtype=np.int64, count=count),
            np.fromiter(prints, dtype=np.int64, count=count),
            np.frombuffer(unhexed, dtype=np.uint8).reshape(count, 32),
            np.fromiter(gone, dtype=bool, count=count),
        )

    @classmethod
    def joined(cls, parts: list[ScanRows]) -> ScanRows:
        if len(parts) == 1:
            return parts[0]
        return cls(*(np.concatenate([part.column(f) for part in parts]) for f in _SCAN_FIELDS))

    def __len__(self) -> int:
        return len(self.hexes)

    def take(self, at: np.ndarray | slice) -> ScanRows:
        return ScanRows(*(self.column(f)[at] for f in _SCAN_FIELDS))

    def live(self) -> ScanRows:
        """The rows of fragments that are neither deleted nor forgotten."""
        return self.take(~self.gone) if self.gone.any() else self

    def column(self, name: str) -> np.ndarray:
        return getattr(self, name)

    def hex_list(self) -> list[str]:
        return [h.decode() for h in self.hexes.tolist()]


NO_DIGEST = "0" * 64
_SCAN_FIELDS = tuple(f.name for f in fields(ScanRows))


def _digest_bytes(digest: str | None) -> bytes:
    """A sha256 digest in hex as its 32 bytes; zeros for none, or for one that is no digest."""
    try:
        raw = bytes.fromhex(digest or NO_DIGEST)
    except ValueError:
        return bytes(32)
    return raw if len(raw) == 32 else bytes(32)


NO_SCAN_ROWS = ScanRows.of([])


class ScanChanges(NamedTuple):
    tick: int  # the scan clock (see HealthLedger._create)
    count: int  # fragments in the ledger
    rows: ScanRows  # the scan columns of those changed
    generation: str = ""  # the clock's (see HealthLedger._create)


class HealthLedger:
    name = "ledger"

    def __init__(self, path: Path, replica: Replica = SOLE_REPLICA):
        self.path = Path(path)
        # Whose copies this ledger reports on: on a shared log, other replicas' findings
        # about their own files are theirs (the log's body is everyone's).
        self.replica = replica
        self._index_copy = str(index_copy_id(replica))
        # The error of a batch that failed in a catch-up's transaction: it undoes the whole.
        self._broken: BaseException | None = None
        self._open()

    def _open(self) -> None:
        try:
            self._connect()
        except UnicodeDecodeError as exc:
            # SQLite's message about a damaged schema quotes its bytes, and Python could not
            # decode them: the same damage, said as SQLite's own error (callers move the
            # file aside and replay the log into a new one).
            raise sqlite3.DatabaseError(f"malformed database schema ({exc.reason})") from None

    def _connect(self) -> None:
        conn = connect(self.path)
        conn.execute("PRAGMA journal_mode=WAL")
        # No fsync per commit: the ledger is a projection, and its position commits with its
        # rows. A power loss may take its last commits (never a process crash: the WAL is
        # in the OS's hands by then); it reopens consistent, and replays them from the log.
        # An fsync per commit cost a heal about 15% of its time.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA secure_delete=ON")  # a forgotten fragment's metadata is zeroed
        self.db = sqlite_utils.Database(conn)
        self._create()

    def _create(self) -> None:
        db = self.db
        # The ledger is a projection: a ledger of another schema is dropped and replayed.
        if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA:
            for table in db.table_names():
                db[table].drop()
            db.execute(f"PRAGMA user_version = {SCHEMA}")
        db["fragments"].create(
            {
                "uuid": str,
                "id": str,
                "faiss_id": int,
                "namespace": str,
                "version": int,
                "status": str,
                "content_hash": str,
                "embedding_fingerprint": int,
                "cache_digest": str,
                "metadata": str,
                "fidelity": float,
                "expected_recall": float,
                "reconstructed_by": str,
                "refinements": int,
                "last_fault": str,
                "last_method": str,
                "written_at": str,
                "updated_at": str,
                "changed": int,
            },
            pk="uuid",
            if_not_exists=True,
        )
        # The scan clock: a count of changes to what a scrub compares (the scan columns),
        # stamped on the row changed, so that a scrub reads only the rows changed since its
        # last one (scan_changes). Triggers keep it for every INSERT (a REPLACE too) and
        # every UPDATE that sets a scan column; a row deleted (a reset) is not stamped: a
        # scrub tells from the count of rows. A reset keeps the clock, so that rows a
        # rebuild writes again read as changed. (sqlite-utils turns recursive_triggers on:
        # a trigger on UPDATE of this table without a column list would fire itself.)
        # Its generation tells one clock from another made after it (the tables made again).
        db.execute(
            "CREATE TABLE IF NOT EXISTS scan_clock (tick INTEGER NOT NULL,"
            " generation TEXT NOT NULL)"
        )
        db.execute(
            "INSERT INTO scan_clock SELECT 0, lower(hex(randomblob(8)))"
            " WHERE NOT EXISTS (SELECT 1 FROM scan_clock)"
        )
        for name, when in (
            ("scan_row_added", "INSERT ON fragments WHEN NEW.changed IS NULL"),
            ("scan_row_changed", f"UPDATE OF {', '.join(self._SCAN_COLUMNS)} ON fragments"),
        ):
            db.execute(
                f"CREATE TRIGGER IF NOT EXISTS {name} AFTER {when} BEGIN"
                " UPDATE scan_clock SET tick = tick + 1;"
                " UPDATE fragments SET changed = (SELECT tick FROM scan_clock)"
                " WHERE uuid = NEW.uuid; END"
            )
        # A row inserted already stamped (INSERT_NEW_FRAGMENT: the clock's next tick) only
        # moves the clock: a write's rows skip the second statement on each (a tenth of the
        # ledger's time in a rebuild).
        db.execute(
            "CREATE TRIGGER IF NOT EXISTS scan_row_stamped AFTER INSERT ON fragments"
            " WHEN NEW.changed IS NOT NULL BEGIN"
            " UPDATE scan_clock SET tick = max(tick, NEW.changed); END"
        )
        db["history"].create(
            {"position": int, "uuid": str, "version": int, "kind": str, "at": str, "detail": str},
            pk="position",
            if_not_exists=True,
        )
        db["positions"].create({"name": str, "position": int}, pk="name", if_not_exists=True)
        # Open findings: a copy found lost or damaged and not yet repaired.
        db["faults"].create(
            {"uuid": str, "copy": str, "fault": str, "position": int, "cycle_id": str},
            pk=("uuid", "copy"),
            if_not_exists=True,
        )
        db["repairs"].create(
            {
                "position": int,
                "uuid": str,
                "copy": str,
                "method": str,
                "fidelity": float,
                "cycle_id": str,
            },
            pk="position",
            if_not_exists=True,
        )
        db["cycles"].create(
            {
                "id": str,
                "trigger": str,
                "started_at": str,
                "completed_at": str,
                "health_before": float,
                "health_after": float,
                "found": str,
                "repaired": str,
                "seconds": str,
            },
            pk="id",
            if_not_exists=True,
        )
        # Per namespace and reconstruction method: the latest calibration (domain/calibration).
        db["calibrations"].create(
            {
                "uuid": str,
                "namespace": str,
                "method": str,
                "status": str,
                "sampled": int,
                "sample": int,
                "curve": str,
                "curves": str,
                "summary": str,
                "declined": str,
                "position": int,
                "at": str,
            },
            pk="uuid",
            if_not_exists=True,
        )
        db["fragments"].create_index(["id"], unique=True, if_not_exists=True)
        db["fragments"].create_index(["faiss_id"], if_not_exists=True)
        db["fragments"].create_index(["content_hash"], if_not_exists=True)
        db["history"].create_index(["uuid", "version"], if_not_exists=True)
        # A new fragment's row looks up its last repair (LAST_REPAIR_METHOD): without this
        # index, a scan of every repair ever made, on every write (after a heal of 100,000
        # files, writes were 9x slower).
        db["repairs"].create_index(["uuid", "position"], if_not_exists=True)
        db["fragments"].create_index(["changed"], if_not_exists=True)
        db["fragments"].create_index(["namespace"], if_not_exists=True)
        self._create_metadata_index(db)
        self._create_row_checks(db)
        # Keywords: a full-text index of live bodies (rowid: the fragment's FAISS id), exact
        # ones flagged, so that a reconstruction's words are never a keyword hit unless asked.
        db.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS keywords USING fts5(text, exact UNINDEXED,"
            " tokenize = 'unicode61 remove_diacritics 2')"
        )

    @staticmethod
    def _create_row_checks(db: Any) -> None:
        """A checksum of every fragments row, kept beside it by triggers: SQLite's own page
        checks see a damaged page's structure, not a flipped byte in a row's values, and the
        scrub compares the copies against these rows (see check_rows)."""
        db.execute(
            "CREATE TABLE IF NOT EXISTS row_checks (uuid TEXT PRIMARY KEY, checksum INTEGER)"
        )
        columns = row_checked("NEW")
        db.execute(
            "CREATE TRIGGER IF NOT EXISTS row_checked AFTER INSERT ON fragments BEGIN"
            f" INSERT OR REPLACE INTO row_checks VALUES (NEW.uuid, row_check({columns})); END"
        )
        # (Of the checked columns only: the scan clock's stamp is not one of them.)
        db.execute(
            "CREATE TRIGGER IF NOT EXISTS row_rechecked AFTER UPDATE OF"
            f" {', '.join(ROW_CHECKED)} ON fragments BEGIN"
            f" INSERT OR REPLACE INTO row_checks VALUES (NEW.uuid, row_check({columns})); END"
        )
        db.execute(
            "CREATE TRIGGER IF NOT EXISTS row_unchecked AFTER DELETE ON fragments BEGIN"
            " DELETE FROM row_checks WHERE uuid = OLD.uuid; END"
        )

    @staticmethod
    def _create_metadata_index(db: Any) -> None:
        """One row per metadata field of each fragment, by kind, indexed: what a filter is
        evaluated on (carma.domain.filters). Triggers keep it with the metadata column, so
        no path that writes a row can forget it (a rebuild included)."""
        db.execute(
            "CREATE TABLE IF NOT EXISTS metadata_index (uuid TEXT NOT NULL, key TEXT NOT NULL,"
            " kind TEXT NOT NULL, num, txt TEXT)"  # num untyped: integers stay exact
        )
        db.execute("CREATE INDEX IF NOT EXISTS metadata_by_text ON metadata_index(key, kind, txt)")
        db.execute(
            "CREATE INDEX IF NOT EXISTS metadata_by_number ON metadata_index(key, kind, num)"
        )
        db.execute("CREATE INDEX IF NOT EXISTS metadata_by_fragment ON metadata_index(uuid)")
        fields = f"{METADATA_FIELDS.format(row='NEW', source='')};"
        db.execute(
            "CREATE TRIGGER IF NOT EXISTS metadata_added AFTER INSERT ON fragments BEGIN"
            f" {fields} END"
        )
        db.execute(
            "CREATE TRIGGER IF NOT EXISTS metadata_changed AFTER UPDATE OF metadata ON fragments"
            f" BEGIN DELETE FROM metadata_index WHERE uuid = OLD.uuid; {fields} END"
        )
        db.execute(
            "CREATE TRIGGER IF NOT EXISTS metadata_removed AFTER DELETE ON fragments BEGIN"
            " DELETE FROM metadata_index WHERE uuid = OLD.uuid; END"
        )

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self.db.conn
        if conn.in_transaction:
            # Inside a catch-up's transaction, which is all or nothing: a batch that fails
            # breaks it, and the whole is undone at its end (transaction), so no savepoint
            # need undo that batch alone. (A savepoint's journal, a temporary file, took a
            # copy of every page a batch wrote: in a replay, 400,000 writes at 100,000
            # fragments; in 10 writes of 1,000 at 100,000, 120 MB.)
            try:
                yield conn
            except BaseException as exc:
                self._broken = exc
                raise
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # also when COMMIT itself failed (a full disk)
                conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """Several reads that see the same state (another process may be writing)."""
        conn = self.db.conn
        if conn.in_transaction:
            yield conn
            return
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Apply several batches as one transaction: a catch-up ends at a committed head of the
        log, so readers of the ledger never see part of a write that spanned two batches.

        All or nothing: a batch that failed (the catch-up goes on with the other
        projections) undoes every batch of it at its end, and the ledger waits where it was
        for the next catch-up. A catch-up into an empty ledger (a rebuild, a replay, a new
        ledger for an old log) replays in bulk (_in_bulk)."""
        with self._transaction() as conn:
            self._broken = None
            empty = conn.execute("SELECT 1 FROM fragments LIMIT 1").fetchone() is None
            if empty and self.position == 0:
                with self._in_bulk(conn):
                    yield
            else:
                yield
            broken, self._broken = self._broken, None
            if broken is not None:  # (raised: _transaction rolls the whole back)
                raise broken

    # What an empty ledger's replay drops, and makes again at its end: the fragments'
    # triggers and the secondary indexes that no statement of the replay reads.
    _DEFERRED = (
        "scan_row_added",
        "scan_row_changed",
        "scan_row_stamped",
        "row_checked",
        "row_rechecked",
        "row_unchecked",
        "metadata_added",
        "metadata_changed",
        "metadata_removed",
        "idx_fragments_id",
        "idx_fragments_faiss_id",
        "idx_fragments_content_hash",
        "idx_fragments_changed",
        "idx_history_uuid_version",
        "metadata_by_text",
        "metadata_by_number",
        "metadata_by_fragment",
    )

    @contextmanager
    def _in_bulk(self, conn: sqlite3.Connection) -> Iterator[None]:
        """Replay into an empty ledger with its derived rows and secondary indexes made once,
        at the end, inside the same transaction.

        Row by row, each fragment's insert went into ten b-trees in random order (uuids,
        hashes), fired four triggers and called row_check and json_each: most of a rebuild's
        ledger time (at 100,000 fragments, 9.0 s of rows against 2.8 s this way). Made at the
        end, the same rows are one sorted build per index. What the triggers keep is derived
        from the fragments' final rows alone, so the result is the same; a duplicate `id`
        fails the unique index's creation, and the whole replay rolls back with it (the DDL is
        transactional: a failed replay leaves the schema whole). The statements the replay
        runs read rows by uuid, by faiss_id in keywords, by namespace in calibrations, and a
        repair's last method: the indexes they use stay."""
        marks = ",".join("?" * len(self._DEFERRED))
        deferred = conn.execute(
            f"SELECT type, name, sql FROM sqlite_master WHERE name IN ({marks})"
            " ORDER BY type, name",
            self._DEFERRED,
        ).fetchall()
        for kind, name, _ in deferred:
            conn.execute(f"DROP {kind.upper()} {name}")
        conn.execute("DELETE FROM row_checks")
        conn.execute("DELETE FROM metadata_index")
        # The keyword index too is made at the end, from a plain table that takes its place
        # meanwhile (the replay's statements read and write it by rowid alike). FTS5 writes
        # what it holds in memory to disk whenever a rowid is not above the last one, and
        # rowids are FAISS ids, in no order: one insert at a time, the index took 4 s of a
        # rebuild of 100,000; from the table, in rowid order, one pass.
        (keywords_sql,) = conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'keywords'"
        ).fetchone()
        conn.execute("DROP TABLE keywords")
        conn.execute("CREATE TABLE keywords(rowid INTEGER PRIMARY KEY, text, exact)")
        # A page cache that holds what the replay writes between its spills: SQLite's
        # default (2 MB) wrote pages out to the WAL and read them back as the replay went
        # on (290,000 of its system calls at 100,000 fragments).
        (cache_size,) = conn.execute("PRAGMA cache_size").fetchone()
        conn.execute(f"PRAGMA cache_size = -{BULK_CACHE_KIB}")
        try:
            yield
        finally:
            conn.execute(f"PRAGMA cache_size = {int(cache_size)}")
        broken, self._broken = self._broken, None
        if broken is not None:  # a batch failed: the replay is undone whole
            raise broken
        conn.execute("ALTER TABLE keywords RENAME TO keywords_replayed")
        conn.execute(keywords_sql)
        conn.execute(
            "INSERT INTO keywords(rowid, text, exact)"
            " SELECT rowid, text, exact FROM keywords_replayed ORDER BY rowid"
        )
        conn.execute("DROP TABLE keywords_replayed")  # (secure_delete zeroes its pages)
        conn.execute(
            f"INSERT INTO row_checks SELECT f.uuid, row_check({row_checked('f')}) FROM fragments f"
        )
        conn.execute(METADATA_FIELDS.format(row="f", source="fragments f, "))
        # The scan clock: every row new to a scrub (a reset kept the clock, so that a scrub
        # before it does not take the rows for ones it has seen), no two stamps alike, and
        # the clock at the latest, as the triggers leave it.
        conn.execute("UPDATE fragments SET changed = (SELECT tick FROM scan_clock) + rowid")
        conn.execute(
            "UPDATE scan_clock SET tick = coalesce((SELECT max(changed) FROM fragments), tick)"
        )
        for _, _, sql in deferred:
            conn.execute(sql)

    @property
    def position(self) -> int:
        row = self.db.execute(
            "SELECT position FROM positions WHERE name = ?", [self.name]
        ).fetchone()
        return row[0] if row else 0

    def marks(self, *names: str) -> list[int]:
        """Positions in the log that other processes keep here beside the ledger's own (the
        scrubber's progress through the log's checksums): 0 for one not kept yet. They go
        with a reset, as the rows they were taken against do."""
        found = dict(
            self.db.execute(
                "SELECT name, position FROM positions WHERE name IN"
                f" ({','.join('?' * len(names))})",
                names,
            ).fetchall()
        )
        return [found.get(name, 0) for name in names]

    def set_marks(self, marks: dict[str, int]) -> None:
        with self._transaction() as conn:
            conn.executemany(
                "INSERT INTO positions(name, position) VALUES (?, ?) ON CONFLICT(name)"
                " DO UPDATE SET position = excluded.position",
                list(marks.items()),
            )

    def apply(self, batch: Batch) -> None:
        with self._transaction() as conn:
            # Read the position inside the write transaction: another process sharing this
            # home may have applied part of the batch already.
            row = conn.execute(
                "SELECT position FROM positions WHERE name = ?", [self.name]
            ).fetchone()
            applied = row[0] if row else 0
            # Runs of copy repairs and of new fragments are written together, one statement
            # per table: a heal records repairs by the hundred, a write fragments by the
            # thousand, and each one's rows are its own (nothing read back).
            repairs: list[tuple[int, Any]] = []
            writes: list[tuple[int, Any]] = []
            written: set[UUID] = set()  # the run's fragments (a second event of one ends it)

            def flush() -> None:
                if repairs:
                    self._apply_copy_repairs(conn, repairs)
                    repairs.clear()
                if writes:
                    self._apply_writes(conn, writes)
                    writes.clear()
                    written.clear()

            for position, event in batch:
                if position <= applied:
                    continue
                if self._is_copy_repair(event):
                    if writes:
                        flush()
                    repairs.append((position, event))
                elif type(event) is Fragment.FragmentWritten:
                    if repairs or event.originator_id in written:
                        flush()
                    writes.append((position, event))
                    written.add(event.originator_id)
                else:
                    flush()
                    self._apply_one(conn, position, event)
            flush()
            conn.execute(
                "INSERT INTO positions(name, position) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET position = max(position, excluded.position)",
                [self.name, batch[-1][0]],
            )

    def _is_copy_repair(self, event: Any) -> bool:
        """A repair of this replica's cache file or index entry: a heal records them by the
        hundred, and each one's rows are its own (nothing read back), so a run of them is
        written with one statement per table (_apply_copy_repairs)."""
        return (
            type(event) is Fragment.FragmentReconstructed
            and copy_kind(event.copy) != "log-body"
            and self.replica.owns(event.copy)
        )

    @staticmethod
    def _apply_copy_repairs(conn: sqlite3.Connection, run: list[tuple[int, Any]]) -> None:
        """Repairs' rows: the fault answered, the repair, the fragment's row touched, its
        history (a body's repair also restates the body: _body_restored, first)."""
        faults, repairs, touched, history = [], [], [], []
        for position, event in run:
            uuid, copy, cycle_id = (
                str(event.originator_id),
                copy_kind(event.copy),
                _str(event.cycle_id),
            )
            at = event.timestamp.isoformat()
            faults.append((uuid, copy))
            repairs.append((position, uuid, copy, event.method, event.fidelity, cycle_id))
            touched.append((at, event.method, uuid))
            history.append(
                (
                    position,
                    uuid,
                    event.originator_version,
                    "reconstructed",
                    at,
                    canonical_json(
                        {
                            "copy": copy,
                            "method": event.method,
                            "fidelity": event.fidelity,
                            "sources": event.sources,
                            "cycle_id": cycle_id,
                        }
                    ),
                )
            )
        conn.executemany("DELETE FROM faults WHERE uuid = ? AND copy = ?", faults)
        conn.executemany(
            "INSERT OR REPLACE INTO repairs(position, uuid, copy, method, fidelity,"
            " cycle_id) VALUES (?, ?, ?, ?, ?, ?)",
            repairs,
        )
        conn.executemany(
            "UPDATE fragments SET updated_at = ?, last_method = ? WHERE uuid = ?", touched
        )
        conn.executemany(
            "INSERT OR REPLACE INTO history(position, uuid, version, kind, at,"
            " detail) VALUES (?, ?, ?, ?, ?, ?)",
            history,
        )

    @staticmethod
    def _apply_writes(conn: sqlite3.Connection, run: list[tuple[int, Any]]) -> None:
        """New fragments' rows (FragmentWritten events of distinct fragments): the fragment,
        its words, its history; what _apply_one writes for one, a statement per table."""
        rows, words, history = [], [], []
        # (their vectors' fingerprints in one call: one each was a tenth of a rebuild's rows)
        fingerprints = iter(
            embedding_fingerprints([e.embedding for _, e in run if _readable(e)]).tolist()
        )
        for position, event in run:
            uuid = str(event.originator_id)
            at = event.timestamp.isoformat()
            readable = _readable(event)
            fingerprint = next(fingerprints) if readable else 0
            row = _new_fragment_row(uuid, event, at, readable, fingerprint)
            rows.append(row)
            if readable:
                words.append((row[2], event.text))
            kind, detail = _naming_detail("written", event)
            history.append(
                (position, uuid, event.originator_version, kind, at, canonical_json(detail))
            )
        conn.executemany(INSERT_NEW_FRAGMENT, rows)
        conn.executemany("DELETE FROM keywords WHERE rowid = ?", [(row[2],) for row in rows])
        # (in rowid order: FTS5 writes its pending terms out at each rowid below the last)
        words.sort()
        conn.executemany("INSERT INTO keywords(rowid, text, exact) VALUES (?, ?, 1)", words)
        conn.executemany(
            "INSERT OR REPLACE INTO history(position, uuid, version, kind, at, detail)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            history,
        )

    def _apply_one(self, conn: sqlite3.Connection, position: int, event: Any) -> None:
        kind = KIND_OF.get(type(event))
        if kind is None:
            if (uuid := unreadable_body(event)) is not None:
                # The body this event set is unknown: never show an older one as current.
                conn.execute(
                    "UPDATE fragments SET status = 'lost', fidelity = 0.0, version = ?,"
                    " cache_digest = '', embedding_fingerprint = 0, metadata = NULL,"
                    " expected_recall = NULL, reconstructed_by = NULL"
                    f" WHERE uuid = ? AND {LIVE}",
                    [event.version, str(uuid)],
                )
                _keywords(conn, str(uuid), None)  # the body it set is unknown
            return
        uuid = str(event.originator_id)
        if not self._ours(kind, uuid, event):
            return  # another replica's copy: its finding, its repair, its cycle
        if kind.startswith("projection-"):
            self._projection_copy(conn, position, uuid, kind, event)
            return
        at = event.timestamp.isoformat()
        detail: dict[str, Any]
        readable = _readable(event)
        # A revision of a fragment whose first event is unreadable is the first to name it.
        names_it = kind == "written" or (
            kind == "revised"
            and conn.execute("SELECT 1 FROM fragments WHERE uuid = ?", [uuid]).fetchone() is None
        )
        if kind == "revised":
            # A new body is whole: it answers any damage to the log's copy of the old one, and
            # to the copies the projections rewrite from it (Fragment._revised).
            _close_findings(conn, uuid)
        if names_it:
            conn.execute(INSERT_NEW_FRAGMENT, _new_fragment_row(uuid, event, at, readable))
            _keywords(conn, uuid, event.text if readable else None, exact=True)
            kind, detail = _naming_detail(kind, event)
        elif kind == "revised":
            conn.execute(
                "UPDATE fragments SET version = ?, content_hash = ?, embedding_fingerprint = ?,"
                " cache_digest = ?, metadata = ?, updated_at = ?, status = 'healthy',"
                " fidelity = 1.0, expected_recall = NULL, reconstructed_by = NULL WHERE uuid = ?",
                [event.originator_version, *_body_values(uuid, event, readable), at, uuid],
            )
            _keywords(conn, uuid, event.text if readable else None, exact=True)
            detail = {"content_hash": event.content_hash}
        elif kind == "deleted":
            conn.execute(
                "UPDATE fragments SET status = 'deleted', updated_at = ? WHERE uuid = ?",
                [at, uuid],
            )
            _keywords(conn, uuid, None)
            _close_findings(conn, uuid)
            detail = {"reason": event.reason}
        elif kind == "forgotten":
            # Nothing of the body stays here: metadata goes too (it may name a person).
            conn.execute(
                "UPDATE fragments SET status = 'forgotten', metadata = '{}', cache_digest = '',"
                " embedding_fingerprint = 0,"
                " updated_at = ? WHERE uuid = ?",
                [at, uuid],
            )
            _keywords(conn, uuid, None)
            _close_findings(conn, uuid)
            detail = {"reason": event.reason}
        elif kind in ("lost", "index-lost"):
            copy = copy_kind(event.copy) if kind == "lost" else INDEX_FILE
            if copy == "log-body":
                self._body_lost(conn, uuid, event, at)
            conn.execute(
                "INSERT OR REPLACE INTO faults(uuid, copy, fault, position, cycle_id)"
                " VALUES (?, ?, ?, ?, ?)",
                [uuid, copy, event.fault, position, _str(event.cycle_id)],
            )
            self._touch(conn, uuid, event, at, last_fault=f"{copy}/{event.fault}")
            detail = {"copy": copy, "fault": event.fault, "cycle_id": _str(event.cycle_id)}
        elif kind == "reconstructed":  # the log's body (a copy's repair: see apply)
            self._body_restored(conn, uuid, event, at)
            self._apply_copy_repairs(conn, [(position, event)])
            return
        elif kind == "index-rebuilt":
            copy, method = INDEX_FILE, "exact-log"
            detail = {
                "copy": copy,
                "method": method,
                "position": event.position,
                "seconds": event.seconds,
                "cycle_id": _str(event.cycle_id),
            }
            conn.execute("DELETE FROM faults WHERE uuid = ? AND copy = ?", [uuid, copy])
            conn.execute(
                "INSERT OR REPLACE INTO repairs(position, uuid, copy, method, fidelity, cycle_id)"
                " VALUES (?, ?, ?, ?, 1.0, ?)",
                [position, uuid, copy, method, detail["cycle_id"]],
            )
            self._touch(conn, uuid, event, at, last_method=method)
        elif kind == "embedding-kept":
            conn.execute(
                "UPDATE fragments SET embedding_fingerprint = ?, updated_at = ? WHERE uuid = ?",
                [embedding_fingerprint(event.embedding) if event.embedding else 0, at, uuid],
            )
            detail = {"copy": "log-body", "cycle_id": _str(event.cycle_id)}
        elif kind.startswith("calibration"):
            self._calibration(conn, position, kind, event, at)
            return  # not a fragment's story: the calibration's own events tell it
        elif kind == "cycle-started":
            conn.execute(
                "INSERT OR REPLACE INTO cycles(id, trigger, started_at) VALUES (?, ?, ?)",
                [uuid, event.trigger, at],
            )
            detail = {"trigger": event.trigger}
        else:  # cycle-completed
            conn.execute(
                "UPDATE cycles SET completed_at = ?, health_before = ?, health_after = ?,"
                " found = ?, repaired = ?, seconds = ? WHERE id = ?",
                [
                    at,
                    event.health_before,
                    event.health_after,
                    canonical_json(event.found),
                    canonical_json(event.repaired),
                    canonical_json(event.seconds),
                    uuid,
                ],
            )
            detail = {"found": event.found, "repaired": event.repaired}
        if uuid == self._index_copy or kind.startswith("cycle"):
            return  # the history table is each fragment's own story
        conn.execute(
            "INSERT OR REPLACE INTO history(position, uuid, version, kind, at, detail)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [position, uuid, event.originator_version, kind, at, canonical_json(detail)],
        )

    def _projection_copy(
        self, conn: sqlite3.Connection, position: int, uuid: str, kind: str, event: Any
    ) -> None:
        """A whole file of the home found damaged, or repaired: an open finding by copy."""
        if event.replica != self.replica.name:
            return  # another replica's file
        if kind == "projection-lost":
            conn.execute(
                "INSERT OR REPLACE INTO faults(uuid, copy, fault, position, cycle_id)"
                " VALUES (?, ?, ?, ?, ?)",
                [uuid, event.copy, event.fault, position, _str(event.cycle_id)],
            )
        else:
            conn.execute("DELETE FROM faults WHERE uuid = ?", [uuid])
            conn.execute(
                "INSERT OR REPLACE INTO repairs(position, uuid, copy, method, fidelity,"
                " cycle_id) VALUES (?, ?, ?, ?, 1.0, ?)",
                [position, uuid, event.copy, event.method, _str(event.cycle_id)],
            )

    def check_file(self, whole: bool = True) -> str | None:
        """Why this ledger's file is damaged, or None when it is sound: its pages and rows
        (check_pages), then FTS5's check of the keyword index (check_keywords)."""
        return self.check_pages(whole) or self.check_keywords()

    def check_pages(self, whole: bool = True) -> str | None:
        """Why this ledger's pages or rows are damaged, or None (see ledger_file.check): on a
        connection of its own, in one read transaction, so it may run on another thread,
        under no lock of the store's."""
        return check(self.path, whole)

    def check_pages_apart(self, whole: bool = True) -> str | None:
        """check_pages, in a process of its own (see ledger_file.check_apart): what a dream
        cycle runs beside its scan of the copies."""
        return check_apart(self.path, whole)

    def check_keywords(self) -> str | None:
        """Why the keyword index's own structure is damaged (FTS5's integrity check), or
        None. (A command written as an INSERT: on this object's connection, the writer's.)"""
        try:
            self.db.execute("INSERT INTO keywords(keywords, rank) VALUES ('integrity-check', 1)")
        except sqlite3.DatabaseError as exc:
            return str(exc)
        return None

    def keyword_membership(self) -> set[int] | None:
        """The fragments whose keyword rows disagree with their ledger rows (FAISS ids): a
        live body missing from the index, or a row of one that is not (None: unreadable)."""
        # As arrays: two sets of a million FAISS ids (63-bit ints) held 140 MiB at once, at
        # every whole check of a dream cycle, the most of a scrub's peak above its store's.
        try:
            indexed = _int_column(self.db.execute("SELECT rowid FROM keywords"))
            bodies = _int_column(
                self.db.execute(
                    "SELECT faiss_id FROM fragments WHERE status IN ('healthy', 'approximate')"
                )
            )
        except (sqlite3.DatabaseError, TypeError, ValueError):  # (a value not an id: the
            return None  # rows' own checks name the row)
        return set(np.setxor1d(indexed, bodies).tolist())

    def rebuild_keywords(self, bodies: Iterable[tuple[str, str, bool]]) -> None:
        """The keyword index written again from the bodies given: (uuid, text, exact)."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM keywords")
            for uuid, text, exact in bodies:
                _keywords(conn, uuid, text, exact)
            conn.execute("INSERT INTO keywords(keywords) VALUES ('optimize')")

    def replace_with(self, rebuilt: Path) -> None:
        """Swap in a ledger rebuilt beside this one (its connection closed): the damaged file
        is kept aside, this object reads and writes the rebuilt one from now on."""
        self.db.conn.close()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        for suffix in ("-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        if self.path.exists():
            os.replace(self.path, self.path.with_name(f"{self.path.name}.damaged-{stamp}"))
        for suffix in ("-wal", "-shm"):
            Path(f"{rebuilt}{suffix}").unlink(missing_ok=True)
        os.replace(rebuilt, self.path)
        self._open()

    def _ours(self, kind: str, uuid: str, event: Any) -> bool:
        if kind in ("lost", "reconstructed"):
            return self.replica.owns(event.copy)
        if kind in ("index-lost", "index-rebuilt"):
            return uuid == self._index_copy
        if kind == "cycle-started":
            return getattr(event, "replica", "") == self.replica.name
        return True

    @staticmethod
    def _body_lost(conn: sqlite3.Connection, uuid: str, event: Any, at: str) -> None:
        """The log's own copy of the body is unreadable: the fragment counts as lost until a
        repair restates it. A fragment whose first event was unreadable when this ledger was
        built gets its row from what the finding recorded."""
        recorded = event.recorded
        if conn.execute("SELECT 1 FROM fragments WHERE uuid = ?", [uuid]).fetchone() is None:
            if "key" not in recorded or "namespace" not in recorded:
                return
            conn.execute(
                "INSERT INTO fragments(uuid, id, faiss_id, namespace, version, status,"
                " content_hash, embedding_fingerprint, cache_digest, metadata, fidelity,"
                " written_at, updated_at, last_method) VALUES (?, ?, ?, ?, ?, 'lost', ?, ?, '',"
                f" NULL, 0.0, ?, ?, {LAST_REPAIR_METHOD})",
                [
                    uuid,
                    recorded["key"],
                    faiss_id(uuid),
                    recorded["namespace"],
                    # The content's version and vector, where the finding recorded them (0:
                    # unknown; the scrub then checks the vector against the log's).
                    recorded.get("version", event.originator_version),
                    recorded.get("content_hash", ""),
                    recorded.get("embedding_fingerprint", 0),
                    recorded.get("written_at", at),
                    at,
                    uuid,
                ],
            )
        _keywords(conn, uuid, None)  # the body is lost: none of its words can be vouched for
        conn.execute(
            "UPDATE fragments SET status = 'lost', fidelity = 0.0,"
            " expected_recall = NULL, reconstructed_by = NULL,"
            " content_hash = coalesce(?, content_hash) WHERE uuid = ?"
            f" AND {LIVE}",
            [recorded.get("content_hash"), uuid],
        )

    @staticmethod
    def _body_restored(conn: sqlite3.Connection, uuid: str, event: Any, at: str) -> None:
        """A repair restated the body (exactly, or approximately with its fidelity)."""
        found = conn.execute(
            "SELECT id, namespace FROM fragments WHERE uuid = ?", [uuid]
        ).fetchone()
        if found is None or event.text is None:
            return
        key, namespace = found
        exact = event.method.startswith("exact-")
        expected, refinements = None, 0
        if not exact:
            # The namespace's calibration as of this point in the log, as `get` reads it (the
            # repair's own figure may predate a calibration it had not seen yet).
            refinements = getattr(event, "refinement", None) or 0
            found = HealthLedger._curve(conn, namespace, event.method, refinements)
            if found is not None:  # below its calibrated range: unknown, never the repair's
                expected = read_off(found[0], event.fidelity, found[1])
            else:
                expected = getattr(event, "expected_recall", None)
        _close_findings(conn, uuid)
        _keywords(conn, uuid, event.text, exact=exact)
        conn.execute(
            "UPDATE fragments SET version = ?, status = ?, fidelity = ?, content_hash = ?,"
            " embedding_fingerprint = ?, cache_digest = ?, metadata = ?, expected_recall = ?,"
            f" reconstructed_by = ?, refinements = ? WHERE uuid = ? AND {LIVE}",
            [
                event.originator_version,
                "healthy" if exact else "approximate",
                event.fidelity,
                event.content_hash,
                embedding_fingerprint(event.embedding),
                _cache_digest(uuid, key, namespace, event),
                None if event.metadata is None else canonical_json(event.metadata),
                expected,
                None if exact else event.method,
                refinements,
                uuid,
            ],
        )

    @staticmethod
    def _read_off(
        conn: sqlite3.Connection, namespace: str, method: str, fidelity: float, refinements: int
    ) -> float | None:
        found = HealthLedger._curve(conn, namespace, method, refinements)
        if found is None:
            return None
        curve, lowest = found
        return read_off(curve, fidelity, lowest)

    @staticmethod
    def _curve(
        conn: sqlite3.Connection, namespace: str, method: str, refinements: int
    ) -> tuple[list[list[float]], float] | None:
        """The namespace's calibration curve of a method at a refinement stage, and the
        lowest fidelity it measured there; None where it has none."""
        row = conn.execute(
            "SELECT curve, curves, summary FROM calibrations WHERE namespace = ?"
            " AND method = ? AND curve IS NOT NULL",
            [namespace, method],
        ).fetchone()
        if row is None:
            return None
        curve = curve_for(json.loads(row[0]), json.loads(row[1] or "null"), refinements)
        return curve, lowest_measured(json.loads(row[2] or "null"), curve, refinements)

    def calibration_source(self, namespace: str, method: str) -> str | None:
        """Where the namespace's calibration curve for a method was measured: "namespace"
        (its own fragments) or the public text of an adopted calibration; None: no curve."""
        row = self.db.execute(
            "SELECT summary FROM calibrations WHERE namespace = ? AND method = ?"
            " AND curve IS NOT NULL",
            [namespace, method],
        ).fetchone()
        if row is None:
            return None
        return (json.loads(row[0] or "null") or {}).get("source") or NAMESPACE_SOURCE

    def recall_unknown(
        self, namespace: str, method: str | None, fidelity: float, refinements: int = 0
    ) -> str | None:
        """Why an approximate body has no expected recall (None when it has one)."""
        if method is None:
            return "its reconstruction method is unknown"
        found = self._curve(self.db.conn, namespace, method, refinements)
        if found is None:
            declined = self.db.execute(
                "SELECT declined FROM calibrations WHERE namespace = ? AND method = ?",
                [namespace, method],
            ).fetchone()
            if declined and declined[0]:
                small = json.loads(declined[0])
                return (
                    f"namespace {namespace!r} is too small to calibrate "
                    f"({small['exact_fragments']} exact fragments; {small['needed']} needed)"
                )
            return f"namespace {namespace!r} is not calibrated yet"
        curve, lowest = found
        if read_off(curve, fidelity, lowest) is None:
            return (
                f"its fidelity {fidelity:.3f} is below the calibrated range "
                f"(measured from {lowest:.3f})"
            )
        return None

    @staticmethod
    def _calibration(
        conn: sqlite3.Connection, position: int, kind: str, event: Any, at: str
    ) -> None:
        """A calibration's progress; a completed one re-reads the expected recall of every
        approximate fragment its method rebuilt in its namespace."""
        if kind == "calibration-opened":
            conn.execute(
                "INSERT OR IGNORE INTO calibrations(uuid, namespace, method, status,"
                " sampled, sample, position, at) VALUES (?, ?, ?, 'new', 0, 0, ?, ?)",
                [str(event.originator_id), event.namespace, event.method, position, at],
            )
            return
        where, uuid = "WHERE uuid = ?", str(event.originator_id)
        found = conn.execute(
            f"SELECT namespace, method FROM calibrations {where}", [uuid]
        ).fetchone()
        if found is None:
            return  # its opening event cannot be read: nothing to attach it to
        namespace, method = found
        if kind == "calibration-started":
            conn.execute(
                f"UPDATE calibrations SET status = 'calibrating', sampled = 0,"
                f" sample = ?, position = ?, at = ? {where}",
                [len(event.sample), position, at, uuid],
            )
        elif kind == "calibration-sampled":
            conn.execute(
                f"UPDATE calibrations SET sampled = sampled + ?, position = ?, at = ? {where}",
                [len(event.fragments), position, at, uuid],
            )
        elif kind == "calibration-declined":
            conn.execute(
                f"UPDATE calibrations SET status = CASE WHEN curve IS NULL THEN"
                f" 'declined' ELSE 'calibrated' END, declined = ?, position = ?,"
                f" at = ? {where}",
                [
                    canonical_json(
                        {"exact_fragments": event.exact_fragments, "needed": event.needed}
                    ),
                    position,
                    at,
                    uuid,
                ],
            )
        else:  # calibration-completed
            curves = getattr(event, "curves", None)
            conn.execute(
                f"UPDATE calibrations SET status = 'calibrated', curve = ?,"
                f" curves = ?, summary = ?, declined = NULL, position = ?, at = ?"
                f" {where}",
                [
                    canonical_json(event.curve),
                    canonical_json(curves),
                    canonical_json(event.summary),
                    position,
                    at,
                    uuid,
                ],
            )
            rows = conn.execute(
                "SELECT uuid, fidelity, refinements FROM fragments WHERE status = 'approximate'"
                " AND namespace = ? AND reconstructed_by = ?",
                [namespace, method],
            ).fetchall()

            def recall(fidelity: float, refinements: int) -> float | None:
                curve = curve_for(event.curve, curves, refinements)
                return read_off(curve, fidelity, lowest_measured(event.summary, curve, refinements))

            conn.executemany(
                "UPDATE fragments SET expected_recall = ? WHERE uuid = ?",
                [
                    (recall(fidelity, refinements or 0), fragment)
                    for fragment, fidelity, refinements in rows
                ],
            )

    @staticmethod
    def _touch(conn: sqlite3.Connection, uuid: str, event: Any, at: str, **columns: str) -> None:
        # `version` stays the content's version: findings and repairs do not change content.
        sets = ", ".join(f"{name} = ?" for name in columns)
        conn.execute(
            f"UPDATE fragments SET updated_at = ?, {sets} WHERE uuid = ?",
            [at, *columns.values(), uuid],
        )

    # What a reset drops and makes again: every table but the scan clock (kept, so that the
    # rows a rebuild writes again read as changed to a scrub taken before it).
    _RESET = (
        "metadata_index",
        "row_checks",
        "fragments",
        "history",
        "positions",
        "faults",
        "repairs",
        "cycles",
        "calibrations",
        "keywords",
    )

    # What of it holds a fragment's body (its metadata, its words), by table and index:
    # zeroed as it goes (secure_delete), so that no copy of a body outlives its forgetting.
    _HOLD_BODIES = frozenset(
        ("fragments", "metadata_index", "keywords", "metadata_by_text", "metadata_by_number")
    )

    def reset(self) -> None:
        """Empty the ledger for a replay from the log: its tables dropped and made again, in
        one transaction. (Deleted row by row, a fragment's rows left eight b-trees one key at a
        time and fired three triggers: 2.5 s at 100,000 fragments, against 0.6 s dropped
        whole.)

        secure_delete zeroes a dropped table's pages as it does deleted rows, a write of each
        page (and of its copy in the statement's journal): only what holds a body is zeroed.
        The rest (history, checks, faults, repairs, and the indexes of ids, hashes and
        positions) holds nothing a forgetting removes; its pages go to the free list as
        they are, and a later forgetting cannot find a body there."""
        with self._transaction() as conn:
            marks = ",".join("?" * len(self._RESET))
            indexes = [
                name
                for (name,) in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
                    f" AND tbl_name IN ({marks})",
                    self._RESET,
                )
            ]
            bodiless = [("INDEX", n) for n in indexes if n not in self._HOLD_BODIES] + [
                ("TABLE", t) for t in self._RESET if t not in self._HOLD_BODIES
            ]
            conn.execute("PRAGMA secure_delete = OFF")
            try:
                for kind, name in bodiless:
                    conn.execute(f"DROP {kind} IF EXISTS {name}")
            finally:
                conn.execute("PRAGMA secure_delete = ON")
            for table in self._RESET:
                conn.execute(f"DROP TABLE IF EXISTS {table}")
            self._create()

    # -- plain queries: the read model -----------------------------------------------------------

    def row(self, key: str) -> dict[str, Any] | None:
        return next(self.db["fragments"].rows_where("id = ?", [key]), None)

    def row_by_uuid(self, uuid: str) -> dict[str, Any] | None:
        return next(self.db["fragments"].rows_where("uuid = ?", [uuid]), None)

    def damaged_content(self, keys: Iterable[str]) -> dict[str, tuple[str, str | None]]:
        """For fragments whose body is lost or approximate: id -> (recorded content hash,
        recorded metadata as canonical JSON, None where unknown)."""
        found: dict[str, tuple[str, str | None]] = {}
        for chunk in _chunks(sorted(set(keys)), 500):
            marks = ",".join("?" * len(chunk))
            for key, digest, metadata in self.db.execute(
                f"SELECT id, content_hash, metadata FROM fragments WHERE id IN ({marks})"
                " AND status IN ('lost', 'approximate')",
                chunk,
            ).fetchall():
                found[key] = (digest, metadata)
        return found

    def exact_faiss_ids(self, namespace: str) -> list[int]:
        """Ids of the live fragments of a namespace whose bodies are exact: the only ones a
        reconstruction may draw on."""
        return [
            r[0]
            for r in self.db.execute(
                "SELECT faiss_id FROM fragments f WHERE namespace = ? AND status = 'healthy'"
                " AND NOT EXISTS (SELECT 1 FROM faults x WHERE x.uuid = f.uuid"
                " AND x.copy = 'log-body')",
                [namespace],
            ).fetchall()
        ]

    def exact_uuids(self, namespace: str) -> list[str]:
        """Uuids of the live fragments of a namespace whose bodies are exact, in order."""
        return [
            r[0]
            for r in self.db.execute(
                "SELECT uuid FROM fragments f WHERE namespace = ? AND status = 'healthy'"
                " AND NOT EXISTS (SELECT 1 FROM faults x WHERE x.uuid = f.uuid"
                " AND x.copy = 'log-body') ORDER BY uuid",
                [namespace],
            ).fetchall()
        ]

    def reconstructed_namespaces(self) -> list[tuple[str, str, int]]:
        """(namespace, method, approximate bodies) wherever the method made approximate
        bodies: where a calibration is wanted, and how many fragments it would serve."""
        return [
            (r[0], r[1], r[2])
            for r in self.db.execute(
                "SELECT namespace, reconstructed_by, count(*) FROM fragments"
                " WHERE status = 'approximate' AND reconstructed_by IS NOT NULL"
                " GROUP BY 1, 2 ORDER BY 1, 2"
            ).fetchall()
        ]

    def expected_recall(
        self, namespace: str, method: str, fidelity: float, refinements: int = 0
    ) -> float | None:
        """The share of words a reconstruction of this fidelity, refined `refinements` times,
        is expected to hold, read off the namespace's calibration for the method; None where
        there is none."""
        return self._read_off(self.db.conn, namespace, method, fidelity, refinements)

    def calibrations(self) -> dict[str, dict[str, Any]]:
        """The latest calibration of each namespace, by method: status ('calibrated',
        'calibrating', 'declined': too small), progress, and what it measured."""
        found: dict[str, dict[str, Any]] = {}
        for row in self.db.query("SELECT * FROM calibrations ORDER BY namespace, method"):
            summary = json.loads(row["summary"]) if row["summary"] else None
            entry: dict[str, Any] = {"status": row["status"], "method": row["method"]}
            if row["status"] == "calibrating":
                entry["progress"] = {"measured": row["sampled"], "of": row["sample"]}
            if row["declined"]:
                entry["too_small"] = json.loads(row["declined"])
            if summary:
                entry.update(
                    {
                        k: summary[k]
                        for k in (
                            "fragments",
                            "exact_fragments",
                            "mean_fidelity",
                            "mean_recall",
                            "mean_content_recall",
                        )
                    }
                )
                # Measured on the namespace's own fragments, or adopted (public text).
                entry["source"] = summary.get("source") or NAMESPACE_SOURCE
            found.setdefault(row["namespace"], {})[row["method"]] = entry
        return found

    def lost_rows(self) -> list[dict[str, Any]]:
        """Live fragments whose body is lost."""
        return list(
            self.db.query("SELECT uuid, id FROM fragments WHERE status = 'lost' ORDER BY uuid")
        )

    def approximate_rows(self, below: float) -> list[dict[str, Any]]:
        """Approximate fragments whose fidelity is below a target, lowest first."""
        return list(
            self.db.query(
                "SELECT uuid, id, fidelity FROM fragments WHERE status = 'approximate'"
                " AND fidelity < ? ORDER BY fidelity, uuid",
                [below],
            )
        )

    def live_keys_with_content(self, slots: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """For (namespace, content hash) pairs, the id of the oldest live fragment holding
        that text in that namespace, where there is one."""
        found: dict[tuple[str, str], str] = {}
        hashes = sorted({h for _, h in slots})
        for chunk in _chunks(hashes, 500):
            marks = ",".join("?" * len(chunk))
            for namespace, digest, key in self.db.execute(
                f"SELECT namespace, content_hash, id FROM fragments WHERE content_hash IN ({marks})"
                " AND " + LIVE + " ORDER BY written_at DESC",
                chunk,
            ).fetchall():
                found[(namespace, digest)] = key  # oldest last: it wins
        return found

    def rows_by_faiss_ids(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        found: dict[int, dict[str, Any]] = {}
        for chunk in _chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            for row in self.db.query(f"SELECT * FROM fragments WHERE faiss_id IN ({marks})", chunk):
                found[row["faiss_id"]] = row
        return found

    def faiss_ids_where(self, namespace: str | None, where: Filter) -> list[int]:
        """Ids of live fragments in a namespace (or any) whose metadata satisfies the filter,
        evaluated on the metadata index (carma.domain.filters says what each operator means)."""
        clauses, params = self._scope(namespace, where)
        sql = f"SELECT faiss_id FROM fragments WHERE {' AND '.join(clauses)}"
        return [r[0] for r in self.db.execute(sql, params).fetchall()]

    def keyword_hits(
        self,
        words: list[str],
        k: int,
        namespace: str | None,
        where: Filter,
        approximate: bool = False,
    ) -> list[tuple[int, float]]:
        """The k live fragments whose bodies hold the most of these words, best first, as
        (FAISS id, BM25 score, higher better), within the scope. A reconstruction's words
        count only if `approximate`: the original may not have held them."""
        if not words:
            return []
        clauses, params = self._scope(namespace, where)
        if not approximate:
            clauses.append("keywords.exact = 1")
        match = " OR ".join(f'"{w}"' for w in words)
        sql = (
            "SELECT fragments.faiss_id, -bm25(keywords) FROM keywords JOIN fragments"
            " ON fragments.faiss_id = keywords.rowid WHERE keywords MATCH ? AND "
            + " AND ".join(clauses)
            + " ORDER BY bm25(keywords), fragments.id LIMIT ?"
        )
        rows = self.db.execute(sql, [match, *params, k]).fetchall()
        return [(int(fid), float(score)) for fid, score in rows]

    @staticmethod
    def _scope(namespace: str | None, where: Filter) -> tuple[list[str], list[Any]]:
        clauses, params = [LIVE], []
        if namespace is not None:
            clauses.append("namespace = ?")
            params.append(namespace)
        if where != EVERYTHING:
            sql, more = filter_sql(where)
            clauses.append(sql)
            params += more
        return clauses, params

    def forget_words(self) -> None:
        """Leave no trace of forgotten bodies in the ledger's files: the keyword index's
        segments are merged (a deleted row's words stay in them until then), freed pages
        are zeroed (secure_delete), and no old page is left in the WAL."""
        with self._transaction() as conn:
            conn.execute("INSERT INTO keywords(keywords) VALUES ('optimize')")
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def keyword_count(self) -> int:
        return self.db.execute("SELECT count(*) FROM keywords").fetchone()[0]

    def history(self, uuid: str) -> list[dict[str, Any]]:
        return list(self.db.query("SELECT * FROM history WHERE uuid = ? ORDER BY position", [uuid]))

    def counts(self) -> dict[str, Any]:
        by_status = dict(
            self.db.execute("SELECT status, count(*) FROM fragments GROUP BY status").fetchall()
        )
        namespaces = dict(
            self.db.execute(
                f"SELECT namespace, count(*) FROM fragments WHERE {LIVE}"
                " GROUP BY namespace ORDER BY namespace"
            ).fetchall()
        )
        return {"by_status": by_status, "namespaces": namespaces}

    def health(self, namespaces: list[str] | None = None) -> dict[str, Any]:
        """The honest health report (docs/self-healing.md, "Health, honestly"): a fragment
        counts 1 when every copy is whole (or exactly repaired), its fidelity when its body
        is approximate, 0 while a loss is unrepaired ("degraded": the body is still read
        exactly from the log) and 0 when no body is left ("lost").

        `namespaces`: the report of those namespaces' fragments alone (their findings and
        repairs, their calibrations), without what belongs to the whole store (the index
        file's findings, the last dream cycle); None: the whole store."""
        q = self.db.execute
        scope, params = _scope(namespaces)
        live = q(f"SELECT count(*) FROM fragments f WHERE {LIVE}{scope}", params).fetchone()[0]
        body_lost = q(
            f"SELECT count(*) FROM fragments f WHERE status = 'lost'{scope}", params
        ).fetchone()[0]
        degraded = q(
            "SELECT count(DISTINCT f.uuid) FROM fragments f JOIN faults x ON x.uuid = f.uuid"
            " WHERE f.status NOT IN ('deleted', 'forgotten', 'lost') AND x.fault != 'extra'"
            + scope,
            params,
        ).fetchone()[0]
        approx = q(
            "SELECT count(*), coalesce(sum(fidelity), 0), avg(fidelity), min(fidelity),"
            " avg(expected_recall), count(expected_recall)"
            " FROM fragments f WHERE status = 'approximate' AND NOT EXISTS"
            " (SELECT 1 FROM faults x WHERE x.uuid = f.uuid AND x.fault != 'extra')" + scope,
            params,
        ).fetchone()
        healthy = live - body_lost - degraded - approx[0]
        below_range = q(
            "SELECT count(*) FROM fragments f WHERE status = 'approximate'"
            " AND expected_recall IS NULL AND EXISTS (SELECT 1 FROM calibrations c"
            " WHERE c.namespace = f.namespace AND c.method = f.reconstructed_by"
            " AND c.curve IS NOT NULL)" + scope,
            params,
        ).fetchone()[0]
        if namespaces is None:
            by_fault = dict(
                q(
                    "SELECT copy || '/' || fault, count(*) FROM faults GROUP BY 1 ORDER BY 1"
                ).fetchall()
            )
            by_method = dict(
                q("SELECT method, count(*) FROM repairs GROUP BY 1 ORDER BY 1").fetchall()
            )
        else:  # the fragments' own findings and repairs (the index file is the store's)
            by_fault = dict(
                q(
                    "SELECT x.copy || '/' || x.fault, count(*) FROM faults x"
                    f" JOIN fragments f ON f.uuid = x.uuid WHERE 1{scope} GROUP BY 1 ORDER BY 1",
                    params,
                ).fetchall()
            )
            by_method = dict(
                q(
                    "SELECT r.method, count(*) FROM repairs r JOIN fragments f"
                    f" ON f.uuid = r.uuid WHERE 1{scope} GROUP BY 1 ORDER BY 1",
                    params,
                ).fetchall()
            )
        cycle = None
        if namespaces is None:
            cycle = next(
                iter(
                    self.db.query(
                        "SELECT * FROM cycles WHERE completed_at IS NOT NULL"
                        " ORDER BY completed_at DESC LIMIT 1"
                    )
                ),
                None,
            )
        if cycle:
            for key in ("found", "repaired", "seconds"):
                cycle[key] = json.loads(cycle[key])
        calibration = self.calibrations()
        if namespaces is not None:
            calibration = {ns: c for ns, c in calibration.items() if ns in namespaces}
        return {
            "score": 1.0 if live == 0 else (healthy + approx[1]) / live,
            "live": live,
            "by_status": {
                "healthy": healthy,
                "approximate": approx[0],
                "degraded": degraded,
                "lost": body_lost,
            },
            "servable": 1.0 if live == 0 else (live - body_lost) / live,
            "by_fault": by_fault,
            "by_method": by_method,
            "fidelity": {"mean": approx[2], "min": approx[3]},
            # The calibrated share of the original's words the approximate bodies hold.
            "expected_recall": {
                "mean": None if approx[4] is None else round(approx[4], 4),
                "calibrated": approx[5],
                "not_calibrated": approx[0] - approx[5] - below_range,
                # calibrated, but rebuilt to a fidelity below what the calibration measured
                "below_range": below_range,
            },
            "distribution": self._distribution(scope, params),
            "calibration": calibration,
            "last_cycle": cycle,
        }

    def _distribution(self, scope: str, params: list[str]) -> dict[str, Any]:
        """How the live fragments' fidelities spread (a lost body is 0, an exact one 1, a
        degraded one's body is exact), and the approximate bodies' expected recall: bins of
        (previous bound, `le`], the first from 0, as Prometheus' histogram buckets are."""
        found: dict[str, Any] = {}
        for name, column, where, bounds in (
            ("fidelity", "fidelity", LIVE, FIDELITY_BUCKETS),
            (
                "expected_recall",
                "expected_recall",
                "status = 'approximate' AND expected_recall IS NOT NULL",
                RECALL_BUCKETS,
            ),
        ):
            # A value's bin: how many bounds lie below it.
            which = " + ".join(f"({column} > {bound})" for bound in bounds[:-1])
            rows = self.db.execute(
                f"SELECT {which}, count(*), sum({column}) FROM fragments f"
                f" WHERE {where}{scope} GROUP BY 1",
                params,
            ).fetchall()
            counts = {b: n for b, n, _ in rows}
            bins = [{"le": bound, "count": counts.get(i, 0)} for i, bound in enumerate(bounds)]
            found[name] = {
                "bins": bins,
                "count": sum(b["count"] for b in bins),
                "sum": round(float(sum(t or 0.0 for b, _, t in rows if b is not None)), 6),
            }
        return found

    def recent_history(
        self, namespaces: list[str] | None, limit: int, before: int | None
    ) -> list[dict[str, Any]]:
        """The latest events of fragments (in these namespaces), newest first, with each
        fragment's id and namespace: what happened to the store lately, by log position."""
        scope, params = _scope(namespaces)
        if before is not None:
            scope += " AND h.position < ?"
            params = [*params, before]
        return list(
            self.db.query(
                "SELECT h.position, h.version, h.kind, h.at, h.detail, f.id, f.namespace"
                " FROM history h JOIN fragments f ON f.uuid = h.uuid"
                f" WHERE 1{scope} ORDER BY h.position DESC LIMIT ?",
                [*params, limit],
            )
        )

    _SCRUB_COLUMNS = (
        "uuid",
        "id",
        "faiss_id",
        "namespace",
        "version",
        "status",
        "content_hash",
        "embedding_fingerprint",
        "cache_digest",
        "metadata",
        "written_at",
    )

    # What tells whether a copy is right, and nothing more (no metadata): a whole-store scan
    # reads these for every fragment; a difference is then diagnosed from the full row.
    # An update of these marks a row changed (the scan clock's trigger).
    _SCAN_COLUMNS = ("uuid", "id", "faiss_id", "status", "embedding_fingerprint", "cache_digest")

    def scan_changes(self, since: int = 0) -> ScanChanges:
        """Every fragment whose scan columns changed after the scan clock read `since` (0:
        every fragment), as arrays (ScanRows: a scrub keeps one row per fragment), read a
        chunk at a time; with the clock and the count of fragments as of then."""
        with self._reading() as conn:
            tick, generation = conn.execute("SELECT tick, generation FROM scan_clock").fetchone()
            (count,) = conn.execute("SELECT count(*) FROM fragments").fetchone()
            cursor = conn.execute(
                "SELECT replace(uuid, '-', ''), faiss_id, NOT (" + LIVE + "),"
                " coalesce(embedding_fingerprint, 0), cache_digest FROM fragments"
                " WHERE changed > ?",
                [since],
            )
            parts = [ScanRows.of(rows) for rows in iter(lambda: cursor.fetchmany(SCAN_CHUNK), [])]
        return ScanChanges(
            tick, count, ScanRows.joined(parts) if parts else NO_SCAN_ROWS, generation
        )

    def rows_for(self, uuids: Iterable[str]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for chunk in _chunks(sorted(uuids), 500):
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"SELECT {', '.join(self._SCRUB_COLUMNS)} FROM fragments WHERE uuid IN ({marks})",
                chunk,
            )
            found += [dict(zip(self._SCRUB_COLUMNS, row)) for row in rows.fetchall()]
        return found

    def faiss_ids_known(self, ids: list[int]) -> list[int]:
        known: list[int] = []
        for chunk in _chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            known += [
                r[0]
                for r in self.db.execute(
                    f"SELECT faiss_id FROM fragments WHERE faiss_id IN ({marks})", chunk
                )
            ]
        return known

    def live_rows(self, namespace: str | None = None) -> Iterator[dict[str, Any]]:
        where, params = LIVE, []
        if namespace is not None:
            where += " AND namespace = ?"
            params.append(namespace)
        yield from self.db["fragments"].rows_where(where, params, order_by="written_at, uuid")

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        """Every row of every table, in a stable order (for comparing two ledgers)."""
        # Not the scan clock's stamps: they count this ledger's own changes, not the log's.
        columns = [c for c in self.db["fragments"].columns_dict if c != "changed"]
        return {
            "fragments": list(
                self.db.query(f"SELECT {', '.join(columns)} FROM fragments ORDER BY uuid")
            ),
            "history": list(self.db.query("SELECT * FROM history ORDER BY position")),
            "metadata_index": list(
                self.db.query("SELECT * FROM metadata_index ORDER BY uuid, key")
            ),
            "keywords": list(
                self.db.query("SELECT rowid, text, exact FROM keywords ORDER BY rowid")
            ),
            "row_checks": list(self.db.query("SELECT * FROM row_checks ORDER BY uuid")),
            # The triggers and indexes too: a replay in bulk makes them again (_in_bulk).
            "schema": list(
                self.db.query("SELECT type, name, sql FROM sqlite_master ORDER BY name")
            ),
        }

    def close(self) -> None:
        self.db.conn.close()


def _scope(namespaces: list[str] | None) -> tuple[str, list[str]]:
    """A condition on the fragments (aliased f) of these namespaces (None: all), to append
    to a WHERE clause, and its parameters."""
    if namespaces is None:
        return "", []
    return f" AND f.namespace IN ({','.join('?' * len(namespaces))})", list(namespaces)


INSERT_NEW_FRAGMENT = (
    "INSERT OR REPLACE INTO fragments(uuid, id, faiss_id, namespace, version, status,"
    " content_hash, embedding_fingerprint, cache_digest, metadata, fidelity,"
    " written_at, updated_at, last_method, changed)"
    " VALUES (?, ?, ?, ?, ?, 'healthy', ?, ?, ?, ?, 1.0, ?, ?,"
    f" {LAST_REPAIR_METHOD}, (SELECT tick + 1 FROM scan_clock))"
)


def _new_fragment_row(
    uuid: str, event: Any, at: str, readable: bool, fingerprint: int | None = None
) -> tuple[Any, ...]:
    """INSERT_NEW_FRAGMENT's values for the event that first names a fragment."""
    return (
        uuid,
        event.key,
        faiss_id(event.originator_id),
        event.namespace,
        event.originator_version,
        *_body_values(uuid, event, readable, fingerprint),
        at,
        at,
        uuid,
    )


def _readable(event: Any) -> bool:
    """Whether an event's body can be read (its text is None where it was sealed and its key
    has been destroyed)."""
    return getattr(event, "text", "") is not None


def _body_values(
    uuid: str, event: Any, readable: bool, fingerprint: int | None = None
) -> tuple[str, int, str, str]:
    """A body's columns (content_hash, embedding_fingerprint, cache_digest, metadata); a
    sealed body whose key is destroyed keeps only its content hash. `fingerprint`: its
    embedding's, if already computed."""
    if fingerprint is None:
        fingerprint = embedding_fingerprint(event.embedding) if readable else 0
    return (
        event.content_hash,
        fingerprint,
        _cache_digest(uuid, event.key, event.namespace, event) if readable else "",
        canonical_json(event.metadata if readable else {}),
    )


def _naming_detail(kind: str, event: Any) -> tuple[str, dict[str, Any]]:
    """The history entry of the event that first names a fragment."""
    detail = {"namespace": event.namespace, "content_hash": event.content_hash}
    if getattr(event, "recovered", None):  # recorded again from a surviving copy
        kind, detail["recovered"] = "recovered", event.recovered
    return kind, detail


def _close_findings(conn: sqlite3.Connection, uuid: str) -> None:
    """Answer a fragment's open findings, on an event that settles all its copies at once (a
    new body, a deletion, a forgetting). An extra copy stays owed its removal whatever the
    body is."""
    conn.execute("DELETE FROM faults WHERE uuid = ? AND fault != 'extra'", [uuid])


def _cache_digest(uuid: str, key: str, namespace: str, event: Any) -> str:
    """The digest of the cache file this content must have: a scrub compares file digests."""
    return file_digest(rendered.file(uuid, key, namespace, event))


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


# A fragment's metadata fields as metadata_index rows: `row` a fragments row (NEW in a
# trigger), `source` the tables it comes from ahead of json_each (empty in a trigger).
METADATA_FIELDS = (
    "INSERT INTO metadata_index(uuid, key, kind, num, txt) SELECT {row}.uuid, j.key,"
    " CASE j.type WHEN 'integer' THEN 'number' WHEN 'real' THEN 'number'"
    " WHEN 'text' THEN 'string' WHEN 'true' THEN 'boolean' WHEN 'false' THEN 'boolean'"
    " WHEN 'null' THEN 'null' ELSE 'list' END,"
    " CASE j.type WHEN 'integer' THEN j.value WHEN 'real' THEN j.value"
    " WHEN 'true' THEN 1 WHEN 'false' THEN 0 END,"
    " CASE j.type WHEN 'text' THEN j.value WHEN 'array' THEN json(j.value) END"
    " FROM {source}json_each({row}.metadata) j WHERE {row}.metadata IS NOT NULL"
)


def filter_sql(node: Filter) -> tuple[str, list[Any]]:
    """A filter as a condition on a fragments row, over the metadata index."""
    if isinstance(node, AllOf):
        parts = [filter_sql(p) for p in node.parts]
        return ("(" + " AND ".join(s for s, _ in parts) + ")" if parts else "1"), [
            v for _, values in parts for v in values
        ]
    if isinstance(node, AnyOf):
        parts = [filter_sql(p) for p in node.parts]
        return "(" + " OR ".join(s for s, _ in parts) + ")", [v for _, vs in parts for v in vs]
    has = "uuid IN (SELECT uuid FROM metadata_index WHERE key = ?{})"
    lacks = "uuid NOT IN (SELECT uuid FROM metadata_index WHERE key = ?{})"
    if node.op == "$exists":
        return (has if node.value else lacks).format(""), [node.key]
    if node.op in ("$eq", "$ne", "$in", "$nin"):
        values = node.value if node.op in ("$in", "$nin") else [node.value]
        tests = [_equal_sql(v) for v in values]
        condition = " AND (" + " OR ".join(t for t, _ in tests) + ")"
        template = has if node.op in ("$eq", "$in") else lacks
        return template.format(condition), [node.key, *(p for _, ps in tests for p in ps)]
    operator = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}[node.op]
    column, kind_ = ("txt", "string") if isinstance(node.value, str) else ("num", "number")
    return has.format(f" AND kind = '{kind_}' AND {column} {operator} ?"), [node.key, node.value]


def _equal_sql(value: Any) -> tuple[str, list[Any]]:
    if value is None:
        return "kind = 'null'", []
    if isinstance(value, bool):
        return "(kind = 'boolean' AND num = ?)", [int(value)]
    if isinstance(value, (int, float)):
        return "(kind = 'number' AND num = ?)", [value]
    if isinstance(value, str):
        return "(kind = 'string' AND txt = ?)", [value]
    return "(kind = 'list' AND txt = json(?))", [canonical_json(value)]


def _keywords(conn: sqlite3.Connection, uuid: str, text: str | None, exact: bool = True) -> None:
    """A fragment's body in the keyword index: its text (exact, or a reconstruction), or none."""
    rowid = faiss_id(uuid)
    conn.execute("DELETE FROM keywords WHERE rowid = ?", [rowid])
    if text is not None:
        conn.execute(
            "INSERT INTO keywords(rowid, text, exact) VALUES (?, ?, ?)", [rowid, text, int(exact)]
        )


def canonical_json(value: Any) -> str:
    """The one JSON spelling of a value: sorted keys, no spaces (for comparing copies)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _int_column(cursor: sqlite3.Cursor) -> np.ndarray:
    """A query's one integer column as an int64 array, read a chunk at a time."""
    parts = [
        np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        for rows in iter(lambda: cursor.fetchmany(SCAN_CHUNK), [])
    ]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]

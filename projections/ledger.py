"""HealthLedger: SQLite tables (sqlite-utils) with one row per fragment and one per event.

Rows and the ledger's position change in one transaction, so the ledger never shows half a
batch, and several processes sharing a home never apply an event twice.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from domain import Fragment
from projections.index import faiss_id
from projections.runner import Batch

KIND_OF = {
    Fragment.FragmentWritten: "written",
    Fragment.FragmentRevised: "revised",
    Fragment.FragmentDeleted: "deleted",
}


class HealthLedger:
    name = "ledger"

    def __init__(self, path: Path):
        self.path = Path(path)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        self.db = sqlite_utils.Database(conn)
        self._create()

    def _create(self) -> None:
        db = self.db
        db["fragments"].create(
            {
                "uuid": str, "id": str, "faiss_id": int, "namespace": str, "version": int,
                "status": str, "content_hash": str, "metadata": str, "fidelity": float,
                "last_fault": str, "last_method": str, "written_at": str, "updated_at": str,
            },
            pk="uuid", if_not_exists=True,
        )
        db["history"].create(
            {"position": int, "uuid": str, "version": int, "kind": str, "at": str,
             "detail": str},
            pk="position", if_not_exists=True,
        )
        db["positions"].create({"name": str, "position": int}, pk="name", if_not_exists=True)
        db["fragments"].create_index(["id"], unique=True, if_not_exists=True)
        db["fragments"].create_index(["faiss_id"], if_not_exists=True)
        db["fragments"].create_index(["namespace", "status", "content_hash"], if_not_exists=True)
        db["history"].create_index(["uuid", "version"], if_not_exists=True)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @property
    def position(self) -> int:
        row = self.db.execute(
            "SELECT position FROM positions WHERE name = ?", [self.name]
        ).fetchone()
        return row[0] if row else 0

    def apply(self, batch: Batch) -> None:
        with self._transaction() as conn:
            # Read the position inside the write transaction: another process sharing this
            # home may have applied part of the batch already.
            row = conn.execute("SELECT position FROM positions WHERE name = ?",
                               [self.name]).fetchone()
            applied = row[0] if row else 0
            for position, event in batch:
                if position <= applied:
                    continue
                self._apply_one(conn, position, event)
            conn.execute(
                "INSERT INTO positions(name, position) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET position = max(position, excluded.position)",
                [self.name, batch[-1][0]],
            )

    def _apply_one(self, conn: sqlite3.Connection, position: int, event: Any) -> None:
        kind = KIND_OF.get(type(event))
        if kind is None:
            return
        uuid = str(event.originator_id)
        at = event.timestamp.isoformat()
        if kind == "written":
            conn.execute(
                "INSERT OR REPLACE INTO fragments(uuid, id, faiss_id, namespace, version, status,"
                " content_hash, metadata, fidelity, written_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, 'healthy', ?, ?, 1.0, ?, ?)",
                [uuid, event.key, faiss_id(uuid), event.namespace, event.originator_version,
                 event.content_hash, _json(event.metadata), at, at],
            )
            detail = {"namespace": event.namespace, "content_hash": event.content_hash}
        elif kind == "revised":
            conn.execute(
                "UPDATE fragments SET version = ?, content_hash = ?, metadata = ?, updated_at = ?"
                " WHERE uuid = ?",
                [event.originator_version, event.content_hash, _json(event.metadata), at, uuid],
            )
            detail = {"content_hash": event.content_hash}
        else:
            conn.execute(
                "UPDATE fragments SET version = ?, status = 'deleted', updated_at = ?"
                " WHERE uuid = ?",
                [event.originator_version, at, uuid],
            )
            detail = {"reason": event.reason}
        conn.execute(
            "INSERT OR REPLACE INTO history(position, uuid, version, kind, at, detail)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [position, uuid, event.originator_version, kind, at, _json(detail)],
        )

    def reset(self) -> None:
        with self._transaction() as conn:
            for table in ("fragments", "history", "positions"):
                conn.execute(f"DELETE FROM {table}")

    # -- plain queries: the read model -----------------------------------------------------------

    def row(self, key: str) -> dict[str, Any] | None:
        return next(self.db["fragments"].rows_where("id = ?", [key]), None)

    def live_key_with_content(self, namespace: str, content_hash: str) -> str | None:
        row = self.db.execute(
            "SELECT id FROM fragments WHERE namespace = ? AND status != 'deleted'"
            " AND content_hash = ? ORDER BY written_at LIMIT 1",
            [namespace, content_hash],
        ).fetchone()
        return row[0] if row else None

    def rows_by_faiss_ids(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        found: dict[int, dict[str, Any]] = {}
        for chunk in _chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            for row in self.db.query(
                f"SELECT * FROM fragments WHERE faiss_id IN ({marks})", chunk
            ):
                found[row["faiss_id"]] = row
        return found

    def faiss_ids_where(self, namespace: str | None, where: dict[str, Any]) -> list[int]:
        """Ids of live fragments in a namespace whose metadata equals every value in `where`."""
        clauses, params = ["status != 'deleted'"], []
        if namespace is not None:
            clauses.append("namespace = ?")
            params.append(namespace)
        for key, value in where.items():
            path = "$." + json.dumps(key)
            if value is None or isinstance(value, bool):
                clauses.append("json_type(metadata, ?) = ?")
                params += [path, "null" if value is None else ("true" if value else "false")]
            elif isinstance(value, list):
                clauses.append("json_type(metadata, ?) = 'array' AND json_extract(metadata, ?)"
                               " = json(?)")
                params += [path, path, _json(value)]
            elif isinstance(value, str):
                clauses.append("json_type(metadata, ?) = 'text' AND json_extract(metadata, ?) = ?")
                params += [path, path, value]
            else:
                clauses.append("json_type(metadata, ?) IN ('integer', 'real')"
                               " AND json_extract(metadata, ?) = ?")
                params += [path, path, value]
        sql = f"SELECT faiss_id FROM fragments WHERE {' AND '.join(clauses)}"
        return [r[0] for r in self.db.execute(sql, params).fetchall()]

    def history(self, uuid: str) -> list[dict[str, Any]]:
        return list(self.db.query(
            "SELECT * FROM history WHERE uuid = ? ORDER BY position", [uuid]
        ))

    def counts(self) -> dict[str, Any]:
        by_status = dict(self.db.execute(
            "SELECT status, count(*) FROM fragments GROUP BY status").fetchall())
        namespaces = dict(self.db.execute(
            "SELECT namespace, count(*) FROM fragments WHERE status != 'deleted'"
            " GROUP BY namespace ORDER BY namespace").fetchall())
        return {"by_status": by_status, "namespaces": namespaces}

    def live_rows(self, namespace: str | None = None) -> Iterator[dict[str, Any]]:
        where, params = "status != 'deleted'", []
        if namespace is not None:
            where += " AND namespace = ?"
            params.append(namespace)
        yield from self.db["fragments"].rows_where(where, params, order_by="written_at, uuid")

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        """Every row of every table, in a stable order (for comparing two ledgers)."""
        return {
            "fragments": list(self.db.query("SELECT * FROM fragments ORDER BY uuid")),
            "history": list(self.db.query("SELECT * FROM history ORDER BY position")),
        }

    def close(self) -> None:
        self.db.conn.close()


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]

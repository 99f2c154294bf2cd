"""When the log itself is gone: saying so, and `recover`.

A home whose log (`events.sqlite`) is deleted, truncated or replaced, while its cache, index and
ledger survive, still holds every live fragment's text and vector. Opening it says what
happened, counts what survives and changes nothing (LogLost). `recover` then builds a new log
from the surviving copies:

- the damaged log is moved aside, never deleted (`events.sqlite.lost-<time>`), and so is the
  old ledger (the projections are rebuilt from the new log);
- the new log opens with a HistoryLost event: the history before it is declared lost, in the
  log itself, with what survived and what could not be recovered; `verify` starts a new chain
  there;
- each live fragment whose exact text survives in a cache file is recorded with a
  FragmentWritten that says it was recovered: from which copy, and whether its checksum matched
  the ledger's record (or only the file's own, where the ledger is lost too); its vector comes
  from the index where the ledger vouches for it, else the model embeds the text again;
- deleted and forgotten fragments stay gone (a forgotten body's key is destroyed: it cannot be
  read from any copy); a live fragment with no exact text left is named in the report and in
  HistoryLost, never made up.

This is for a home whose log is its own SQLite file: a PostgreSQL log is the database's to keep
(its backups and replicas).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from carma.domain import (
    Fragment,
    InvalidInput,
    LogHistory,
    LogLost,
    StoreProfile,
    content_hash,
)
from carma.embedding import Embedder
from carma.home import Home
from carma.log.sqlite import strict_text
from carma.projections import FragmentCache, VectorIndex
from carma.projections.files import atomic_write
from carma.projections.index import embedding_fingerprint, faiss_id

BATCH = 500


@dataclass(frozen=True)
class LogState:
    """What the home's log file holds, read without changing a byte of it."""

    fault: str | None  # None: fine; else "missing", "unreadable" or "empty"
    position: int  # the log's last position (0 when it has none)
    projected: int  # the furthest position the home's projections had applied


def log_state(home: Home) -> LogState:
    projected = _projected_position(home)
    if home.binding.is_file():  # its log is in PostgreSQL: no file of its own to lose
        return LogState(None, 0, projected)
    if not home.events.exists():
        return LogState("missing" if projected or _any_cache_file(home) else None, 0, projected)
    try:
        with closing(_read_only(home.events)) as conn:
            tables = {t for (t,) in conn.execute("SELECT name FROM sqlite_master")}
            position = 0
            if "stored_events" in tables:
                position = conn.execute("SELECT max(rowid) FROM stored_events").fetchone()[0] or 0
    except sqlite3.DatabaseError:
        return LogState("unreadable", 0, projected)
    if position == 0 and projected > 0:
        return LogState("empty", position, projected)
    # A log that still holds events, fewer than its projections applied, opens: events cut
    # off its end or renumbered are for `verify` to show (its chain), not a lost log.
    return LogState(None, position, projected)


def check_log(home: Home) -> None:
    """LogLost if the home's projections hold fragments its log no longer has."""
    state = log_state(home)
    if state.fault is None:
        return
    found = survivors(home)
    what = {
        "missing": "is missing",
        "unreadable": "is not a readable SQLite database",
        "empty": "holds no events",
    }[state.fault]
    raise LogLost(
        f"the log {home.events} {what}, but its projections had applied it to position "
        f"{state.projected}: {found['fragments']} live fragment(s) survive (cache files "
        f"{found['cache_files']}, ledger rows {found['ledger_rows']}, index vectors "
        f"{found['index_vectors']}). Every file is kept as it is; `carma recover --home "
        f"{home.path}` builds a new log from them"
    )


def survivors(home: Home) -> dict[str, int]:
    """What survives of the store beside its log, counted."""
    rows = _ledger_rows(home)
    cache = FragmentCache(home.cache) if home.cache.is_dir() else None
    files = sum(1 for _ in cache.files()) if cache is not None else 0
    live = [r for r in rows.values() if r["status"] not in ("deleted", "forgotten")]
    return {
        "fragments": len(live) if rows else files,
        "cache_files": files,
        "ledger_rows": len(live),
        "index_vectors": _index_header(home).get("count", 0),
    }


def recover(home: Home, embedder: Embedder, open_log: Any) -> dict[str, Any]:
    """Build a new log in `home` from its surviving copies (see the module's docstring).
    `open_log(home)` opens a new log there (the composition root's). Returns the report."""
    state = log_state(home)
    if state.fault is None:
        raise InvalidInput(
            f"the log {home.events} is there and whole: nothing to recover"
            if home.events.exists()
            else f"no store at {home.path}: nothing to recover"
        )
    rows = _ledger_rows(home)
    copies = _cache_copies(home)
    vectors = _index_vectors(home, embedder.dimension)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    kept = _move_aside(home, stamp)
    recovered: list[tuple[Any, dict[str, str], np.ndarray | None]] = []  # copy, how, vector
    unrecovered: dict[str, str] = {}
    counts = {"verified": 0, "unverified": 0, "vector_from_index": 0, "vector_from_model": 0}
    uuids = list(rows) if rows else [c.uuid for c in copies.values()]
    for uuid in uuids:
        row = rows.get(uuid)
        if row is not None and row["status"] in ("deleted", "forgotten"):
            continue  # gone before the log was: stays gone
        copy = copies.get(uuid)
        if copy is None or content_hash(copy.text) != copy.content_hash:
            unrecovered[row["id"] if row else uuid] = "no exact copy of its text survives"
            continue
        if row is not None and copy.content_hash != row["content_hash"]:
            unrecovered[row["id"]] = "its cache file holds another text than the ledger records"
            continue
        vector = vectors.get(faiss_id(uuid))
        vouched = (
            row is not None
            and vector is not None
            and row["embedding_fingerprint"]
            and embedding_fingerprint(vector) == row["embedding_fingerprint"]
        )
        counts["verified" if row is not None else "unverified"] += 1
        counts["vector_from_index" if vouched else "vector_from_model"] += 1
        how = {"copy": "cache", "verified_against": "ledger" if row else "file"}
        recovered.append((copy, how, vector if vouched else None))
    log, _ = open_log(home)
    try:
        model = {"name": embedder.name, "dimension": embedder.dimension}
        history = LogHistory(
            reason=f"the log was {state.fault}",
            lost_at=state.position,
            projected=state.projected,
            kept=[p.name for p in kept],
            recovered=len(recovered),
            unrecovered=dict(sorted(unrecovered.items())),
        )
        log.record(StoreProfile(model=model["name"], dimension=model["dimension"]), history)
        for start in range(0, len(recovered), BATCH):
            batch = recovered[start : start + BATCH]
            missing = [copy.text for copy, _, vector in batch if vector is None]
            embedded = dict(zip(missing, embedder.embed(missing))) if missing else {}
            fragments = []
            for copy, how, vector in batch:
                chosen = vector if vector is not None else embedded[copy.text]
                fragments.append(
                    Fragment(
                        key=copy.key,
                        namespace=copy.namespace,
                        text=copy.text,
                        metadata=copy.metadata,
                        content_hash=copy.content_hash,
                        embedding=np.asarray(chosen, dtype="<f4").tobytes(),
                        model=model,
                        recovered={**how, "was_version": copy.version},
                    )
                )
            log.mapper.keys.create_many([str(f.id) for f in fragments])
            log.record(*fragments)
        position = log.position()
    finally:
        log.close()
    # The cache's files are rewritten from the new log (the same bytes for the same bodies):
    # its position was the old log's.
    if home.cache.is_dir():
        atomic_write(home.cache / "POSITION", json.dumps({"position": 0}).encode())
    return {
        "fault": state.fault,
        "kept": [str(p) for p in kept],
        "recovered": len(recovered),
        **counts,
        "unrecovered": dict(sorted(unrecovered.items())),
        "position": position,
    }


# -- reading what survives, without changing it ------------------------------------------------


def survivors_dimension(home: Home) -> int | None:
    """The dimension of the surviving index's vectors (None: no readable index)."""
    return _index_header(home).get("dimension")


def _projected_position(home: Home) -> int:
    positions = [_index_header(home).get("position", 0)]
    try:
        positions.append(int(json.loads((home.cache / "POSITION").read_text())["position"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if home.ledger.exists():
        try:
            with closing(_read_only(home.ledger)) as conn:
                positions += [
                    p
                    for (p,) in conn.execute(
                        # (a damaged row may hold anything there: text, not UTF-8)
                        "SELECT position FROM positions WHERE typeof(position) = 'integer'"
                    )
                ]
        except (sqlite3.DatabaseError, UnicodeDecodeError):  # (SQLite's message may quote
            pass  # the damaged schema's bytes, which are not UTF-8 either)
    return max(int(p) for p in positions)


def _read_only(path: Path) -> sqlite3.Connection:
    """A connection that changes nothing on disk: without a WAL beside the file, SQLite is
    told the file is immutable, so it makes no -wal or -shm file either."""
    wal = path.with_name(path.name + "-wal")
    immutable = "" if wal.exists() else "&immutable=1"
    conn = sqlite3.connect(f"file:{path}?mode=ro{immutable}", uri=True)
    conn.text_factory = strict_text
    return conn


def _any_cache_file(home: Home) -> bool:
    return home.cache.is_dir() and next(home.cache.glob("??/*.json"), None) is not None


def _index_header(home: Home) -> dict[str, Any]:
    try:
        with open(home.index / "vectors.faiss", "rb") as f:
            header = json.loads(f.readline())
        return header if isinstance(header, dict) else {}
    except (OSError, ValueError):
        return {}


def _ledger_rows(home: Home) -> dict[str, dict[str, Any]]:
    """The ledger's row of each fragment, by uuid ({} when the ledger is lost too)."""
    if not home.ledger.exists():
        return {}
    try:
        with closing(_read_only(home.ledger)) as conn:
            conn.row_factory = sqlite3.Row
            return {
                r["uuid"]: dict(r)
                for r in conn.execute(
                    "SELECT uuid, id, namespace, status, content_hash, embedding_fingerprint"
                    " FROM fragments"
                )
            }
    except sqlite3.DatabaseError:
        return {}


def _cache_copies(home: Home) -> dict[str, Any]:
    if not home.cache.is_dir():
        return {}
    cache = FragmentCache(home.cache)
    copies = {}
    for path in cache.files():
        copy, _ = cache.inspect(path.stem)
        if copy is not None:
            copies[copy.uuid] = copy
    return copies


def _index_vectors(home: Home, dimension: int) -> dict[int, np.ndarray]:
    index = VectorIndex(home.index, dimension)
    if index.load_error is not None:
        return {}
    return {int(i): index.vector(int(i)) for i in index.ids()}


def _move_aside(home: Home, stamp: str) -> list[Path]:
    """The damaged log and the old ledger, kept under new names; returns where."""
    kept = []
    for path in sorted(home.path.glob("events.sqlite*")) + sorted(home.path.glob("ledger.sqlite*")):
        if ".lost-" in path.name:
            continue
        target = path.with_name(f"{path.name}.lost-{stamp}")
        os.replace(path, target)
        kept.append(target)
    index_file = home.index / "vectors.faiss"
    if index_file.exists():
        target = index_file.with_name(f"vectors.faiss.lost-{stamp}")
        os.replace(index_file, target)
        kept.append(target)
    return kept

"""The home's whole files besides the cache and the vector index: checked and repaired.

Each is a copy that can always be repaired, so damage to it must never go unseen:
- the health ledger (`ledger.sqlite`): SQLite's page checks (`quick_check`; and, at the first
  scrub of a process, every deep one and every `log_passes`-th, `integrity_check`: every
  index against its table), each row against the checksum its triggers keep, and FTS5's
  integrity check of its keyword index; the page and row checks on a thread of their own,
  beside the dream cycle's scan of the copies. A damaged ledger is rebuilt from the log beside the
  old one and swapped in; reads and writes go on meanwhile (a read the damaged file cannot
  answer is answered from the log, a write is acknowledged by the log).
- the keyword index (in the ledger): its rows against the ledger's live bodies. Rebuilt from
  the log's bodies.
- the fragments' key store and its mirror (`keys/`, `keys.mirror/`): page checks, and the
  two compared key by key. A damaged copy is written again from the rows of both copies that
  prove themselves: a key is taken only if it opens its fragment's sealed event in the log
  (AES-GCM authenticates: a wrong key cannot), never by a row's position in a file.

Each finding is recorded once as a ProjectionLost event and its repair as ProjectionRepaired,
so that `health` counts them by copy and the audit log shows both.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any
from uuid import UUID

from carma.domain import ConflictError, Fragment, ProjectionCopy, Replica
from carma.log import MemoryLog
from carma.projections import HealthLedger, ProjectionRunner


class HomeFiles:
    """Checks and repairs of the ledger, its keyword index and the key store, recorded in
    the log (the dream cycle calls `check`, then `repair` for what it found)."""

    def __init__(
        self,
        log: MemoryLog,
        ledger: HealthLedger,
        runner: ProjectionRunner,
        lock: threading.RLock,
        replica: Replica,
        catch_up: Callable[[], Any],
    ):
        self.log = log
        self.ledger = ledger
        self.runner = runner
        self._lock = lock
        self.replica = replica
        self._catch_up = catch_up

    # -- finding --------------------------------------------------------------------------------

    def check_pages(self, whole: bool = True) -> Future[str | None]:
        """The ledger's pages and rows checked (HealthLedger.check_pages: the longest part of
        a whole check, 19.7 s at a million fragments) in a process of its own, waited for on
        a thread, to hand to `check`: it runs on the other core, under no lock of the store's
        and with an interpreter of its own, while the caller scans the copies."""
        checked: Future[str | None] = Future()

        def run() -> None:
            try:
                checked.set_result(self.ledger.check_pages_apart(whole))
            except BaseException as exc:  # (the caller's result() raises it)
                checked.set_exception(exc)

        threading.Thread(target=run, name="carma-ledger-check", daemon=True).start()
        return checked

    def check(
        self, whole: bool = True, pages: Future[str | None] | None = None
    ) -> dict[str, tuple[str, str]]:
        """Damaged files: copy -> (fault, what was seen). `whole` adds SQLite's check of
        every index of the ledger against its table (see HealthLedger.check_pages);
        `pages`: that check of the ledger, if check_pages began it already."""
        found: dict[str, tuple[str, str]] = {}
        pages_problem = self.ledger.check_pages(whole) if pages is None else pages.result()
        with self._lock:
            problem = (
                pages_problem
                or self.ledger.check_keywords()
                or self.runner.errors.get(self.ledger.name)
            )
            if problem and _malformed(problem):
                found["ledger"] = ("corrupt", problem)
            else:
                strays = self.ledger.keyword_membership()
                if strays:
                    found["keywords"] = ("stale", f"{len(strays)} fragment(s) misindexed")
        keys = self.log.mapper.keys
        if hasattr(keys, "check"):
            for copy, (fault, detail) in keys.check().items():
                found[copy] = (fault, detail)
        return found

    def record_lost(self, found: dict[str, tuple[str, str]], cycle_id: UUID | None) -> int:
        recorded = 0
        for copy, (fault, detail) in found.items():
            aggregate = self.log.projection_copy(copy, self.replica)
            if aggregate.mark_lost(fault, detail, cycle_id):
                self._record(aggregate)
                recorded += 1
        return recorded

    def note_opened_damaged(self, ledger_damage: str | None) -> None:
        """Files found damaged as the store opened (too damaged to open: begun again): each
        recorded as found, then repaired at once (the ledger replays from the log as it
        catches up; a key store copy is written again from the other)."""
        found: dict[str, tuple[str, str]] = {}
        if ledger_damage:
            found["ledger"] = ("corrupt", ledger_damage)
        keys = self.log.mapper.keys
        for copy, why in getattr(keys, "opened_damaged", {}).items():
            found[copy] = ("corrupt", why)
        if not found:
            return
        self.record_lost(found, None)
        self._catch_up()
        for copy in found:
            method = (
                "rebuilt-from-log"
                if copy == "ledger"
                else keys.repair(copy, self._opens, self._forgotten)
            )
            aggregate = self.log.projection_copy(copy, self.replica)
            if aggregate.repaired(method, 0.0, None):
                self._record(aggregate)
        self._catch_up()

    # -- repairing ------------------------------------------------------------------------------

    def repair(self, copies: list[str], cycle_id: UUID | None) -> dict[str, int]:
        """Repair each damaged file; returns repairs per 'copy/method'."""
        repaired: dict[str, int] = {}
        for copy in copies:
            started = time.perf_counter()
            if copy == "ledger":
                method = self._rebuild_ledger()
            elif copy == "keywords":
                method = self._rebuild_keywords()
            else:
                method = self.log.mapper.keys.repair(copy, self._opens, self._forgotten)
            aggregate = self.log.projection_copy(copy, self.replica)
            if aggregate.repaired(method, round(time.perf_counter() - started, 4), cycle_id):
                self._record(aggregate)
            repaired[f"{copy}/{method}"] = 1
        self._catch_up()
        return repaired

    def _rebuild_ledger(self) -> str:
        """A new ledger replayed from the log beside the damaged one, then swapped in: the
        long replay runs outside the store's lock (queries go on, served from the log where
        the damaged file fails them), the short tail and the swap under it."""
        rebuilt = self.ledger.path.with_name(self.ledger.path.name + ".rebuilding")
        for stale in rebuilt.parent.glob(rebuilt.name + "*"):
            stale.unlink()
        fresh = HealthLedger(rebuilt, self.replica)
        try:
            replay = ProjectionRunner(self.runner.read, self.runner.head, [fresh])
            replay.catch_up(strict=True)
            with self._lock:
                replay.catch_up(strict=True)
                fresh.close()
                self.ledger.replace_with(rebuilt)
                self.runner.errors.pop(self.ledger.name, None)
        except BaseException:
            fresh.close()
            raise
        return "rebuilt-from-log"

    def _rebuild_keywords(self) -> str:
        with self._lock:
            rows = list(
                self.ledger.db.execute(
                    "SELECT uuid FROM fragments WHERE status IN ('healthy', 'approximate')"
                )
            )
        uuids = [UUID(r[0]) for r in rows]
        bodies = []
        for start in range(0, len(uuids), 500):
            found = self.log.fragments_by_uuid(uuids[start : start + 500])
            bodies += [
                (str(u), f.text, not f.approximate)
                for u, f in found.items()
                if isinstance(f, Fragment) and f.text is not None and not f.deleted
            ]
        with self._lock:
            self.ledger.rebuild_keywords(bodies)
        return "rebuilt-from-log"

    def _opens(self, uuid: str, key: bytes) -> bool | None:
        """Whether a key proves itself against the log."""
        fragment = _fragment_id(uuid)
        return False if fragment is None else self.log.key_opens(fragment, key)

    def _forgotten(self, uuids: list[str]) -> set[str]:
        """Of these fragments, those the log says are forgotten (their keys must stay gone),
        and any "uuid" that is none: a damaged row's, naming no fragment."""
        ids = {u: _fragment_id(u) for u in uuids}
        found = self.log.fragments_by_uuid([i for i in ids.values() if i is not None])
        return {u for u, i in ids.items() if i is None} | {
            str(u) for u, f in found.items() if isinstance(f, Fragment) and f.forgotten
        }

    def _record(self, aggregate: ProjectionCopy) -> None:
        try:
            self.log.record(aggregate)
        except ConflictError:
            pass  # another process recorded the same finding first


def _fragment_id(uuid: str) -> UUID | None:
    """The fragment a key store row names, or None if its uuid is no UUID (damaged bytes)."""
    try:
        return UUID(uuid)
    except ValueError:
        return None


def _malformed(problem: str) -> bool:
    """Whether an error says the file itself is damaged (not busy, not full)."""
    text = problem.lower()
    return not any(word in text for word in ("locked", "busy", "full", "readonly"))


def open_ledger(path: Path, replica: Replica) -> tuple[HealthLedger, str | None]:
    """The ledger at `path`; if SQLite cannot even open it (its header or schema damaged),
    the damaged file is moved aside and a new one begun (the log replays into it): returns
    why, so that the damage is recorded."""
    try:
        return HealthLedger(path, replica), None
    except sqlite3.DatabaseError as exc:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        for suffix in ("", "-wal", "-shm"):
            damaged = Path(f"{path}{suffix}")
            if damaged.exists():
                damaged.replace(damaged.with_name(f"{damaged.name}.damaged-{stamp}"))
        return HealthLedger(path, replica), str(exc)

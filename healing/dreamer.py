"""Dream cycles: scrub, record what was found, heal, and keep the cycle's record in the log."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol
from uuid import UUID

from carma.domain import ConflictError, DreamCycle
from carma.healing.calibrator import CALIBRATE_BUDGET_S, Calibrator
from carma.healing.healer import Healer, HealingLog
from carma.healing.scrubber import Finding, Scrubber

RECORD_BATCH = 200  # findings recorded per transaction
RECORD_ATTEMPTS = 5
REFINE_BUDGET_S = 10.0  # per cycle, spent improving approximate bodies
TARGET_FIDELITY = 0.95  # approximate bodies below it are refined, lowest first


class HomeFiles(Protocol):
    """The home's whole files besides the cache and the index (carma.copies)."""

    def check_pages(self, whole: bool = True) -> Future[str | None]: ...

    def check(
        self, whole: bool = True, pages: Future[str | None] | None = None
    ) -> dict[str, tuple[str, str]]: ...

    def record_lost(self, found: dict[str, tuple[str, str]], cycle_id: UUID | None) -> int: ...

    def repair(self, copies: list[str], cycle_id: UUID | None) -> dict[str, int]: ...


class Dreamer:
    """Runs one scrub-and-heal pass. Holds the store's lock only in short sections, so queries
    keep being answered while it works."""

    def __init__(
        self,
        log: HealingLog,
        scrubber: Scrubber,
        healer: Healer,
        catch_up: Callable[[], Any],
        health: Callable[[], dict[str, Any]],
        restore_keys: Callable[[], int] = lambda: 0,
        refine_budget_s: float = REFINE_BUDGET_S,
        target_fidelity: float = TARGET_FIDELITY,
        calibrator: Calibrator | None = None,
        calibrate_budget_s: float = CALIBRATE_BUDGET_S,
        files: HomeFiles | None = None,
    ):
        self.files = files  # the ledger, its keyword index, the key store: whole files
        self.refine_budget_s = refine_budget_s
        self.calibrator = calibrator
        self.calibrate_budget_s = calibrate_budget_s
        self.target_fidelity = target_fidelity
        self.log = log
        self.scrubber = scrubber
        self.healer = healer
        self._catch_up = catch_up
        self._health = health
        self._restore_keys = restore_keys
        self._one_at_a_time = threading.Lock()
        self._scrubs = 0  # scrubs run by this process (see scrub: when files are checked whole)

    def scrub(self, cycle_id: UUID | None = None, deep: bool = False) -> dict[str, Any]:
        """Find every difference between the copies and the log, and record each once. The
        log's own checksums: all if `deep`, else on a rolling schedule (see Scrubber)."""
        started = time.perf_counter()
        # Checked whole at the first scrub of a process (what happened to the files while it
        # was not running is unknown), at every deep one, and on the log's rolling schedule.
        whole = deep or self._scrubs % self.scrubber.log_passes == 0
        self._scrubs += 1
        # The ledger's damage would make every other finding doubtful. Its pages are checked
        # on a thread of their own while the copies are scanned (at a million fragments the
        # two take about as long, and SQLite's check runs in C, on the other core); the scan
        # changes nothing before the check says the ledger is sound, and what it found
        # against a damaged one is let go: it runs again once the file is repaired.
        pages = self.files.check_pages(whole) if self.files is not None else None

        def ledger_sound() -> bool:
            return pages is None or pages.result() is None

        try:
            self._catch_up()
            report = self.scrubber.scrub(deep, ledger_sound)
        except Exception:
            if ledger_sound():
                raise  # not the ledger's damage
            report = None
        files_found, files_repaired = self._check_files(cycle_id, whole, pages)
        # (the keyword index plays no part in the scan: its damage alone does not repeat it)
        if report is None or any(not k.startswith("keywords/") for k in files_found):
            self.scrubber.forget()  # (it kept rows of the damaged file)
            self._catch_up()
            report = self.scrubber.scrub(deep)
            assert report is not None
        found = report.counts()
        found.update(files_found)
        keys_restored = self._restore_keys()  # a fragment key missing from one of its copies
        if keys_restored:
            found["keys/missing"] = keys_restored
        scanned = time.perf_counter()
        recorded = self.record(report.findings, report.index_file, cycle_id)
        self.scrubber.done(report)
        return {
            "found": found,
            "recorded": recorded + len(files_found),
            "repaired": files_repaired,
            "checked": {**report.checked, "files_whole": int(whole)},
            "seconds": {
                "scan": round(scanned - started, 4),
                "record": round(time.perf_counter() - scanned, 4),
            },
        }

    def _check_files(
        self, cycle_id: UUID | None, whole: bool, pages: Future[str | None] | None = None
    ) -> tuple[dict[str, int], dict[str, int]]:
        """Find damaged files of the home, record each once, and repair it at once (nothing
        read from a damaged ledger or key store can be trusted until then). `pages`: the
        ledger's page check, begun already."""
        if self.files is None:
            return {}, {}
        found = self.files.check(whole, pages)
        if not found:
            return {}, {}
        self.files.record_lost(found, cycle_id)
        repaired = self.files.repair(list(found), cycle_id)
        return {f"{copy}/{fault}": 1 for copy, (fault, _) in found.items()}, repaired

    def record(self, findings: list[Finding], index_file: str | None, cycle_id: UUID | None) -> int:
        """FragmentLost for each finding not already open (a finding is recorded once)."""
        recorded = 0
        # The log is safe to use from several threads: no store lock is held here, so
        # queries go on; the projections catch up a batch at a time.
        for start in range(0, len(findings), RECORD_BATCH):
            recorded += self._record_batch(findings[start : start + RECORD_BATCH], cycle_id)
            self._catch_up()
        if index_file:
            copy = self.log.index_copy(self.healer.replica)
            if copy.mark_lost(index_file, cycle_id):
                self.log.record(copy)
                recorded += 1
        self._catch_up()
        return recorded

    def _record_batch(self, findings: list[Finding], cycle_id: UUID | None) -> int:
        """Record a batch of findings in one transaction; if a fragment changed meanwhile (a
        read recorded the same finding, a writer revised it), record them fragment by
        fragment instead, so that one busy fragment never holds up the others."""
        try:
            return self._record(findings, cycle_id)
        except ConflictError:
            pass
        by_fragment: dict[str, list[Finding]] = {}
        for f in findings:
            by_fragment.setdefault(f.uuid, []).append(f)
        recorded = 0
        for own in by_fragment.values():
            for attempt in range(RECORD_ATTEMPTS):
                try:
                    recorded += self._record(own, cycle_id)
                    break
                except ConflictError:
                    if attempt == RECORD_ATTEMPTS - 1:
                        raise
        return recorded

    def _record(self, findings: list[Finding], cycle_id: UUID | None) -> int:
        """FragmentLost for each finding not already open; returns how many were recorded."""
        fragments = self.log.fragments_by_uuid(UUID(f.uuid) for f in findings)
        touched: dict[str, Any] = {}
        marked = 0
        for f in findings:
            fragment = fragments[UUID(f.uuid)]
            if f.copy == "log-body":
                marked_now = fragment.mark_unreadable(list(f.versions), f.recorded or {}, cycle_id)
            else:
                marked_now = fragment.mark_lost(self.healer.replica.copy(f.copy), f.fault, cycle_id)
            if marked_now:
                touched[f.uuid] = fragment
                marked += 1
        if touched:
            self.log.record(*touched.values())
        return marked

    def heal(
        self, cycle_id: UUID | None = None, found: Counter[str] | None = None
    ) -> dict[str, int]:
        repaired = dict(self.healer.heal(cycle_id, found))
        self._catch_up()
        return repaired

    def dream(self, trigger: str = "manual", deep: bool = False) -> dict[str, Any]:
        with self._one_at_a_time:
            started = time.perf_counter()
            cycle = DreamCycle(trigger=trigger, replica=self.healer.replica.name)
            self.log.record(cycle)
            scrub = self.scrub(cycle.id, deep)
            before = self._health()["score"]  # the store as the scrub found it
            healing = time.perf_counter()
            met_in_replay: Counter[str] = Counter()
            repaired = {**scrub["repaired"], **self.heal(cycle.id, met_in_replay)}
            found = dict(Counter(scrub["found"]) + met_in_replay)
            calibrating = time.perf_counter()
            # Where approximate bodies are, measure what their reconstructor achieves there,
            # so that each can say how much of it is likely to be real.
            calibration = (
                {}
                if self.calibrator is None
                else {
                    ns: done
                    for ns, done in self.calibrator.calibrate(
                        self.calibrator.wanted(), self.calibrate_budget_s, cycle.id
                    ).items()
                    if done["status"] != "current"
                }
            )
            if calibration:
                self._catch_up()
            refining = time.perf_counter()
            # Progressive healing: a bounded share of every cycle improves approximate bodies.
            refined = self.healer.refine(self.refine_budget_s, self.target_fidelity, cycle.id)
            if refined["refined"]:
                repaired["log-body/refined"] = refined["refined"]
                self._catch_up()
            after = self._health()["score"]
            seconds = {
                **scrub["seconds"],
                "heal": round(calibrating - healing, 4),
                "calibrate": round(refining - calibrating, 4),
                "refine": round(time.perf_counter() - refining, 4),
                "total": round(time.perf_counter() - started, 4),
            }
            cycle.complete(
                found=found,
                repaired=repaired,
                seconds=seconds,
                health_before=before,
                health_after=after,
            )
            self.log.record(cycle)
            self._catch_up()
            return {
                "id": str(cycle.id),
                "trigger": trigger,
                "found": found,
                "recorded": scrub["recorded"],
                "checked": scrub["checked"],
                "repaired": repaired,
                "calibration": calibration,
                "seconds": seconds,
                "health_before": before,
                "health_after": after,
            }


class DreamScheduler:
    """Runs dream cycles every `every` seconds in a daemon thread until stopped."""

    def __init__(
        self,
        dream: Callable[[str], Any],
        every: float,
        on_error: Callable[[BaseException], None] | None = None,
    ):
        if not every > 0:
            raise ValueError("dream_every must be a positive number of seconds")
        self._dream = dream
        self.every = every
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._on_error = on_error
        self._finished = threading.Condition()
        self.cycles = 0
        self.last_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="carma-dreams", daemon=True)

    def start(self) -> DreamScheduler:
        self._thread.start()
        return self

    def wake(self) -> None:
        """Run the next cycle now (a read met a lost copy)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.every)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._dream("schedule")
            except BaseException as exc:  # a failed cycle must not kill the scheduler
                self.last_error = exc
                if self._on_error:
                    self._on_error(exc)
            with self._finished:
                self.cycles += 1
                self._finished.notify_all()

    def wait_for(self, cycles: int, timeout: float) -> bool:
        """Block until `cycles` cycles have finished in all; False if the timeout came first."""
        with self._finished:
            return self._finished.wait_for(lambda: self.cycles >= cycles, timeout)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()

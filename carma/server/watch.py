"""The log followed as it grows, by a background thread of the server: the keys issued and
revoked (by any process on the log), every finding and repair for the metrics' counters, the
dream cycles with their durations, and the health score sampled over time. Each pass reads
only the events recorded since the last one, of the kinds it wants (a filter by topic)."""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

import carma
from carma.domain import CorruptEvent, DreamCycle, Fragment, VectorIndexCopy, copy_kind
from carma.server.keys import KeyRing, KeyUsage

logger = logging.getLogger("carma.server")

HEALING_EVENTS = (
    Fragment.FragmentLost,
    Fragment.FragmentReconstructed,
    VectorIndexCopy.IndexLost,
    VectorIndexCopy.IndexRebuilt,
    DreamCycle.DreamCycleStarted,
    DreamCycle.DreamCycleCompleted,
)
CYCLES_KEPT = 200
SAMPLES_KEPT = 1_800  # an hour at one sample every 2 s
SCOPES_KEPT = 64  # health series kept for this many namespace scopes (the least recent go)
SAMPLE_EVERY_S = 2.0


class HealthSeries:
    """The health score over time, per scope (None: the whole store; else a tuple of
    namespaces): sampled by the watch for the whole store, and whenever a scope's health is
    read; a dream cycle adds the score its scrub found and the score after it healed, so a
    dip shorter than the sampling shows."""

    def __init__(self) -> None:
        self._series: OrderedDict[tuple[str, ...] | None, list[tuple[float, float]]] = OrderedDict()
        self._lock = threading.Lock()

    def add(
        self, scope: tuple[str, ...] | None, at: float, score: float, min_gap: float = 0.0
    ) -> None:
        with self._lock:
            points = self._series.setdefault(scope, [])
            self._series.move_to_end(scope)
            while len(self._series) > SCOPES_KEPT:
                self._series.popitem(last=False)
            if min_gap and points and at - points[-1][0] < min_gap:
                return
            bisect.insort(points, (at, round(score, 6)))
            del points[:-SAMPLES_KEPT]

    def points(self, scope: tuple[str, ...] | None) -> list[tuple[float, float]]:
        with self._lock:
            return list(self._series.get(scope, ()))


class Watch:
    """Follows the log for the server (see the module's docstring); `poll` is one pass."""

    def __init__(
        self,
        mem: carma.Memory,
        ring: KeyRing,
        usage: KeyUsage | None,
        on_healing: Callable[[str, dict[str, Any]], None] = lambda kind, labels: None,
        on_cycle: Callable[[dict[str, Any]], None] = lambda cycle: None,
        every: float = 0.5,
    ):
        self.mem = mem
        self.ring = ring
        self.usage = usage
        self.on_healing = on_healing  # each finding ("found") and repair ("repaired")
        self.on_cycle = on_cycle  # each completed dream cycle
        self.every = every
        self.series = HealthSeries()
        self.cycles: deque[dict[str, Any]] = deque(maxlen=CYCLES_KEPT)
        self._open_cycles: dict[str, dict[str, Any]] = {}
        self._index_replicas: dict[Any, str] = {}
        self._position = 0
        self._sampled_at = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Watch:
        self._thread = threading.Thread(target=self._run, name="carma-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.poll_usage()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception as exc:  # the next pass tries again; the server goes on
                logger.warning("following the log failed (will retry): %s", exc)
            self._stop.wait(self.every)

    def poll(self) -> None:
        self.ring.refresh()
        self._read_healing()
        now = time.time()
        if now - self._sampled_at >= SAMPLE_EVERY_S:
            self.series.add(None, now, self.mem.health()["score"])
            self._sampled_at = now
        self.poll_usage()

    def poll_usage(self) -> None:
        if self.usage is not None:
            self.usage.flush()

    def recent_cycles(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.cycles)

    def _read_healing(self) -> None:
        with self._lock:
            head = self.mem.log.position()  # read up to here, then on from here next time
            for position, event in self.mem.log.stream(self._position + 1, head, HEALING_EVENTS):
                if not isinstance(event, CorruptEvent):
                    self._read(position, event)
            self._position = max(self._position, head)

    def _replica_of(self, index_copy: Any) -> str:
        """Whose index file a finding or repair of an index file is about."""
        if index_copy not in self._index_replicas:
            record = self.mem.log.repository.get(index_copy)
            self._index_replicas[index_copy] = getattr(record, "replica", "")
        return self._index_replicas[index_copy]

    def _read(self, position: int, event: Any) -> None:
        if isinstance(event, Fragment.FragmentLost):
            self.on_healing("found", {**_copy_labels(event.copy), "fault": event.fault})
        elif isinstance(event, Fragment.FragmentReconstructed):
            self.on_healing("repaired", {**_copy_labels(event.copy), "method": event.method})
        elif isinstance(event, VectorIndexCopy.IndexLost):
            labels = {"copy": "index-file", "replica": self._replica_of(event.originator_id)}
            self.on_healing("found", {**labels, "fault": event.fault})
        elif isinstance(event, VectorIndexCopy.IndexRebuilt):
            labels = {"copy": "index-file", "replica": self._replica_of(event.originator_id)}
            self.on_healing("repaired", {**labels, "method": "exact-log"})
        elif isinstance(event, DreamCycle.DreamCycleStarted):
            self._open_cycles[str(event.originator_id)] = {
                "id": str(event.originator_id),
                "trigger": event.trigger,
                "replica": event.replica,
                "started_at": _epoch(event.timestamp),
                "position": position,
            }
        elif isinstance(event, DreamCycle.DreamCycleCompleted):
            started = self._open_cycles.pop(str(event.originator_id), None)
            if started is None:  # began before the log we read (a replay, say)
                return
            cycle = {
                **started,
                "completed_at": _epoch(event.timestamp),
                "found": event.found,
                "repaired": event.repaired,
                "seconds": event.seconds,
                "health_before": event.health_before,
                "health_after": event.health_after,
            }
            self.cycles.append(cycle)
            # The score as the scrub found the store, then once healed (the whole store's).
            self.series.add(None, cycle["started_at"], event.health_before)
            self.series.add(None, cycle["completed_at"], event.health_after)
            self.on_cycle(cycle)


def _copy_labels(copy: str) -> dict[str, str]:
    """A copy's name as labels: "cache@r1" is the cache of replica r1 (on a shared log)."""
    return {"copy": copy_kind(copy), "replica": copy.partition("@")[2]}


def _epoch(moment: datetime) -> float:
    return moment.timestamp()

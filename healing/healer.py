"""Healer: a process manager that answers each FragmentLost / IndexLost with a repair.

It follows the log from the position it has tracked, and records its repairs' events together
with the position they answer, in one transaction: a crash mid-heal resumes at the first
unanswered finding, never repairing one twice in the log nor skipping one.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID

from domain import ConflictError, Fragment, VectorIndexCopy
from projections import CachedFragment, FragmentCache, VectorIndex, faiss_id

EXACT_LOG = "exact-log"


class HealingLog(Protocol):
    def tracked_position(self, process: str) -> int: ...

    def read(self, after: int, limit: int = ..., kinds: Any = ...) -> list[tuple[int, Any]]: ...

    def fragments_by_uuid(self, uuids: Any) -> dict[UUID, Fragment]: ...

    def index_copy(self) -> VectorIndexCopy: ...

    def record(self, *aggregates: Any) -> None: ...

    def record_tracked(self, process: str, position: int, *aggregates: Any) -> None: ...


class Healer:
    name = "healer"
    answers = (Fragment.FragmentLost, VectorIndexCopy.IndexLost)

    def __init__(self, log: HealingLog, cache: FragmentCache, index: VectorIndex, lock: Any,
                 batch_size: int = 128, after_batch: Callable[[], Any] = lambda: None):
        self.log = log
        self.cache = cache
        self.index = index
        self._lock = lock
        self.batch_size = batch_size  # repairs per lock hold
        self._after_batch = after_batch  # e.g. catch the projections up, outside the lock

    def heal(self, cycle_id: UUID | None = None) -> Counter[str]:
        """Answer every finding not answered yet; returns repairs per 'copy/method'.

        Only the in-memory index needs the store's lock: reading the log, writing and flushing
        files and recording events happen outside it, so queries go on between repairs."""
        repaired: Counter[str] = Counter()
        while True:
            self._after_batch()
            after = self.log.tracked_position(self.name)
            batch = self.log.read(after, self.batch_size, kinds=self.answers)
            if not batch:
                return repaired
            plan = _Plan()
            touched: dict[UUID, Any] = {}
            done_here: Counter[str] = Counter()
            fragments = self.log.fragments_by_uuid(
                e.originator_id for _, e in batch if isinstance(e, Fragment.FragmentLost))
            for _, event in batch:
                aggregate = touched.get(event.originator_id)
                if isinstance(event, Fragment.FragmentLost):
                    aggregate = aggregate or fragments[event.originator_id]
                    done = self._plan_fragment(plan, aggregate, event.copy, cycle_id)
                else:
                    aggregate = aggregate or self.log.index_copy()
                    done = self._plan_index_file(plan, aggregate, cycle_id)
                if done:
                    touched[event.originator_id] = aggregate
                    done_here[done] += 1
            for uuid in plan.cache_removals:
                self.cache.remove(uuid)
            self.cache.write_many(plan.files)  # flushed before the events that say so
            with self._lock:
                self.index.remove(plan.index_removals)
                self.index.put(plan.vectors)
                if plan.index_file is not None:
                    started = time.perf_counter()
                    self.index.save()
                    plan.index_file.rebuilt(position=self.index.position,
                                            seconds=round(time.perf_counter() - started, 4),
                                            cycle_id=cycle_id)
            try:
                self.log.record_tracked(self.name, batch[-1][0], *touched.values())
            except ConflictError:
                # Another healer answered this batch first, or a fragment changed meanwhile
                # (a deletion, a read recording a finding): read the batch again and answer
                # what is still open. A copy rewritten for a fragment deleted meanwhile is an
                # "extra" copy for the next scrub, and search never shows deleted fragments.
                continue
            repaired.update(done_here)

    def _plan_fragment(self, plan: _Plan, fragment: Fragment, copy: str,
                       cycle_id: UUID | None) -> str | None:
        fault = fragment.faults.get(copy)
        if fault is None:
            return None  # already answered (or superseded by a deletion)
        if fragment.deleted and fault != "extra":
            return None  # never repair a deleted fragment's copies back into existence
        uuid = fragment.id
        if copy == "cache":
            if fragment.deleted:
                plan.cache_removals.append(uuid)
            else:
                plan.files.append(CachedFragment.of(uuid, fragment.key, fragment.namespace,
                                                    fragment, fragment.content_version))
        elif copy == "index":
            if fragment.deleted:
                plan.index_removals.append(faiss_id(uuid))
            else:
                plan.vectors[faiss_id(uuid)] = fragment.embedding
        else:
            return None  # the log's own body: repaired by reconstruction, not from the log
        fragment.reconstruct(copy=copy, method=EXACT_LOG, fidelity=1.0,
                             content_hash=fragment.content_hash, sources=[], cycle_id=cycle_id)
        return f"{copy}/{EXACT_LOG}"

    @staticmethod
    def _plan_index_file(plan: _Plan, copy: VectorIndexCopy, cycle_id: UUID | None) -> str | None:
        if copy.fault is None or plan.index_file is not None:
            return None
        plan.index_file = copy  # saved, and its IndexRebuilt recorded, with the batch
        return f"index-file/{EXACT_LOG}"


@dataclass
class _Plan:
    """The repairs of one batch, gathered before any is made."""

    files: list[CachedFragment] = field(default_factory=list)
    cache_removals: list[UUID] = field(default_factory=list)
    vectors: dict[int, bytes] = field(default_factory=dict)
    index_removals: list[int] = field(default_factory=list)
    index_file: VectorIndexCopy | None = None

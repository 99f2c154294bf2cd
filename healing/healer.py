"""Healer: a process manager that answers each FragmentLost / IndexLost with a repair.

It follows the log from the position it has tracked, and records its repairs' events together
with the position they answer, in one transaction: a crash mid-heal resumes at the first
unanswered finding, never repairing one twice in the log nor skipping one.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID

import numpy as np
from carma.domain import (
    SOLE_REPLICA,
    ConflictError,
    Fragment,
    Replica,
    VectorIndexCopy,
    content_hash,
    copy_kind,
    index_copy_id,
)
from carma.healing.reconstructor import (
    METHOD,
    RECONSTRUCT_EVALUATIONS,
    REFINE_EVALUATIONS,
    Reconstruction,
    Reconstructor,
    vocabulary_of,
)
from carma.healing.scrubber import is_exact_copy, recorded_identity
from carma.projections import (
    CachedFragment,
    FragmentCache,
    HealthLedger,
    VectorIndex,
    faiss_id,
)
from carma.projections.index import embedding_fingerprint

EXACT_LOG = "exact-log"
EXACT_COPY = "exact-copy"
EXACT_REBUILT = "exact-rebuilt"  # a reconstruction whose content hash proves it exact
NEIGHBOURS = 8  # same-namespace neighbours a reconstruction draws on


class HealingLog(Protocol):
    def tracked_position(self, process: str) -> int: ...

    def read(self, after: int, limit: int = ..., kinds: Any = ...) -> list[tuple[int, Any]]: ...

    def fragments_by_uuid(self, uuids: Any, known: Any = ...) -> dict[UUID, Fragment]: ...

    def index_copy(self, replica: Replica = ...) -> VectorIndexCopy: ...

    def record(self, *aggregates: Any) -> None: ...

    def record_tracked(self, process: str, position: int, *aggregates: Any) -> None: ...

    def snapshot(self, *fragments: Fragment) -> None: ...


class Healer:
    answers = (Fragment.FragmentLost, VectorIndexCopy.IndexLost)

    def __init__(
        self,
        log: HealingLog,
        cache: FragmentCache,
        index: VectorIndex,
        ledger: HealthLedger,
        lock: Any,
        reconstructor: Reconstructor | None = None,
        batch_size: int = 256,
        after_batch: Callable[[], Any] = lambda: None,
        reconstruct_evaluations: int = RECONSTRUCT_EVALUATIONS,
        refine_evaluations: int = REFINE_EVALUATIONS,
        replica: Replica = SOLE_REPLICA,
    ):
        self.log = log
        # Whose copies it repairs (and the log's body, which is everyone's): on a shared
        # log each replica's healer answers its own findings, from its own position.
        self.replica = replica
        self.name = replica.process("healer")
        self._index_copy = index_copy_id(replica)
        self.cache = cache
        self.index = index
        self.ledger = ledger
        self._lock = lock
        self.reconstructor = reconstructor  # None: no semantic reconstruction (stays lost)
        self.batch_size = batch_size  # repairs per lock hold
        self._after_batch = after_batch  # e.g. catch the projections up, outside the lock
        # Texts the model may score per fragment: work, not seconds (see healing.reconstructor)
        self.reconstruct_evaluations = reconstruct_evaluations  # the first attempt
        self.refine_evaluations = refine_evaluations  # each refinement

    def heal(self, cycle_id: UUID | None = None, found: Counter[str] | None = None) -> Counter[str]:
        """Answer every finding not answered yet; returns repairs per 'copy/method'. Damage a
        replay meets that no scrub has recorded is recorded too, and counted in `found`.

        Only the in-memory index needs the store's lock: reading the log, writing and flushing
        files and recording events happen outside it, so queries go on between repairs.

        Batches overlap: one batch's files are written while the next batch is read and
        replayed, and its repairs are recorded once its files are durable. When there is more
        than a batch to do, a writer process writes them (CacheWriter), on another core than
        the replay's: the file system's work and the event sourcing's then take the time of
        the longer of the two, not of both."""
        repaired: Counter[str] = Counter()
        with self.cache.writer() as writer:
            pending: _Batch | None = None  # its files submitted, its repairs not recorded
            while True:
                if pending is None:
                    self._after_batch()
                    after = self.log.tracked_position(self.name)
                else:
                    after = pending.last
                batch = self._plan(after, cycle_id, pending.touched if pending else {})
                if batch is not None:
                    writer.submit(batch.cache_removals, batch.files, background=batch.full)
                if pending is not None:
                    writer.wait()  # its files are flushed before the events that say so
                    if not self._record(pending, cycle_id):
                        # Another healer answered these findings first, or a fragment changed
                        # meanwhile (a deletion, a read recording a finding): read them again
                        # and answer what is still open. The batch planned since may rest on
                        # the repairs that were not recorded: it is read again too. A copy
                        # rewritten for a fragment deleted meanwhile is an "extra" copy for
                        # the next scrub, and search never shows deleted fragments.
                        writer.drain()
                        pending = None
                        continue
                    repaired.update(pending.done)
                    if pending.found and found is not None:  # damage this heal recorded
                        found["log-body/corrupt"] += len(pending.found)
                    self._after_batch()
                if batch is None:
                    if pending is None:
                        return repaired
                    # Read once more now that it is recorded: findings about its fragments
                    # waited for it (see _plan), and it may have recorded damage of its own.
                    pending = None
                    continue
                pending = batch

    def _plan(
        self, after: int, cycle_id: UUID | None, waiting_on: dict[UUID, Any]
    ) -> _Batch | None:
        """The repairs that answer the next findings after a position, gathered before any is
        made; None if there are none to plan now.

        The batch ends before the first finding about an aggregate in `waiting_on` (the batch
        before, whose repairs are not recorded yet): planned now, its replay would miss those
        repairs. A body restated there would still look lost here, and this batch would have
        the writer remove its cache file after the projection had written it."""
        events = self.log.read(after, self.batch_size, kinds=self.answers)
        full = len(events) == self.batch_size
        if waiting_on:
            events = list(
                itertools.takewhile(
                    lambda found: getattr(found[1], "originator_id", None) not in waiting_on, events
                )
            )
        if not events:
            return None
        batch = _Batch(last=events[-1][0], full=full)
        findings = [e for _, e in events if isinstance(e, Fragment.FragmentLost)]
        fragments = self.log.fragments_by_uuid((e.originator_id for e in findings), known=findings)
        for _, event in events:
            if not isinstance(event, self.answers):
                continue  # an unreadable finding: the scrubber reports it as log damage
            if not self._ours(event):
                continue  # another replica's copy: that replica's healer answers it
            aggregate = batch.touched.get(event.originator_id)
            if isinstance(event, Fragment.FragmentLost) and event.copy == "log-body":
                aggregate = aggregate or fragments[event.originator_id]
                done = self._restore_body(aggregate, cycle_id)
                if done:
                    batch.restored[aggregate.id] = aggregate
            elif isinstance(event, Fragment.FragmentLost):
                aggregate = aggregate or fragments[event.originator_id]
                done = self._plan_fragment(batch, aggregate, event.copy, cycle_id)
            else:
                aggregate = aggregate or self.log.index_copy(self.replica)
                done = self._plan_index_file(batch, aggregate, cycle_id)
            if done:
                batch.touched[event.originator_id] = aggregate
                batch.done[done] += 1
        for fragment in batch.found:
            batch.touched[fragment.id] = fragment
        return batch

    def _record(self, batch: _Batch, cycle_id: UUID | None) -> bool:
        """Make a batch's index repairs and record its events with the position they answer
        (its files are durable by now); False if the log changed under it (ConflictError)."""
        with self._lock:
            self.index.remove(batch.index_removals)
            self.index.put(batch.vectors)
            if batch.index_file is not None:
                started = time.perf_counter()
                self.index.save()
                batch.index_file.rebuilt(
                    position=self.index.position,
                    seconds=round(time.perf_counter() - started, 4),
                    cycle_id=cycle_id,
                )
        try:
            self.log.record_tracked(self.name, batch.last, *batch.touched.values())
        except ConflictError:
            return False
        if batch.restored:
            # The restated bodies no longer depend on the events that cannot be read.
            self.log.snapshot(*batch.restored.values())
        return True

    def _ours(self, event: Any) -> bool:
        if isinstance(event, Fragment.FragmentLost):
            return self.replica.owns(event.copy)
        return event.originator_id == self._index_copy

    def _plan_fragment(
        self, batch: _Batch, fragment: Fragment, copy: str, cycle_id: UUID | None
    ) -> str | None:
        kind = copy_kind(copy)  # "cache" or "index": this replica's own
        fault = fragment.faults.get(copy)
        if fault is None:
            return None  # already answered (or superseded by a deletion)
        if fragment.deleted and fault != "extra":
            return None  # never repair a deleted fragment's copies back into existence
        needs = fragment.embedding is None if kind == "index" else not fragment.body_known
        if not fragment.deleted and needs:
            # The body itself is lost: its restatement will rewrite this copy. A damaged
            # file that is no exact copy of it is of no use to anyone meanwhile.
            with self._lock:
                row = self.ledger.row_by_uuid(str(fragment.id))
            if row is not None and fragment.mark_unreadable(
                fragment.unreadable, recorded_identity(row), cycle_id
            ):
                # The replay met unreadable events that no scrub has recorded yet (it reads
                # old events on a rolling schedule): record the damage now, as a read does,
                # and the body's repair follows in this heal's next batch.
                batch.found.append(fragment)
            if kind == "cache":
                cached, _ = self.cache.inspect(fragment.id)
                if cached is None or not is_exact_copy(cached, row, fragment.content_hash):
                    batch.cache_removals.append(fragment.id)
            return None
        uuid = fragment.id
        if kind == "cache":
            if fragment.deleted:
                batch.cache_removals.append(uuid)
            else:
                batch.files.append(
                    CachedFragment.of(
                        uuid, fragment.key, fragment.namespace, fragment, fragment.content_version
                    )
                )
        elif kind == "index":
            if fragment.deleted:
                batch.index_removals.append(faiss_id(uuid))
            else:
                batch.vectors[faiss_id(uuid)] = fragment.embedding
        else:
            return None  # the log's own body: repaired by reconstruction, not from the log
        fragment.reconstruct(
            copy=copy,
            method=EXACT_LOG,
            fidelity=1.0,
            content_hash=fragment.content_hash,
            sources=[],
            cycle_id=cycle_id,
        )
        return f"{kind}/{EXACT_LOG}"

    # -- the log's own copy of a body -----------------------------------------------------------

    def _restore_body(self, fragment: Fragment, cycle_id: UUID | None) -> str | None:
        """Restate a body whose events cannot be read: exactly from the log's other events or
        from a copy whose text has the recorded content hash; else rebuilt from the surviving
        embedding and the nearest exact fragments of its namespace; else nothing (it stays
        lost, and is reported so)."""
        if "log-body" not in fragment.faults or fragment.deleted:
            return None
        with self._lock:
            row = self.ledger.row_by_uuid(str(fragment.id))
        metadata = fragment.metadata  # None: unknown, unless the ledger still knows it
        if metadata is None and row is not None and row["metadata"] is not None:
            metadata = json.loads(row["metadata"])
        embedding = fragment.embedding or self._surviving_embedding(fragment, row)
        if (
            fragment.text is not None
            and content_hash(fragment.text) == fragment.content_hash
            and embedding is not None
            and metadata is not None
        ):
            method, text, fidelity, sources = EXACT_LOG, fragment.text, 1.0, []
        elif (copy := self._verified_copy(fragment, row)) is not None:
            text, metadata = copy.text, copy.metadata
            if embedding is None and self.reconstructor is not None:
                embedding = _as_bytes(self.reconstructor.embed_one(text))
            if embedding is None:
                return None
            method, fidelity, sources = EXACT_COPY, 1.0, []
        elif fragment.approximate and fragment.text is not None and embedding is not None:
            # The event that recorded an approximate body is unreadable, but the body is not
            # (the snapshot taken with it): restate it as it is, labelled as it was, so that
            # the log no longer depends on that event. Refining it is the refiner's work.
            text, fidelity, sources = fragment.text, fragment.fidelity, list(fragment.sources)
            method = fragment.reconstructed_by or METHOD
        elif (
            embedding is not None
            and self.reconstructor is not None
            and fragment.namespace is not None
        ):
            found = self._reconstruct(fragment, embedding)
            if found is None:  # no neighbour to draw on yet: keep what survives
                return (
                    "log-body/embedding-kept"
                    if fragment.keep_embedding(embedding, cycle_id)
                    else None
                )
            text, fidelity, sources = found
            method = self.reconstructor.method
            if fragment.is_original(text, metadata):  # proven so, though rebuilt
                method, fidelity = EXACT_REBUILT, 1.0
        else:
            if embedding is not None and fragment.keep_embedding(embedding, cycle_id):
                return "log-body/embedding-kept"  # no text yet: kept for a later cycle
            return None  # nothing left: no body and no embedding anywhere
        if not fragment.restore_body(
            method=method,
            fidelity=fidelity,
            text=text,
            metadata=metadata,
            embedding=embedding,
            sources=sources,
            cycle_id=cycle_id,
            expected_recall=self.expected_recall(fragment, method, fidelity),
        ):
            return None
        return f"log-body/{method}"

    def expected_recall(self, fragment: Fragment, method: str, fidelity: float) -> float | None:
        """What the namespace's calibration expects of a reconstruction of this fidelity, at
        the refinement stage restoring it now would put it at."""
        if method.startswith("exact-") or fragment.namespace is None:
            return None
        with self._lock:
            return self.ledger.expected_recall(
                fragment.namespace, method, fidelity, fragment.next_refinement
            )

    def _surviving_embedding(self, fragment: Fragment, row: dict[str, Any] | None) -> bytes | None:
        """The fragment's vector in the index, if it is the one the ledger recorded."""
        if row is None or not row["embedding_fingerprint"]:
            return None
        with self._lock:
            vector = self.index.vector(faiss_id(fragment.id))
        if vector is None:
            return None
        embedding = _as_bytes(vector)
        return (
            embedding if embedding_fingerprint(embedding) == row["embedding_fingerprint"] else None
        )

    def _verified_copy(
        self, fragment: Fragment, row: dict[str, Any] | None
    ) -> CachedFragment | None:
        """The cache file's body, if its text has the recorded content hash (and its
        metadata is the ledger's, where the ledger knows it)."""
        cached, _ = self.cache.inspect(fragment.id)
        if (
            cached is None
            or fragment.content_hash is None
            or not is_exact_copy(cached, row, fragment.content_hash)
        ):
            return None
        return cached

    def _reconstruct(
        self, fragment: Fragment, embedding: bytes
    ) -> tuple[str, float, list[str]] | None:
        assert self.reconstructor is not None
        target = np.frombuffer(embedding, dtype="<f4")
        neighbours = self.neighbours(target, fragment.namespace, exclude=fragment.id)
        if not neighbours:
            return None
        result = self.reconstructor.reconstruct(
            target, [t for _, t in neighbours], self.reconstruct_evaluations
        )
        if result is None:
            return None
        return result.text, round(result.fidelity, 6), [neighbours[i][0] for i in result.sources]

    def neighbours(
        self, target: np.ndarray, namespace: str, exclude: UUID, k: int = NEIGHBOURS
    ) -> list[tuple[str, str]]:
        """(id, text) of the k nearest live fragments of the namespace whose bodies are exact,
        never the fragment itself, nor deleted, forgotten, approximate or lost ones."""
        with self._lock:
            allowed = np.asarray(self.ledger.exact_faiss_ids(namespace), dtype=np.int64)
            allowed = allowed[allowed != faiss_id(exclude)]
            found = self.index.search(target, k, allowed)
            rows = self.ledger.rows_by_faiss_ids([fid for fid, _ in found])
        out: list[tuple[str, str]] = []
        for fid, _ in found:
            row = rows.get(fid)
            if row is None:
                continue
            cached, _ = self.cache.inspect(row["uuid"])
            if cached is not None and content_hash(cached.text) == row["content_hash"]:
                out.append((row["id"], cached.text))
                continue
            neighbour = self.log.fragments_by_uuid([UUID(row["uuid"])]).get(UUID(row["uuid"]))
            if neighbour is not None and neighbour.text is not None and not neighbour.approximate:
                out.append((row["id"], neighbour.text))
        return out

    def refine(
        self, budget_s: float, target_fidelity: float, cycle_id: UUID | None = None
    ) -> dict[str, Any]:
        """Spend at most `budget_s` improving approximate bodies below `target_fidelity`,
        lowest fidelity first; a result is recorded only when it raises the fidelity."""
        if self.reconstructor is None:
            return {"refined": 0, "tried": 0}
        deadline = time.perf_counter() + budget_s
        with self._lock:
            rows = self.ledger.approximate_rows(target_fidelity)
            waiting = self.ledger.lost_rows()
        tried = refined = 0
        gains: list[float] = []
        for row in waiting:  # lost bodies: a source may have appeared since (neighbours in
            if time.perf_counter() >= deadline:  # the namespace, a readable log restored)
                break
            uuid = UUID(row["uuid"])
            fragment = self.log.fragments_by_uuid([uuid]).get(uuid)
            if fragment is None or "log-body" not in fragment.faults:
                continue
            tried += 1
            done = self._restore_body(fragment, cycle_id)
            if done and done != "log-body/embedding-kept":
                try:
                    self.log.record(fragment)
                except ConflictError:
                    continue
                self.log.snapshot(fragment)
                refined += 1
        for row in rows:
            if time.perf_counter() >= deadline:
                break
            uuid = UUID(row["uuid"])
            fragment = self.log.fragments_by_uuid([uuid]).get(uuid)
            if (
                fragment is None
                or not fragment.approximate
                or fragment.deleted
                or fragment.embedding is None
                or fragment.text is None
            ):
                continue
            tried += 1
            target = np.frombuffer(fragment.embedding, dtype="<f4")
            neighbours = self.neighbours(target, fragment.namespace, exclude=uuid)
            vocabulary = vocabulary_of([t for _, t in neighbours] + [fragment.text])
            current = Reconstruction(fragment.text, fragment.fidelity, ())
            better = self.reconstructor.refine(target, current, vocabulary, self.refine_evaluations)
            fidelity = round(better.fidelity, 6)
            method = self.reconstructor.method  # what made this text, now
            if fragment.is_original(better.text, fragment.metadata):
                fidelity, method = 1.0, EXACT_REBUILT
            if fidelity <= fragment.fidelity or not fragment.restore_body(
                method=method,
                fidelity=fidelity,
                text=better.text,
                metadata=fragment.metadata,
                embedding=fragment.embedding,
                sources=list(fragment.sources),
                cycle_id=cycle_id,
                expected_recall=self.expected_recall(fragment, method, fidelity),
            ):
                continue
            try:
                self.log.record(fragment)
            except ConflictError:
                continue  # changed meanwhile (revised, deleted, upgraded): leave it be
            self.log.snapshot(fragment)
            refined += 1
            gains.append(fidelity - row["fidelity"])
        return {
            "refined": refined,
            "tried": tried,
            "mean_gain": round(sum(gains) / len(gains), 6) if gains else 0.0,
        }

    @staticmethod
    def _plan_index_file(batch: _Batch, copy: VectorIndexCopy, cycle_id: UUID | None) -> str | None:
        if copy.fault is None or batch.index_file is not None:
            return None
        batch.index_file = copy  # saved, and its IndexRebuilt recorded, with the batch
        return f"index-file/{EXACT_LOG}"


@dataclass
class _Batch:
    """The repairs answering one batch of findings, gathered before any is made."""

    last: int  # the position of its last finding: recorded with its repairs
    full: bool  # as many findings as a batch holds: more may follow
    touched: dict[UUID, Any] = field(default_factory=dict)  # aggregates with events to record
    done: Counter[str] = field(default_factory=Counter)  # repairs per 'copy/method'
    restored: dict[UUID, Fragment] = field(default_factory=dict)  # log bodies restated
    files: list[CachedFragment] = field(default_factory=list)
    cache_removals: list[UUID] = field(default_factory=list)
    vectors: dict[int, bytes] = field(default_factory=dict)
    index_removals: list[int] = field(default_factory=list)
    index_file: VectorIndexCopy | None = None
    found: list[Fragment] = field(default_factory=list)  # damage met in replay, recorded now


def _as_bytes(vector: Any) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()

"""The log: an eventsourcing Application whose public methods are CARMA's write use cases."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    ProcessingEvent,
)
from eventsourcing.domain import Aggregate, Snapshot
from eventsourcing.persistence import (
    ApplicationRecorder,
    IntegrityError,
    JSONTranscoder,
    Mapper,
    Notification,
    StoredEvent,
    Tracking,
)
from eventsourcing.utils import get_topic

from carma.domain import (
    SOLE_REPLICA,
    ConflictError,
    CorruptEvent,
    Draft,
    DreamCycle,
    EmbedderMismatch,
    Fragment,
    FragmentNotFound,
    InvalidInput,
    LogHistory,
    ProjectionCopy,
    ReconstructionCalibration,
    Replica,
    StoreProfile,
    VectorIndexCopy,
    calibration_id,
    dashed_uuid,
    fragment_uuid,
    index_copy_id,
    projection_copy_id,
)
from carma.domain.access import AccessKey
from carma.domain.fragment import STORE_PROFILE_ID
from carma.log.mapper import (
    BytesAsBase64,
    ChecksummedMapper,
    checksum_holds,
    digest_holds,
    verified_payload,
)

EVENT_KINDS = {
    cls.__name__: cls
    for cls in (
        Fragment.FragmentWritten,
        Fragment.FragmentRevised,
        Fragment.FragmentDeleted,
        Fragment.FragmentLost,
        Fragment.FragmentReconstructed,
        Fragment.EmbeddingKept,
        Fragment.FragmentForgotten,
        StoreProfile.StoreCreated,
        VectorIndexCopy.IndexCopyTracked,
        VectorIndexCopy.IndexLost,
        VectorIndexCopy.IndexRebuilt,
        DreamCycle.DreamCycleStarted,
        DreamCycle.DreamCycleCompleted,
        LogHistory.HistoryLost,
        ProjectionCopy.ProjectionCopyTracked,
        ProjectionCopy.ProjectionLost,
        ProjectionCopy.ProjectionRepaired,
        ReconstructionCalibration.CalibrationOpened,
        ReconstructionCalibration.CalibrationStarted,
        ReconstructionCalibration.CalibrationSampled,
        ReconstructionCalibration.ReconstructionCalibrated,
        ReconstructionCalibration.CalibrationDeclined,
        AccessKey.KeyIssued,
        AccessKey.KeyRevoked,
    )
}
# Only these topics may enter the log by import: decoding a topic imports its module.
EVENT_TOPICS = {get_topic(cls) for cls in EVENT_KINDS.values()}
CHAIN_KEY_SETTING = "CARMA_CHAIN_KEY"  # hex, handed over by bootstrap, never logged
CONFLICT = (
    "another writer changed the same fragment at the same time; nothing was written, try again"
)


def _collected(tracking: Tracking | None, aggregates: Iterable[Aggregate]) -> ProcessingEvent[UUID]:
    """Aggregates' pending events, to record in one transaction: what
    ProcessingEvent.collect_events does for aggregates, without its two isinstance checks
    against runtime-checkable Protocols (telling events from aggregates), which cost about
    25 µs per aggregate, as much as storing its event: findings and repairs are recorded by
    the thousand."""
    processing = ProcessingEvent[UUID](tracking)
    for aggregate in aggregates:
        processing.events.extend(aggregate.collect_events())
        processing.aggregates[aggregate.id] = aggregate
    return processing


def _columns(n: Notification) -> tuple[int, Any, int, str, bytes]:
    """A stored event's columns, as the log's decoding takes them (MemoryLog._decoded)."""
    return n.id, n.originator_id, n.originator_version, n.topic, n.state


def _uuid_or_str(value: Any) -> UUID | str:
    """A stored originator id; damaged bytes may have made it no UUID at all."""
    try:
        return UUID(str(value))
    except ValueError:
        return str(value)


@dataclass(frozen=True)
class Write:
    """One planned write: the draft, the id it goes to, and its embedding if its text is new."""

    draft: Draft
    key: str
    embedding: bytes | None
    fresh: bool = False  # the key was just generated: no aggregate can exist, skip the lookup


@dataclass(frozen=True)
class Change:
    key: str
    outcome: str  # "added" | "revised" | "unchanged"


RECENT_EVENTS = 1_024  # events kept from the latest recordings: about a catch-up's worth (more
# costs the garbage collector more than it saves in reads)


class RecentEvents:
    """The events this process recorded last, by position, with nothing unknown between:
    the log hands them to its own projections and healer without reading them back (as an
    eventsourcing application notifies its followers of what it has just recorded), which
    saves a read and a decode per event on every write and repair. A recording that does not
    follow on from the last one (another writer's events, or a gap, came between) starts the
    run afresh; the oldest events make way beyond `size`."""

    def __init__(self, size: int = RECENT_EVENTS):
        self.size = size
        self._events: dict[int, Any] = {}
        self._first = self._last = 0  # the run held: positions _first.._last, all of them
        self._lock = threading.Lock()

    def add(self, recorded: Sequence[tuple[int, Any]]) -> None:
        if not recorded:
            return
        positions = [position for position, _ in recorded]
        with self._lock:
            if positions != list(range(positions[0], positions[-1] + 1)):
                self._clear()  # not one run: nothing to vouch for
                return
            if positions[0] != self._last + 1 or not self._events:
                self._clear()
                self._first = positions[0]
            self._events.update(recorded)
            self._last = positions[-1]
            while len(self._events) > self.size:
                del self._events[self._first]
                self._first += 1

    def clear(self) -> None:
        with self._lock:
            self._clear()

    def _clear(self) -> None:
        self._events = {}
        self._first = self._last = 0

    def after(
        self, after: int, limit: int, kinds: tuple[type, ...]
    ) -> tuple[list[tuple[int, Any]], int] | None:
        """Up to `limit` events after a position (of these classes, if any), and the last
        position looked at; None unless the next position is held."""
        with self._lock:
            if not self._first <= after + 1 <= self._last:
                return None
            found: list[tuple[int, Any]] = []
            position = after
            while position < self._last and len(found) < limit:
                position += 1
                event = self._events[position]
                if not kinds or type(event) in kinds:
                    found.append((position, event))
            return found, position


class MemoryLog(Application[UUID]):
    """The append-only log of every fragment's life. Its public methods are the use cases."""

    name = "carma"
    is_snapshotting_enabled = True  # taken by repairs of the log's own body, not on a schedule

    def __init__(self, *args: Any, **kwargs: Any):
        self.recent = RecentEvents()
        super().__init__(*args, **kwargs)

    def _record(self, processing_event: ProcessingEvent[UUID]) -> list[Any]:
        recordings = super()._record(processing_event)
        self.recent.add([(r.notification.id, r.domain_event) for r in recordings])
        return recordings

    def construct_mapper(self) -> Mapper[UUID]:
        return ChecksummedMapper(
            transcoder=self.construct_transcoder(),
            compressor=self.factory.compressor(),
            cipher=self.factory.cipher(),
        )

    def construct_recorder(self) -> ApplicationRecorder:
        # A process recorder keeps the healer's tracking in the same database as the events,
        # so a repair's events and the position it answers commit in one transaction; ours
        # also chains every event it inserts (carma.log.chain). The log's factories
        # (carma.log.sqlite, carma.log.postgres) make it, durable, with the raw reads beside.
        recorder = self.factory.log_recorder()  # type: ignore[attr-defined]
        self.tables: Any = self.factory.log_tables()  # type: ignore[attr-defined]
        recorder.key = bytes.fromhex(self.env.get(CHAIN_KEY_SETTING) or "")
        recorder.create_table()
        return recorder

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(BytesAsBase64())

    # -- the store's profile ------------------------------------------------------------------

    def check_profile(self, model: str, dimension: int) -> StoreProfile | None:
        """The store's profile; EmbedderMismatch if it was made with another embedder."""
        profile = self.profile()
        if profile is not None and (profile.model, profile.dimension) != (model, dimension):
            raise EmbedderMismatch(
                f"this store was created with {profile.model} ({profile.dimension}-d); "
                f"it cannot take {model} ({dimension}-d)"
            )
        return profile

    def profile(self) -> StoreProfile | None:
        try:
            return self._get(STORE_PROFILE_ID)
        except AggregateNotFoundError:
            return None

    # -- reads of single aggregates -------------------------------------------------------------

    def _get(self, aggregate_id: UUID) -> Any:
        found = self._aggregates([aggregate_id]).get(aggregate_id)
        if found is None:
            raise AggregateNotFoundError(aggregate_id)
        return found

    def fragment(self, key: str) -> Fragment:
        try:
            return self._get(fragment_uuid(key))
        except AggregateNotFoundError:
            raise FragmentNotFound(key) from None

    def fragments(self, keys: Iterable[str]) -> dict[str, Fragment | None]:
        keys = list(dict.fromkeys(keys))
        found = self._aggregates(fragment_uuid(k) for k in keys)
        return {k: found.get(fragment_uuid(k)) for k in keys}

    def fragments_by_uuid(
        self, uuids: Iterable[UUID], known: Iterable[Any] = ()
    ) -> dict[UUID, Fragment]:
        """Fragments replayed; `known`: some of their events, decoded already (the findings a
        healer has just read), which the replay takes as they are instead of decoding them
        again (the log is append-only: the event at a version never changes)."""
        return self._aggregates(uuids, {(e.originator_id, e.originator_version): e for e in known})

    def _aggregates(
        self, uuids: Iterable[UUID], known: dict[tuple[UUID, int], Any] | None = None
    ) -> dict[UUID, Any]:
        """Aggregates replayed from their latest readable snapshot and the events after it,
        one query per 500 (healing works in batches: one query per aggregate cost as much
        as the repairs themselves). An event that fails its checksum does not stop the
        replay: see Fragment.past_unreadable."""
        wanted = list(dict.fromkeys(uuids))
        found: dict[UUID, Any] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            with self._keys_held(chunk):
                found.update(self._replayed(chunk, known or {}))
        return found

    def _keys_held(self, uuids: Sequence[UUID]) -> Any:
        mapper = self.mapper
        return (
            mapper.keys_held(uuids)
            if isinstance(mapper, ChecksummedMapper)
            else contextlib.nullcontext()
        )

    def _replayed(
        self, wanted: Sequence[UUID], known: dict[tuple[UUID, int], Any]
    ) -> dict[UUID, Any]:
        found: dict[UUID, Any] = {}
        snapshot_rows, event_rows = self.tables.snapshots_and_events(wanted)
        snapshots: dict[UUID, Any] = {}
        for originator_id, version, topic, state in snapshot_rows:
            uuid = UUID(originator_id)
            if uuid not in snapshots:
                try:  # a damaged snapshot is passed over: the events are the truth
                    snapshot = self.mapper.to_domain_event(StoredEvent(uuid, version, topic, state))
                except CorruptEvent:
                    continue
                # A snapshot stands in for unreadable events only once a repair has
                # answered them: while damage is open, the events may become readable
                # again (a restored file), and replay must see it.
                if not snapshot.state.get("unreadable"):
                    snapshots[uuid] = snapshot
        events: dict[UUID, list[StoredEvent]] = {}
        for originator_id, version, topic, state in event_rows:
            uuid = UUID(originator_id)
            events.setdefault(uuid, []).append(StoredEvent(uuid, version, topic, state))
        for uuid, stored in events.items():
            snapshot = snapshots.get(uuid)
            aggregate = snapshot.mutate(None) if snapshot is not None else None
            after = aggregate.version if aggregate is not None else 0
            found[uuid] = self._replay(
                uuid, aggregate, [e for e in stored if e.originator_version > after], known
            )
        return found

    def _replay(
        self,
        uuid: UUID,
        aggregate: Any,
        stored: list[StoredEvent],
        known: dict[tuple[UUID, int], Any],
    ) -> Any:
        for event in stored:
            domain_event = known.get((uuid, event.originator_version))
            if domain_event is None:
                try:
                    domain_event = self.mapper.to_domain_event(event)
                except CorruptEvent:
                    if isinstance(aggregate, Fragment) or (
                        aggregate is None and event.topic.startswith(Fragment.TOPIC + ".")
                    ):
                        aggregate = Fragment.past_unreadable(
                            aggregate, uuid, event.originator_version, event.topic
                        )
                    elif aggregate is not None:
                        aggregate.version = event.originator_version  # a report's hole: go on
                    continue
            aggregate = domain_event.mutate(aggregate)
        return aggregate

    def fragments_at(self, position: int) -> dict[UUID, Fragment]:
        """Every fragment as it was at a log position: replayed from its events up to there
        (never from a snapshot, which may be later), one page of the log at a time."""
        found: dict[UUID, Any] = {}
        after = 0
        while True:
            rows = self.tables.scan(after, 2_000, position)
            page = [
                StoredEvent(uuid, v, t, bytes(s))
                for _, o, v, t, s in rows
                if t.startswith(Fragment.TOPIC + ".") and isinstance(uuid := _uuid_or_str(o), UUID)
            ]
            with self._keys_held(list(dict.fromkeys(e.originator_id for e in page))):
                for event in page:
                    uuid = event.originator_id
                    found[uuid] = self._replay(uuid, found.get(uuid), [event], {})
            if len(rows) < 2_000:
                return found
            after = rows[-1][0]

    def key_opens(self, uuid: UUID, key: bytes) -> bool | None:
        """Whether a key opens a fragment's sealed body in the log (AES-GCM authenticates: a
        wrong key cannot); None when the log holds no readable sealed event of it to try."""
        _, rows = self.tables.snapshots_and_events([uuid])
        for _, version, topic, state in rows:
            if not topic.endswith((".FragmentWritten", ".FragmentRevised")):
                continue
            stored = StoredEvent(uuid, version, topic, bytes(state))
            if not checksum_holds(stored):
                continue
            assert isinstance(self.mapper, ChecksummedMapper)
            with self.mapper.keys_given({str(uuid): key}):
                try:
                    event = self.mapper.to_domain_event(stored)
                except CorruptEvent:  # its checksum holds: the key does not open it
                    return False
            return getattr(event, "text", None) is not None
        return None

    def embeddings(self, hexes: list[str]) -> dict[str, bytes | None]:
        """Fragments' current embeddings as the log holds them, by uuid hex (None: none
        readable, e.g. its only event with one fails its checksum)."""
        found = self._aggregates(UUID(h) for h in hexes)
        return {
            u.hex: getattr(f, "embedding", None) if isinstance(f, Fragment) else None
            for u, f in found.items()
        }

    def answered_damage(self, uuids: list[UUID]) -> set[tuple[str, int]]:
        """(uuid, version) of unreadable events that a later event of the same fragment
        stands in for (a restated body, a new revision): not a loss any more."""
        return {
            (str(uuid), version)
            for uuid, fragment in self._aggregates(uuids).items()
            if isinstance(fragment, Fragment)
            for version in fragment.answered
        }

    def snapshot(self, *fragments: Fragment) -> None:
        """Snapshot repaired fragments, so that their state no longer depends on the events
        that cannot be read (replay starts from the latest readable snapshot)."""
        assert self.snapshots is not None
        if fragments:
            self.snapshots.put([Snapshot.take(f) for f in fragments])

    def calibration(self, namespace: str, method: str) -> ReconstructionCalibration:
        """The calibration of a reconstruction method in a namespace (a new one if none)."""
        try:
            return self._get(calibration_id(namespace, method))
        except AggregateNotFoundError:
            return ReconstructionCalibration(namespace=namespace, method=method)

    def projection_copy(self, copy: str, replica: Replica = SOLE_REPLICA) -> ProjectionCopy:
        """The record of a file of the home (see ProjectionCopy); a new one if none yet."""
        try:
            return self._get(projection_copy_id(copy, replica))
        except AggregateNotFoundError:
            return ProjectionCopy(copy=copy, replica=replica.name)

    def index_copy(self, replica: Replica = SOLE_REPLICA) -> VectorIndexCopy:
        """The record of a replica's index file (each replica's is a copy of its own)."""
        try:
            return self._get(index_copy_id(replica))
        except AggregateNotFoundError:
            return VectorIndexCopy(replica=replica.name)

    # -- use cases -------------------------------------------------------------------------------

    def write_many(self, writes: Sequence[Write], model: dict[str, Any]) -> list[Change]:
        """Add or revise fragments by id, all in one transaction: all are recorded or none."""
        current = self.fragments(dict.fromkeys(w.key for w in writes if not w.fresh))
        changed: dict[str, Fragment] = {}
        outcomes: list[Change] = []
        damaged: set[str] = set()  # revised after their log copy was found unreadable
        for w in writes:
            fragment = changed.get(w.key) or current.get(w.key)
            d = w.draft
            if fragment is None:
                if w.embedding is None:
                    raise ConflictError(f"fragment {w.key!r} vanished while it was being written")
                fragment = Fragment(
                    key=w.key,
                    namespace=d.namespace,
                    text=d.text,
                    metadata=d.metadata,
                    content_hash=d.content_hash,
                    embedding=w.embedding,
                    model=model,
                )
                outcome = "added"
            else:
                fragment.ensure_writable(d.namespace)
                if fragment.unreadable:
                    damaged.add(w.key)
                embedding = w.embedding
                if embedding is None:
                    if fragment.text != d.text:
                        raise ConflictError(
                            f"fragment {w.key!r} was revised by another writer; try again"
                        )
                    embedding = fragment.embedding
                revised = fragment.revise(d.text, d.metadata, d.content_hash, embedding)
                outcome = "revised" if revised else "unchanged"
            if outcome != "unchanged":
                changed[w.key] = fragment
            outcomes.append(Change(w.key, outcome))
        if changed:
            if isinstance(self.mapper, ChecksummedMapper) and self.mapper.keys is not None:
                self.mapper.keys.create_many(
                    [str(f.id) for key, f in changed.items() if current.get(key) is None]
                )
            # Every body is sealed with its key: fetched at once, not one query per event.
            with self._keys_held([f.id for f in changed.values()]):
                # The first write also records the store's profile, in the same transaction.
                first = (
                    []
                    if self.check_profile(model["name"], model["dimension"])
                    else [StoreProfile(model=model["name"], dimension=model["dimension"])]
                )
                try:
                    self._save(*first, *changed.values())
                except ConflictError:
                    if not first or self.profile() is None:
                        raise
                    # Another process's first write made the profile meanwhile (on a shared log
                    # several begin at once): write again against it, checked like any other.
                    return self.write_many(writes, model)
                # A new body no longer depends on the unreadable events: snapshot it.
                self.snapshot(*(changed[k] for k in damaged if k in changed))
        return outcomes

    def forget(self, key: str, reason: str) -> bool:
        """Record that the fragment is forgotten, then destroy its key: from then on no copy
        of its body in the log can be read. False if it was forgotten already."""
        fragment = self.fragment(key)
        if not fragment.forget(reason):
            return False
        self._save(fragment)
        # Events held in memory may hold its body: from now on it is read from the log, where
        # destroying the key makes it unreadable.
        self.recent.clear()
        if isinstance(self.mapper, ChecksummedMapper) and self.mapper.keys is not None:
            self.mapper.keys.destroy(str(fragment.id))
        return True

    def delete(self, key: str, reason: str = "") -> bool:
        fragment = self.fragment(key)
        if not fragment.delete(reason):
            return False
        self._save(fragment)
        return True

    def _save(self, *aggregates: Any) -> None:
        # (not Application.save: its collect_events costs a write of 1,000 fragments about
        # 25 ms of isinstance checks, and its snapshots and notifications are not used here)
        try:
            self._record(_collected(None, aggregates))
        except IntegrityError:
            raise ConflictError(CONFLICT) from None

    def record(self, *aggregates: Aggregate) -> None:
        """Save aggregates' pending events in one transaction (findings, cycles)."""
        try:
            self._record(_collected(None, aggregates))
        except IntegrityError:
            raise ConflictError(CONFLICT) from None

    def record_tracked(self, process: str, position: int, *aggregates: Aggregate) -> None:
        """Save the events a process made in answer to the log up to `position`, with that
        position, in one transaction: after a crash it resumes there, never doing work twice."""
        tracking = Tracking(application_name=process, notification_id=position)
        try:
            self._record(_collected(tracking, aggregates))
        except IntegrityError:
            raise ConflictError(f"another {process} answered these events first") from None

    def tracked_position(self, process: str) -> int:
        return self.recorder.max_tracking_id(process) or 0

    # -- the notification log, for projections ---------------------------------------------------

    def position(self) -> int:
        """The position of the last event in the log (0 when empty)."""
        return self.recorder.max_notification_id() or 0

    def _notifications(
        self, since: int = 1, until: int | None = None, kinds: Sequence[type] = (), page: int = 500
    ) -> Iterator[Any]:
        """Stored events from position `since` to `until` (both included), page by page."""
        after = max(since, 1) - 1
        topics = [get_topic(k) for k in kinds]
        while True:
            notifications = self.recorder.select_notifications(
                start=after, limit=page, stop=until, inclusive_of_start=False, topics=topics
            )
            yield from notifications
            if len(notifications) < page:
                return
            after = notifications[-1].id

    def stream(
        self, since: int = 1, until: int | None = None, kinds: Sequence[type] = ()
    ) -> Iterator[tuple[int, Any]]:
        """Every event from position `since` to `until` (both included), in log order, as
        (position, event) — or (position, CorruptEvent) for an event that fails its
        checksum, so that a reader of the whole log is told and goes on."""
        yield from self._decoded(map(_columns, self._notifications(since, until, kinds)))

    def stored(self) -> Iterator[StoredEvent]:
        """Every stored event as it is on disk (for `export --events`), in log order."""
        return self._notifications()

    def _stored_at(self, originator_id: UUID, version: int) -> list[StoredEvent]:
        """The stored event at a version, as stored (its checksum unchecked)."""
        return [
            StoredEvent(originator_id, version, topic, state)
            for topic, state in self.tables.stored_at(originator_id, version)
        ]

    def append_stored(
        self, events: Sequence[StoredEvent], copies: list[StoredEvent] | None = None
    ) -> tuple[int, int]:
        """Append events exported from a CARMA log (for `import --events`), byte for byte, in
        one transaction, chained under this log's key. An event already here with the same
        bytes is skipped (importing twice changes nothing); one whose checksum fails, or that
        differs from the event already at its place, or that skips a version, refuses the
        whole batch. An event that is damaged here, and intact in the import, is added to
        `copies` (the log stays append-only: a repair restates its body). Returns
        (appended, unchanged)."""
        copies = [] if copies is None else copies
        fresh: list[StoredEvent] = []
        latest: dict[Any, int] = {}
        for event in events:
            verified_payload(event)  # CorruptEvent: nothing is appended
            here = self._stored_at(event.originator_id, event.originator_version)
            if here:
                if here[0].topic == event.topic and not checksum_holds(here[0]):
                    # An intact copy of an event damaged here: the caller restores from it.
                    copies.append(event)
                elif here[0].state != event.state or here[0].topic != event.topic:
                    raise ConflictError(
                        f"event {event.originator_id} v{event.originator_version} differs from "
                        "the one already in this log; nothing was imported"
                    )
                latest[event.originator_id] = event.originator_version
                continue
            previous = latest.get(event.originator_id)
            if previous is None:
                stored = self.recorder.select_events(event.originator_id, desc=True, limit=1)
                previous = stored[0].originator_version if stored else 0
            if event.originator_version != previous + 1:
                raise InvalidInput(
                    f"event {event.originator_id} v{event.originator_version} follows "
                    f"v{previous}: an export must be imported whole and in order"
                )
            latest[event.originator_id] = event.originator_version
            fresh.append(event)
        if fresh:
            try:
                self.recorder.insert_events(fresh)
            except IntegrityError:
                raise ConflictError(
                    "another writer changed the log during the import; "
                    "nothing was imported, try again"
                ) from None
        return len(fresh), len(events) - len(fresh)

    def read(
        self, after: int, limit: int = 500, kinds: Sequence[type] = ()
    ) -> list[tuple[int, Any]]:
        """Decoded events after a position, in log order, optionally only of some event
        classes. An event that fails its checksum comes as its CorruptEvent: readers pass
        over it (the scrubber records the damage; a repair restates what it held)."""
        recent = self.recent.after(after, limit, tuple(kinds))
        if recent is None:
            return self._read_stored(after, limit, kinds)
        found, last = recent
        if len(found) < limit:  # the run ends here: what follows is read from the log
            found += self._read_stored(last, limit - len(found), kinds)
        return found

    def _read_stored(
        self, after: int, limit: int, kinds: Sequence[type] = ()
    ) -> list[tuple[int, Any]]:
        if kinds:
            notifications = self.recorder.select_notifications(
                start=after,
                limit=limit,
                inclusive_of_start=False,
                topics=[get_topic(k) for k in kinds],
            )
            rows = list(map(_columns, notifications))
        else:  # every event: its columns straight from the table (no object per row)
            rows = [
                (p, _uuid_or_str(o), v, t, s) for p, o, v, t, s in self.tables.scan(after, limit)
            ]
        # Their bodies' keys in one query, not one each (a rebuild reads the whole log).
        with self._keys_held(list(dict.fromkeys(row[1] for row in rows))):
            return list(self._decoded(rows))

    def _decoded(
        self, rows: Iterable[tuple[int, Any, int, str, bytes]]
    ) -> Iterator[tuple[int, Any]]:
        mapper = self.mapper
        assert isinstance(mapper, ChecksummedMapper)
        for position, originator_id, version, topic, state in rows:
            try:
                yield position, mapper.decoded(originator_id, version, topic, state, position)
            except CorruptEvent as exc:
                yield position, exc

    def unreadable(
        self, after: int = 0, upto: int | None = None, page: int = 2_000
    ) -> Iterator[Notification]:
        """Every stored event whose bytes fail their checksum, in log order, at positions
        after `after` and up to `upto` (None: to the end): the scrubber's check of the log
        itself, checksums only, nothing is decoded."""
        while True:
            rows = self.tables.scan(after, page, upto)
            for position, originator_id, version, topic, state in rows:
                # No objects per event: this pass reads much of the log.
                if len(originator_id) == 32 and digest_holds(
                    dashed_uuid(originator_id), version, topic, state
                ):
                    continue
                yield Notification(
                    originator_id=_uuid_or_str(originator_id),
                    originator_version=version,
                    topic=topic,
                    state=state,
                    id=position,
                )
            if len(rows) < page:
                return
            after = rows[-1][0]

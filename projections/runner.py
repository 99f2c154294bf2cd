"""Feeds log events to projections in order, each from the position it has applied."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any, Protocol
from uuid import UUID

from carma.domain import CorruptEvent

Batch = Sequence[tuple[int, Any]]
BODY_EVENTS = (".FragmentWritten", ".FragmentRevised")


def unreadable_body(event: Any) -> UUID | None:
    """The fragment whose body an unreadable event (a CorruptEvent in a batch) may have
    set: from there on its projections must not show an older body as the current one."""
    if (
        isinstance(event, CorruptEvent)
        and isinstance(event.originator_id, UUID)
        and event.topic.endswith(BODY_EVENTS)
    ):
        return event.originator_id
    return None


Reader = Callable[[int, int], Batch]


class Projection(Protocol):
    name: str

    @property
    def position(self) -> int: ...

    def apply(self, batch: Batch) -> None:
        """Apply the events of the batch after self.position, then record the last position."""

    def reset(self) -> None:
        """Drop all state: position zero."""


class ProjectionRunner:
    """Catches projections up with the log, reading each event once for all of them.

    The SQLite recorder cannot push notifications, so projections poll the log by position
    (the eventsourcing library's documented pattern for SQLite).
    """

    def __init__(
        self,
        read: Reader,
        head: Callable[[], int],
        projections: Sequence[Projection],
        batch_size: int = 500,
    ):
        self.read = read  # (public: a rebuild beside the ledger replays through its own runner)
        self.head = head
        self.projections = list(projections)
        self.batch_size = batch_size
        self.errors: dict[str, str] = {}  # projection name -> why it is behind

    def lag(self) -> dict[str, int]:
        head = self.head()
        return {p.name: head - p.position for p in self.projections}

    def catch_up(
        self, progress: Callable[[int], None] | None = None, *, strict: bool = False
    ) -> int:
        """Apply every event not yet applied; returns how many events were read.

        A projection that fails (a full disk, say) stops where it is and the others go on:
        reads keep being answered, and the next catch-up retries it. Its error is kept in
        `errors` until it succeeds. strict=True raises instead (a rebuild must not half-work).
        """
        try:
            head = self.head()
        except Exception as exc:  # the log cannot be read right now
            if strict:
                raise
            self.errors["log"] = f"{type(exc).__name__}: {exc}"
            return 0
        self.errors.pop("log", None)
        active = []
        for projection in self.projections:
            try:  # a projection that cannot even say where it is (a damaged file) waits
                behind = projection.position < head
            except Exception as exc:
                if strict:
                    raise
                self.errors[projection.name] = f"{type(exc).__name__}: {exc}"
                continue
            if behind:
                active.append(projection)
        if not active:
            return 0
        transactional = [p for p in active if hasattr(p, "transaction")]
        try:
            with ExitStack() as stack:
                for projection in transactional:
                    try:
                        stack.enter_context(projection.transaction())
                    except Exception as exc:  # it cannot begin: it waits, the others go on
                        if strict:
                            raise
                        self.errors[projection.name] = f"{type(exc).__name__}: {exc}"
                        active.remove(projection)
                return self._apply_until(head, active, progress, strict)
        except Exception as exc:  # a commit failed (a full disk): nothing of it applied
            if strict:
                raise
            for projection in transactional:
                self.errors[projection.name] = f"{type(exc).__name__}: {exc}"
            return 0

    def _apply_until(
        self,
        head: int,
        active: list[Projection],
        progress: Callable[[int], None] | None,
        strict: bool,
    ) -> int:
        after = min(p.position for p in active)
        read = 0
        try:
            while after < head and active:
                batch = self.read(after, self.batch_size)
                if not batch:
                    break
                for projection in list(active):
                    if projection.position >= batch[-1][0]:
                        continue
                    try:
                        projection.apply(batch)
                    except Exception as exc:
                        if strict:
                            raise
                        self.errors[projection.name] = f"{type(exc).__name__}: {exc}"
                        active.remove(projection)
                after = batch[-1][0]
                read += len(batch)
                if progress:
                    progress(len(batch))
        finally:
            # The projections that work in the background (the cache's writer process, the
            # index's thread) finish what they were given before a catch-up ends, however it
            # ends: nothing reads them half-applied.
            for projection in self.projections:
                if (flush := getattr(projection, "flush", None)) is None:
                    continue
                try:
                    flush()
                except Exception as exc:
                    if strict:
                        raise
                    self.errors[projection.name] = f"{type(exc).__name__}: {exc}"
                    if projection in active:
                        active.remove(projection)
        for projection in active:
            self.errors.pop(projection.name, None)
        return read

    def rebuild(self, progress: Callable[[int], None] | None = None) -> int:
        for projection in self.projections:
            projection.reset()
        self.errors.clear()
        return self.catch_up(progress, strict=True)

"""Feeds log events to projections in order, each from the position it has applied."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

Batch = Sequence[tuple[int, Any]]
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

    def __init__(self, read: Reader, head: Callable[[], int], projections: Sequence[Projection],
                 batch_size: int = 500):
        self._read = read
        self._head = head
        self.projections = list(projections)
        self.batch_size = batch_size

    def lag(self) -> dict[str, int]:
        head = self._head()
        return {p.name: head - p.position for p in self.projections}

    def catch_up(self, progress: Callable[[int], None] | None = None) -> int:
        """Apply every event not yet applied; returns how many events were read."""
        head = self._head()
        after = min((p.position for p in self.projections), default=head)
        read = 0
        while after < head:
            batch = self._read(after, self.batch_size)
            if not batch:
                break
            for projection in self.projections:
                if projection.position < batch[-1][0]:
                    projection.apply(batch)
            after = batch[-1][0]
            read += len(batch)
            if progress:
                progress(len(batch))
        return read

    def rebuild(self, progress: Callable[[int], None] | None = None) -> int:
        for projection in self.projections:
            projection.reset()
        return self.catch_up(progress)

"""Aggregates of healing: a whole index file as one copy, and a dream cycle's record."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

from carma.domain.fragment import CARMA_UUID_NAMESPACE, Replica
from eventsourcing.domain import Aggregate, event

VECTOR_INDEX_COPY_ID = uuid5(CARMA_UUID_NAMESPACE, "vector-index-copy")


def index_copy_id(replica: Replica) -> UUID:
    """Each replica's index file is a copy of its own (the unnamed one's keeps the old id)."""
    if not replica.name:
        return VECTOR_INDEX_COPY_ID
    return uuid5(CARMA_UUID_NAMESPACE, f"vector-index-copy@{replica.name}")


INDEX_FAULTS = ("missing", "unreadable", "corrupt", "stale")


class VectorIndexCopy(Aggregate):
    """The persisted index file: a damaged file is one finding, not one per fragment."""

    # Topics are part of the log's format (inside each event's checksum and the chain's
    # MAC): frozen as first stored, whatever the module is called now.
    TOPIC = "domain.healing:VectorIndexCopy"

    class Created(Aggregate.Created):  # the library asks every event class for a topic
        TOPIC = "domain.healing:VectorIndexCopy.Created"

    @staticmethod
    def create_id(replica: str = "", **_: Any) -> UUID:
        return index_copy_id(Replica(replica))

    @event("IndexCopyTracked", topic="domain.healing:VectorIndexCopy.IndexCopyTracked")
    def __init__(self, replica: str = "") -> None:
        # (replica defaults: copies tracked before replicas had names are the unnamed one's)
        self.fault: str | None = None
        self.replica = replica

    def mark_lost(self, fault: str, cycle_id: UUID | None) -> bool:
        """Record a finding once; the same open finding again is no event."""
        if fault not in INDEX_FAULTS:
            raise ValueError(f"unknown index fault {fault!r}")
        if self.fault is not None:
            return False
        self._lost(fault=fault, cycle_id=cycle_id)
        return True

    @event("IndexLost", topic="domain.healing:VectorIndexCopy.IndexLost")
    def _lost(self, fault: str, cycle_id: UUID | None) -> None:
        self.fault = fault

    def rebuilt(self, position: int, seconds: float, cycle_id: UUID | None) -> None:
        self._rebuilt(position=position, seconds=seconds, cycle_id=cycle_id)

    @event("IndexRebuilt", topic="domain.healing:VectorIndexCopy.IndexRebuilt")
    def _rebuilt(self, position: int, seconds: float, cycle_id: UUID | None) -> None:
        self.fault = None


class DreamCycle(Aggregate):
    """One scrub-and-heal pass: what it found, what it repaired, how long, health before/after."""

    # Topics are part of the log's format (inside each event's checksum and the chain's
    # MAC): frozen as first stored, whatever the module is called now.
    TOPIC = "domain.healing:DreamCycle"

    class Created(Aggregate.Created):  # the library asks every event class for a topic
        TOPIC = "domain.healing:DreamCycle.Created"

    @event("DreamCycleStarted", topic="domain.healing:DreamCycle.DreamCycleStarted")
    def __init__(self, trigger: str, replica: str = "") -> None:
        # replica: whose copies the cycle scrubbed and healed (the log's body is everyone's)
        self.trigger = trigger
        self.replica = replica
        self.report: dict[str, Any] | None = None

    def complete(
        self,
        found: dict[str, int],
        repaired: dict[str, int],
        seconds: dict[str, float],
        health_before: float,
        health_after: float,
    ) -> None:
        """health_before is the health as the scrub found the store; health_after, once healed."""
        if self.report is not None:
            raise ValueError("this dream cycle is already complete")
        self._completed(
            found=found,
            repaired=repaired,
            seconds=seconds,
            health_before=health_before,
            health_after=health_after,
        )

    @event("DreamCycleCompleted", topic="domain.healing:DreamCycle.DreamCycleCompleted")
    def _completed(
        self,
        found: dict[str, int],
        repaired: dict[str, int],
        seconds: dict[str, float],
        health_before: float,
        health_after: float,
    ) -> None:
        self.report = {
            "found": found,
            "repaired": repaired,
            "seconds": seconds,
            "health_before": health_before,
            "health_after": health_after,
        }


class LogHistory(Aggregate):
    """A log begun again from surviving copies after the old one was lost: the history
    before it is declared lost here, in the log itself, with what survived."""

    # Topics are part of the log's format: frozen as first stored.
    TOPIC = "domain.healing:LogHistory"

    class Created(Aggregate.Created):  # the library asks every event class for a topic
        TOPIC = "domain.healing:LogHistory.Created"

    @event("HistoryLost", topic="domain.healing:LogHistory.HistoryLost")
    def __init__(
        self,
        reason: str,
        lost_at: int,
        projected: int,
        kept: list[str],
        recovered: int,
        unrecovered: dict[str, str],
    ) -> None:
        # lost_at: where the old log ended as found (0: nothing of it was readable);
        # projected: how far the projections had applied it; kept: the files moved aside;
        # unrecovered: live fragments with no exact copy of their text left, and why.
        self.reason = reason
        self.lost_at = lost_at
        self.projected = projected
        self.kept = kept
        self.recovered = recovered
        self.unrecovered = unrecovered

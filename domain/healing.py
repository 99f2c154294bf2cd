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


PROJECTION_COPIES = ("ledger", "keywords", "keys", "keys-mirror")
PROJECTION_FAULTS = ("missing", "corrupt", "stale")


def projection_copy_id(copy: str, replica: Replica) -> UUID:
    """A file of the home other than the cache and the index, as one copy (each replica's)."""
    return uuid5(CARMA_UUID_NAMESPACE, f"projection-copy:{copy}@{replica.name}")


class ProjectionCopy(Aggregate):
    """A whole file of the home besides the cache and the vector index: the health ledger,
    its keyword index, the fragments' key store and its mirror. Damage to it is one finding,
    recorded once; its repair (rebuilt from the log, or restored from the other copy) another."""

    # Topics are part of the log's format: frozen as first stored.
    TOPIC = "domain.healing:ProjectionCopy"

    class Created(Aggregate.Created):  # the library asks every event class for a topic
        TOPIC = "domain.healing:ProjectionCopy.Created"

    @staticmethod
    def create_id(copy: str, replica: str = "", **_: Any) -> UUID:
        return projection_copy_id(copy, Replica(replica))

    @event("ProjectionCopyTracked", topic="domain.healing:ProjectionCopy.ProjectionCopyTracked")
    def __init__(self, copy: str, replica: str = "") -> None:
        if copy not in PROJECTION_COPIES:
            raise ValueError(f"unknown projection copy {copy!r}")
        self.copy = copy
        self.replica = replica
        self.fault: str | None = None

    def mark_lost(self, fault: str, detail: str, cycle_id: UUID | None) -> bool:
        """Record a finding once; the same open finding again is no event."""
        if fault not in PROJECTION_FAULTS:
            raise ValueError(f"unknown projection fault {fault!r}")
        if self.fault is not None:
            return False
        self._lost(
            copy=self.copy,
            replica=self.replica,
            fault=fault,
            detail=detail[:500],
            cycle_id=cycle_id,
        )
        return True

    @event("ProjectionLost", topic="domain.healing:ProjectionCopy.ProjectionLost")
    def _lost(
        self, copy: str, replica: str, fault: str, detail: str, cycle_id: UUID | None
    ) -> None:
        # (copy and replica named again: a projection never reads the first event back)
        self.fault = fault

    def repaired(self, method: str, seconds: float, cycle_id: UUID | None) -> bool:
        """Record the repair of an open finding; nothing open, no event."""
        if self.fault is None:
            return False
        self._repaired(
            copy=self.copy,
            replica=self.replica,
            method=method,
            seconds=seconds,
            cycle_id=cycle_id,
        )
        return True

    @event("ProjectionRepaired", topic="domain.healing:ProjectionCopy.ProjectionRepaired")
    def _repaired(
        self, copy: str, replica: str, method: str, seconds: float, cycle_id: UUID | None
    ) -> None:
        self.fault = None

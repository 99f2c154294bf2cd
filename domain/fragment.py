"""The Fragment aggregate: a short text with metadata and an embedding, and its history."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import FragmentGone, InvalidInput

# Fixed namespace for deriving aggregate ids from caller-chosen ids: the same key always
# names the same aggregate, in every process and every replay.
CARMA_UUID_NAMESPACE = UUID("5f6c2f0e-8a57-4c1b-9d8e-0c4a2f6d7b31")
STORE_PROFILE_ID = uuid5(CARMA_UUID_NAMESPACE, "store-profile")


def fragment_uuid(key: str) -> UUID:
    """The aggregate id of the fragment a caller knows as `key`."""
    return uuid5(CARMA_UUID_NAMESPACE, "fragment:" + key)


class Fragment(Aggregate):
    """A fragment's whole life: written, revised, deleted; its copies lost and reconstructed."""

    @staticmethod
    def create_id(key: str, **_: Any) -> UUID:
        return fragment_uuid(key)

    @event("FragmentWritten")
    def __init__(
        self,
        key: str,
        namespace: str,
        text: str,
        metadata: dict[str, Any],
        content_hash: str,
        embedding: bytes,
        model: dict[str, Any],
    ):
        self.key = key
        self.namespace = namespace
        self.text = text
        self.metadata = metadata
        self.content_hash = content_hash
        self.embedding = embedding
        self.model = model
        self.content_version = 1  # the version of the event that set the current content
        self.forgotten = False
        self.deleted = False
        self.deleted_reason: str | None = None
        # Copies found lost or damaged and not yet repaired: copy -> fault.
        self.faults: dict[str, str] = {}

    def ensure_writable(self, namespace: str) -> None:
        """A write to this fragment's id must keep its namespace and find it not deleted."""
        if self.deleted:
            raise FragmentGone(self.key)
        if namespace != self.namespace:
            raise InvalidInput(
                f"fragment {self.key!r} lives in namespace {self.namespace!r}; "
                f"it cannot be written to {namespace!r}"
            )

    def has_content(self, text: str, metadata: dict[str, Any]) -> bool:
        return self.text == text and self.metadata == metadata

    def revise(
        self, text: str, metadata: dict[str, Any], content_hash: str, embedding: bytes
    ) -> bool:
        """Record a new text and/or metadata. Identical content is no change: returns False."""
        if self.deleted:
            raise FragmentGone(self.key)
        if self.has_content(text, metadata):
            return False
        self._revised(text=text, metadata=metadata, content_hash=content_hash, embedding=embedding)
        return True

    @event("FragmentRevised")
    def _revised(
        self, text: str, metadata: dict[str, Any], content_hash: str, embedding: bytes
    ) -> None:
        self.text = text
        self.metadata = metadata
        self.content_hash = content_hash
        self.embedding = embedding
        # An event's body runs before the aggregate's version advances to the event's.
        self.content_version = self.version + 1

    def delete(self, reason: str = "") -> bool:
        """Retire the fragment; its events stay in the log for audit. Deleting twice is no change."""
        if self.deleted:
            return False
        self._deleted(reason=reason)
        return True

    @event("FragmentDeleted")
    def _deleted(self, reason: str) -> None:
        self.deleted = True
        self.deleted_reason = reason
        self.faults = {}  # a deleted fragment's copies are no longer owed a repair


    def forget(self, reason: str) -> bool:
        """Forget for good: the body and embedding become unreadable (their key is destroyed
        outside the log); that the fragment existed, and when and why it was forgotten, stays."""
        if self.forgotten:
            return False
        self._forgotten(reason=reason)
        return True

    @event("FragmentForgotten")
    def _forgotten(self, reason: str) -> None:
        self.forgotten = True
        self.deleted = True  # never live again, never healed, never reconstructed
        self.deleted_reason = reason
        self.text = None
        self.metadata = {}
        self.embedding = None
        self.faults = {}

    # -- healing -----------------------------------------------------------------------------

    def mark_lost(self, copy: str, fault: str, cycle_id: UUID | None) -> bool:
        """Record that a copy is lost or damaged. An open finding is recorded once: False."""
        if copy not in COPIES or fault not in FAULTS:
            raise ValueError(f"unknown copy/fault {copy}/{fault}")
        if self.deleted and fault != "extra":
            return False  # a deleted fragment has no copies to lose
        if copy in self.faults:
            return False
        self._lost(copy=copy, fault=fault, cycle_id=cycle_id)
        return True

    @event("FragmentLost")
    def _lost(self, copy: str, fault: str, cycle_id: UUID | None) -> None:
        self.faults[copy] = fault

    def reconstruct(self, copy: str, method: str, fidelity: float, content_hash: str,
                    sources: list[str], cycle_id: UUID | None) -> None:
        """Record a repair of a copy. Exact methods restore the recorded body, fidelity 1.0."""
        if copy not in self.faults:
            raise ValueError(f"copy {copy!r} of fragment {self.key!r} has no open fault")
        if not 0.0 <= fidelity <= 1.0:
            raise ValueError(f"fidelity {fidelity} is outside [0, 1]")
        if method.startswith("exact-") and (fidelity != 1.0 or content_hash != self.content_hash):
            raise ValueError("an exact repair has fidelity 1.0 and the recorded content hash")
        self._reconstructed(copy=copy, method=method, fidelity=fidelity,
                            content_hash=content_hash, sources=sources, cycle_id=cycle_id)

    @event("FragmentReconstructed")
    def _reconstructed(self, copy: str, method: str, fidelity: float, content_hash: str,
                       sources: list[str], cycle_id: UUID | None) -> None:
        del self.faults[copy]


COPIES = ("cache", "index", "log-body")
FAULTS = ("missing", "unreadable", "corrupt", "stale", "extra")


class StoreProfile(Aggregate):
    """What a store was created with, so that no process writes vectors of another model."""

    @staticmethod
    def create_id(**_: Any) -> UUID:
        return STORE_PROFILE_ID

    @event("StoreCreated")
    def __init__(self, model: str, dimension: int):
        self.model = model
        self.dimension = dimension

"""The Fragment aggregate: a short text with metadata and an embedding, and its history."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid5

from carma.domain.errors import FragmentGone, InvalidInput
from carma.domain.values import content_hash as hash_of
from eventsourcing.domain import Aggregate, event

# Fixed namespace for deriving aggregate ids from caller-chosen ids: the same key always
# names the same aggregate, in every process and every replay.
CARMA_UUID_NAMESPACE = UUID("5f6c2f0e-8a57-4c1b-9d8e-0c4a2f6d7b31")
STORE_PROFILE_ID = uuid5(CARMA_UUID_NAMESPACE, "store-profile")


def fragment_uuid(key: str) -> UUID:
    """The aggregate id of the fragment a caller knows as `key`."""
    return uuid5(CARMA_UUID_NAMESPACE, "fragment:" + key)


def dashed_uuid(hex_: str) -> str:
    """A uuid's usual form from its 32 hex digits: str(UUID(hex_)) without making one (the
    log's and the cache's scans meet one per event or file)."""
    return f"{hex_[:8]}-{hex_[8:12]}-{hex_[12:16]}-{hex_[16:20]}-{hex_[20:]}"


class Fragment(Aggregate):
    """A fragment's whole life: written, revised, deleted; its copies lost and reconstructed."""

    # Topics are part of the log's format (inside each event's checksum and the chain's
    # MAC): frozen as first stored, whatever the module is called now.
    TOPIC = "domain.fragment:Fragment"

    class Created(Aggregate.Created):  # the library asks every event class for a topic
        TOPIC = "domain.fragment:Fragment.Created"

    # The method that rebuilt an approximate body (a class default: older snapshots lack it).
    reconstructed_by: str | None = None
    # How many times that body has been refined since it was first rebuilt (its calibration
    # curve is that stage's); derived from the events, so a class default serves old snapshots.
    refinements: int = 0

    @staticmethod
    def create_id(key: str, **_: Any) -> UUID:
        return fragment_uuid(key)

    @event("FragmentWritten", topic="domain.fragment:Fragment.FragmentWritten")
    def __init__(
        self,
        key: str,
        namespace: str,
        text: str,
        metadata: dict[str, Any],
        content_hash: str,
        embedding: bytes,
        model: dict[str, Any],
        recovered: dict[str, Any] | None = None,
    ):
        # recovered: set on a fragment recorded again from a surviving copy after its log was
        # lost (carma.recovery): which copy, what its checksum was checked against, and the
        # version it had. Its history before that is declared lost (LogHistory).
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
        self.approximate = False  # the body is a reconstruction, not the original
        self.fidelity = 1.0
        # Versions of this fragment's events whose bytes fail their checksum, and those of
        # them a later repair has answered (a restatement of the body, and a snapshot).
        self.unreadable: list[int] = []
        self.answered: list[int] = []
        self.sources: list[str] = []  # ids a reconstruction of the body drew on

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
        """Record a new text, metadata and/or vector. Identical content is no change: False."""
        if self.deleted:
            raise FragmentGone(self.key)
        if self.has_content(text, metadata) and embedding == self.embedding:
            return False
        self._revised(
            text=text,
            metadata=metadata,
            content_hash=content_hash,
            embedding=embedding,
            key=self.key,
            namespace=self.namespace,
        )
        return True

    @event("FragmentRevised", topic="domain.fragment:Fragment.FragmentRevised")
    def _revised(
        self,
        text: str,
        metadata: dict[str, Any],
        content_hash: str,
        embedding: bytes,
        key: str,
        namespace: str,
    ) -> None:
        # A revision names its fragment too: its projections never depend on reading the
        # first event (which may be unreadable, or not at hand in a later batch).
        self.text = text
        self.metadata = metadata
        self.content_hash = content_hash
        self.embedding = embedding
        self.approximate, self.fidelity, self.sources = False, 1.0, []  # a new body, whole
        self.reconstructed_by, self.refinements = None, 0
        # ...which answers any damage to the log's copy of the old one, and every copy found
        # lost or damaged before it: the projections rewrite each copy from this event, as
        # from a restatement (a copy they cannot rewrite is found again by the next scrub).
        # Findings about copies of a lost body are left open until then, so nothing else
        # would answer them.
        self.faults = {}
        self.answered = sorted(set(self.answered) | set(self.unreadable))
        self.unreadable = []
        # An event's body runs before the aggregate's version advances to the event's.
        self.content_version = self.version + 1

    def delete(self, reason: str = "") -> bool:
        """Retire the fragment; its events stay in the log for audit. Twice is no change."""
        if self.deleted:
            return False
        self._deleted(reason=reason)
        return True

    @event("FragmentDeleted", topic="domain.fragment:Fragment.FragmentDeleted")
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

    @event("FragmentForgotten", topic="domain.fragment:Fragment.FragmentForgotten")
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
        if (
            copy_kind(copy) not in COPIES
            or fault not in FAULTS
            or (copy_kind(copy) == "log-body" and copy != "log-body")
        ):
            raise ValueError(f"unknown copy/fault {copy}/{fault}")
        if self.deleted and fault != "extra":
            return False  # a deleted fragment has no copies to lose
        if copy in self.faults:
            return False
        self._lost(copy=copy, fault=fault, cycle_id=cycle_id, versions=[], recorded={})
        return True

    def mark_unreadable(
        self, versions: list[int], recorded: dict[str, Any], cycle_id: UUID | None
    ) -> bool:
        """Record that events of this fragment fail their checksum (the log's own copy of
        its body is damaged). `recorded` is what an independent record (the health ledger)
        still knows of the fragment: key, namespace, content_hash, when it was written —
        never its text or metadata, which would outlive a forgetting in the log. Damage
        already recorded, or answered by a repair, is not recorded again: False."""
        if self.deleted:
            return False  # a deleted or forgotten fragment's body is owed no repair
        fresh = sorted(set(versions) - set(self.answered))
        if not fresh or "log-body" in self.faults:
            return False
        recorded = {k: recorded[k] for k in RECORDED if recorded.get(k) is not None}
        self._lost(
            copy="log-body", fault="corrupt", cycle_id=cycle_id, versions=fresh, recorded=recorded
        )
        return True

    @event("FragmentLost", topic="domain.fragment:Fragment.FragmentLost")
    def _lost(
        self,
        copy: str,
        fault: str,
        cycle_id: UUID | None,
        versions: list[int],
        recorded: dict[str, Any],
    ) -> None:
        self.faults[copy] = fault
        for name, value in recorded.items():  # fill in what an unreadable event took away
            if name in IDENTITY and getattr(self, name, None) is None:
                setattr(self, name, value)
        self.unreadable = sorted(set(self.unreadable) | set(versions))

    def keep_embedding(self, embedding: bytes, cycle_id: UUID | None) -> bool:
        """Keep in the log the embedding of a body that cannot be rebuilt yet, found in
        another copy (the vector index): no later rebuild of the projections loses it, and a
        later cycle can rebuild the text from it once the namespace has neighbours."""
        if self.deleted or self.embedding is not None or "log-body" not in self.faults:
            return False
        self._embedding_kept(embedding=embedding, cycle_id=cycle_id)
        return True

    @event("EmbeddingKept", topic="domain.fragment:Fragment.EmbeddingKept")
    def _embedding_kept(self, embedding: bytes, cycle_id: UUID | None) -> None:
        self.embedding = embedding

    def is_original(self, text: str, metadata: dict[str, Any] | None) -> bool:
        """Whether a body can be proven the original: its text has the recorded content
        hash, and its metadata is known (None: no record of it survives; the hash covers the
        text alone)."""
        return metadata is not None and hash_of(text) == self.content_hash

    @property
    def body_known(self) -> bool:
        """Whether the log still holds the current body (text, metadata and embedding)."""
        return self.text is not None and self.embedding is not None

    @classmethod
    def past_unreadable(
        cls, fragment: Fragment | None, uuid: UUID, version: int, topic: str
    ) -> Fragment:
        """The state after an event of this fragment that cannot be read (its bytes fail
        their checksum), given the event's kind as the stored row names it: whatever body it
        may have set is unknown; a deletion or a forgetting still counts. Replay goes on
        past it, so that the rest of the fragment's history stays usable."""
        if fragment is None:
            fragment = object.__new__(cls)
            epoch = datetime.fromtimestamp(0, UTC)
            fragment.__base_init__(uuid, version, epoch)
            fragment.__dict__.update(
                key=None,
                namespace=None,
                text=None,
                metadata=None,
                content_hash=None,
                embedding=None,
                model=None,
                content_version=version,
                forgotten=False,
                deleted=False,
                deleted_reason=None,
                faults={},
                approximate=False,
                fidelity=1.0,
                unreadable=[],
                answered=[],
                sources=[],
            )
        kind = topic.rpartition(".")[2]
        if kind in ("FragmentWritten", "FragmentRevised"):
            fragment.text = fragment.metadata = fragment.embedding = None
            fragment.content_hash = None  # which text it was is for a record elsewhere to say
            fragment.content_version = version
            fragment.approximate, fragment.fidelity = False, 1.0
        # (An unreadable reconstruction leaves the body as the events before it set it.)
        elif kind == "FragmentDeleted":
            fragment.deleted = True
        elif kind == "FragmentForgotten":
            fragment.deleted = fragment.forgotten = True
            fragment.text = fragment.metadata = fragment.embedding = None
        if version not in fragment.unreadable:
            fragment.unreadable = [*fragment.unreadable, version]
        fragment.version = version
        return fragment

    def reconstruct(
        self,
        copy: str,
        method: str,
        fidelity: float,
        content_hash: str,
        sources: list[str],
        cycle_id: UUID | None,
    ) -> None:
        """Record a repair of a cache or index copy, exactly from the log."""
        if copy not in self.faults or copy == "log-body":
            raise ValueError(f"copy {copy!r} of fragment {self.key!r} has no open fault")
        if method != "exact-log" or fidelity != 1.0 or content_hash != self.content_hash:
            raise ValueError("an exact repair of a copy has fidelity 1.0 and the recorded hash")
        self._reconstructed(
            copy=copy,
            method=method,
            fidelity=fidelity,
            content_hash=content_hash,
            sources=sources,
            cycle_id=cycle_id,
            text=None,
            metadata=None,
            embedding=None,
            answers=[],
            key=None,
            namespace=None,
        )

    def restore_body(
        self,
        method: str,
        fidelity: float,
        text: str,
        metadata: dict[str, Any] | None,
        embedding: bytes,
        sources: list[str],
        cycle_id: UUID | None,
        expected_recall: float | None = None,
    ) -> bool:
        """Restate the fragment's body in the log after its own copy was damaged, or improve
        an approximate one. Exact methods (`exact-log`: the body is still readable from
        other events; `exact-copy`: a copy whose text has the recorded content hash) have
        fidelity 1.0; a reconstruction (`semantic-blend`, ...) is approximate, and is
        recorded only when it raises the fidelity: fidelity never goes down. Never for a
        deleted or forgotten fragment. Returns False when nothing is recorded.

        `metadata` None: unknown (no record of it survives), so the body cannot be exact,
        whatever its text.

        `expected_recall`: for a reconstruction, the share of the original's words it is
        expected to hold, read off its namespace's calibration at this fidelity and at the
        `next_refinement` stage (None: not calibrated)."""
        if self.deleted:
            return False
        if not 0.0 <= fidelity <= 1.0:
            raise ValueError(f"fidelity {fidelity} is outside [0, 1]")
        exact = method.startswith("exact-")
        if exact:
            expected_recall = None  # it is the original: nothing to expect
        elif expected_recall is not None and not 0.0 <= expected_recall <= 1.0:
            raise ValueError(f"expected recall {expected_recall} is outside [0, 1]")
        if exact and (fidelity != 1.0 or not self.is_original(text, metadata)):
            raise ValueError(
                "an exact repair has fidelity 1.0, the recorded content hash and known metadata"
            )
        damaged = "log-body" in self.faults
        if not damaged and not self.approximate:
            return False  # the body is whole: nothing to restore
        if not exact and not damaged and fidelity <= self.fidelity:
            return False  # a refinement that does not improve is not one
        self._reconstructed(
            copy="log-body",
            method=method,
            fidelity=fidelity,
            content_hash=self.content_hash,
            sources=sources,
            cycle_id=cycle_id,
            text=text,
            metadata=metadata,
            # every damaged version it stands in for, earlier ones too:
            # a later reader may not be able to read the earlier repairs
            embedding=embedding,
            answers=sorted(set(self.answered) | set(self.unreadable)),
            key=self.key,
            namespace=self.namespace,
            expected_recall=expected_recall,
            refinement=None if exact else self.next_refinement,
        )
        return True

    @property
    def next_refinement(self) -> int:
        """The stage an approximate body restored now would be at: 0 for a first rebuild (of
        a damaged body), one more than the current body's for a refinement of it."""
        if "log-body" in self.faults or not self.approximate:
            return 0
        return self.refinements + 1

    @event("FragmentReconstructed", topic="domain.fragment:Fragment.FragmentReconstructed")
    def _reconstructed(
        self,
        copy: str,
        method: str,
        fidelity: float,
        content_hash: str,
        sources: list[str],
        cycle_id: UUID | None,
        text: str | None,
        metadata: dict[str, Any] | None,
        embedding: bytes | None,
        answers: list[int],
        key: str | None,
        namespace: str | None,
        expected_recall: float | None = None,
        refinement: int | None = None,
    ) -> None:
        # (expected_recall and refinement default: events recorded before calibration, or
        # before its stages, lack them)
        # A restatement names the fragment too, so that its projections can be rebuilt
        # from it alone when the event that first named it cannot be read.
        self.faults.pop(copy, None)
        if copy == "log-body":
            # The projections rewrite every copy from this restatement; a copy they cannot
            # rewrite is found again by the next scrub.
            self.faults = {}
            self.text, self.metadata, self.embedding = text, metadata, embedding
            self.approximate = not method.startswith("exact-")
            self.fidelity = fidelity
            self.reconstructed_by = None if not self.approximate else method
            self.refinements = refinement or 0
            self.content_version = self.version + 1
            self.sources = list(sources)
            self.answered = sorted(set(self.answered) | set(answers))
            self.unreadable = [v for v in self.unreadable if v not in answers]


COPIES = ("cache", "index", "log-body")
_REPLICA = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")


def copy_kind(copy: str) -> str:
    """What kind of copy a copy's name names: "cache@r1" is a cache file of replica r1."""
    return copy.partition("@")[0]


@dataclass(frozen=True)
class Replica:
    """One home's copies of the log's fragments (cache files, the vector index). A store on
    its own SQLite file has one, unnamed, whose copies are plainly "cache" and "index".
    Processes that share one log (on PostgreSQL) each keep copies of their own, named after
    their replica ("cache@r1"): a copy one of them lost is that one's to find and repair.
    The log's own copy of a body ("log-body") is every replica's."""

    name: str = ""

    def __post_init__(self) -> None:
        if self.name and not _REPLICA.fullmatch(self.name):
            raise ValueError(f"a replica's name is 1-40 of a-z, 0-9 and -, not {self.name!r}")

    def copy(self, kind: str) -> str:
        """This replica's name for a kind of copy."""
        return kind if not self.name or kind == "log-body" else f"{kind}@{self.name}"

    def owns(self, copy: str) -> bool:
        """Whether a copy is this replica's to check and repair."""
        return copy == "log-body" or copy.partition("@")[2] == self.name

    def process(self, name: str) -> str:
        """A process's name in this replica (each replica's healer tracks its own position)."""
        return f"{name}@{self.name}" if self.name else name


SOLE_REPLICA = Replica()  # a store on its own SQLite file
# What an independent record may tell of a fragment whose own events are unreadable.
# What a finding about the log's own copy of a body records of the fragment from the ledger:
# its identity, and the version and vector fingerprint of its content, so that a ledger built
# later from the log, meeting the unreadable event, still knows them.
RECORDED = ("key", "namespace", "content_hash", "written_at", "version", "embedding_fingerprint")
IDENTITY = ("key", "namespace", "content_hash", "written_at")
FAULTS = ("missing", "unreadable", "corrupt", "stale", "extra")


class StoreProfile(Aggregate):
    """What a store was created with, so that no process writes vectors of another model."""

    # Topics are part of the log's format (inside each event's checksum and the chain's
    # MAC): frozen as first stored, whatever the module is called now.
    TOPIC = "domain.fragment:StoreProfile"

    class Created(Aggregate.Created):  # the library asks every event class for a topic
        TOPIC = "domain.fragment:StoreProfile.Created"

    @staticmethod
    def create_id(**_: Any) -> UUID:
        return STORE_PROFILE_ID

    @event("StoreCreated", topic="domain.fragment:StoreProfile.StoreCreated")
    def __init__(self, model: str, dimension: int):
        self.model = model
        self.dimension = dimension

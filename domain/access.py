"""The AccessKey aggregate: a key to the store's HTTP service, scoped to namespaces.

The log records that a key was issued (its id, the digest of its secret, the namespaces and
rights it grants) and that it was revoked: an audit trail every process on the log shares, so
that every server on one log knows the same keys. The secret itself is never recorded; a digest
of a 256-bit random secret reveals nothing usable.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

from carma.domain.fragment import CARMA_UUID_NAMESPACE
from eventsourcing.domain import Aggregate, event

#: What a key may do: read (get, search, history, export, health), write (add, revise,
#: delete, forget) and admin (dream, verify, metrics, keys). Each is granted on its own.
RIGHTS = ("read", "write", "admin")


def access_key_uuid(key_id: str) -> UUID:
    """The aggregate id of the key whose public id is `key_id`."""
    return uuid5(CARMA_UUID_NAMESPACE, "access-key:" + key_id)


class AccessKey(Aggregate):
    """One key: issued once, revoked at most once."""

    # Topics are part of the log's format (inside each event's checksum and the chain's
    # MAC): frozen as first stored, whatever the module is called now.
    TOPIC = "domain.access:AccessKey"

    class Created(Aggregate.Created):  # the library asks every event class for a topic
        TOPIC = "domain.access:AccessKey.Created"

    @staticmethod
    def create_id(key_id: str, **_: Any) -> UUID:
        return access_key_uuid(key_id)

    @classmethod
    def issue(
        cls,
        key_id: str,
        digest: str,
        namespaces: list[str] | None,
        rights: list[str],
        label: str = "",
    ) -> AccessKey:
        """A new key's record (checked here: an event, once stored, is replayed as it is)."""
        unknown = set(rights) - set(RIGHTS)
        if unknown or not rights:
            raise ValueError(f"rights are some of {', '.join(RIGHTS)}, not {sorted(unknown)}")
        ordered = [r for r in RIGHTS if r in rights]
        return cls(key_id=key_id, digest=digest, namespaces=namespaces, rights=ordered, label=label)

    @event("KeyIssued", topic="domain.access:AccessKey.KeyIssued")
    def __init__(
        self,
        key_id: str,
        digest: str,
        namespaces: list[str] | None,
        rights: list[str],
        label: str = "",
    ) -> None:
        # namespaces None: every namespace, present and future; digest: sha256 of the secret.
        self.key_id = key_id
        self.digest = digest
        self.namespaces = namespaces
        self.rights = rights
        self.label = label
        self.revoked: str | None = None  # the reason, once revoked

    def revoke(self, reason: str) -> bool:
        """Revoke the key; False if it was revoked already (a retry changes nothing)."""
        if self.revoked is not None:
            return False
        self._revoked(reason=reason)
        return True

    @event("KeyRevoked", topic="domain.access:AccessKey.KeyRevoked")
    def _revoked(self, reason: str) -> None:
        self.revoked = reason

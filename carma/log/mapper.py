"""The log's mapper: how each event is stored.

Every stored event is framed as MAGIC + digest + payload, where the digest covers the event's
aggregate id, version, topic and payload. A damaged byte anywhere in a stored event is detected
on read and raised as CorruptEvent naming the event; it is never decoded into a wrong value.
A fragment's body (text, metadata, embedding) is sealed under the fragment's own key
(crypto-shredding: see carma.log.keys).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.domain import DomainEventProtocol, Snapshot
from eventsourcing.persistence import Mapper, StoredEvent, Transcoding

from carma.domain import CorruptEvent, Fragment
from carma.log.keys import FragmentKeys


class BytesAsBase64(Transcoding):
    """Embeddings travel as float32 bytes, stored as base64: 3.6x smaller than a list of floats."""

    type = bytes
    name = "b64"

    def encode(self, obj: bytes) -> str:
        return base64.b64encode(obj).decode("ascii")

    def decode(self, data: str) -> bytes:
        # (b64decode's own checks of its argument were a tenth of a replay's decode)
        return binascii.a2b_base64(data)


SEALED_EVENTS = (
    Fragment.FragmentWritten,
    Fragment.FragmentRevised,
    Fragment.FragmentReconstructed,
    Fragment.EmbeddingKept,
    Snapshot,
)
_MAGIC = b"C1"
_DIGEST_SIZE = 16


def _digest(originator_id: UUID | str, version: int, topic: str, payload: bytes) -> bytes:
    h = hashlib.blake2b(digest_size=_DIGEST_SIZE)
    h.update(f"{originator_id}\x1f{version}\x1f{topic}\x1f".encode())
    h.update(payload)
    return h.digest()


SEALED_FIELDS = ("text", "metadata", "embedding")


class ChecksummedMapper(Mapper[UUID]):
    """Adds a checksum to every stored event and verifies it before decoding; seals each
    fragment's body (text, metadata, embedding) under the fragment's own key when it has a
    key store (crypto-shredding: see carma.log.keys)."""

    keys: FragmentKeys | None = None

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._held = threading.local()  # keys fetched for the decodes under way (keys_held)

    @contextlib.contextmanager
    def keys_held(self, uuids: Sequence[UUID]) -> Iterator[None]:
        """Fetch these fragments' keys at once for the encodes and decodes in the block, on
        this thread (a replay of many fragments, a write of many: one query per batch instead
        of one per fragment, a round trip each on PostgreSQL). They are forgotten after it: a
        key destroyed later must not outlive its destruction here."""
        if self.keys is None:
            yield
            return
        before = getattr(self._held, "keys", None)
        self._held.keys = self.keys.keys_for([str(u) for u in uuids])
        try:
            yield
        finally:
            self._held.keys = before

    @contextlib.contextmanager
    def keys_given(self, keys: dict[str, bytes]) -> Iterator[None]:
        """Decode with these keys, in the block, on this thread (a key tried against the log
        before a copy of the key store is repaired with it)."""
        before = getattr(self._held, "given", None)
        self._held.given = keys
        try:
            yield
        finally:
            self._held.given = before

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        if self.keys is not None and isinstance(domain_event, SEALED_EVENTS):
            if isinstance(domain_event, Snapshot):
                domain_event = self._sealed_snapshot(domain_event)
            elif getattr(domain_event, "embedding", None) is not None:
                domain_event = self._sealed(domain_event)
        stored = super().to_stored_event(domain_event)
        digest = _digest(
            stored.originator_id, stored.originator_version, stored.topic, stored.state
        )
        return replace(stored, state=_MAGIC + digest + stored.state)

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        return self.decoded(
            stored_event.originator_id,
            stored_event.originator_version,
            stored_event.topic,
            stored_event.state,
            getattr(stored_event, "id", None),
        )

    def decoded(
        self,
        originator_id: UUID,
        version: int,
        topic: str,
        state: bytes,
        position: int | None = None,
    ) -> DomainEventProtocol[UUID]:
        """A stored event's domain event from its columns (a replay reads them straight from
        the log's table: no notification object, and no copy of the stored event, per row);
        CorruptEvent if its checksum fails or no key opens its body."""
        uuid = str(originator_id)  # (once: the digest and the key store take it as text)
        if not digest_holds(uuid, version, topic, state):
            raise CorruptEvent(
                originator_id=originator_id, version=version, topic=topic, position=position
            )
        event = super().to_domain_event(StoredEvent(originator_id, version, topic, state[_HEAD:]))
        try:
            if "sealed" in vars(event):
                self._unseal(event, uuid)
            elif isinstance(event, Snapshot) and "sealed" in event.state:
                self._unseal_snapshot(event)
        except InvalidTag:  # no key at hand opens the body: it cannot be read, as if damaged
            raise CorruptEvent(
                originator_id=originator_id, version=version, topic=topic, position=position
            ) from None
        return event

    def _sealed_snapshot(self, snapshot: Any) -> Any:
        """A fragment's snapshot holds its body: seal it like the events that set it."""
        if snapshot.state.get("text") is None and snapshot.state.get("embedding") is None:
            return snapshot
        carrier = type("Body", (), {})()
        vars(carrier).update(
            originator_id=snapshot.originator_id, **{k: snapshot.state[k] for k in SEALED_FIELDS}
        )
        sealed = vars(self._sealed(carrier))
        state = {k: v for k, v in snapshot.state.items() if k not in SEALED_FIELDS}
        state.update(sealed=sealed["sealed"], sealed_embedding=sealed["sealed_embedding"])
        return replace(snapshot, state=state)

    def _unseal_snapshot(self, snapshot: Any) -> None:
        carrier = type("Body", (), {})()
        vars(carrier).update(
            originator_id=snapshot.originator_id,
            sealed=snapshot.state.pop("sealed"),
            sealed_embedding=snapshot.state.pop("sealed_embedding"),
        )
        self._unseal(carrier)
        snapshot.state.update({k: vars(carrier)[k] for k in SEALED_FIELDS})

    def _sealed(self, event: Any) -> Any:
        assert self.keys is not None
        uuid = str(event.originator_id)
        held = getattr(self._held, "keys", None)
        raw_key = held.get(uuid) if held is not None else None
        key = AESGCM(raw_key or self.keys.key_for(uuid, create=True))
        body = json.dumps({k: vars(event)[k] for k in _body_fields(event)}).encode("utf-8")
        state = {k: v for k, v in vars(event).items() if k not in SEALED_FIELDS}
        # The embedding is sealed apart, as raw float32 bytes: base64 once, not twice.
        state["sealed"] = _seal(key, body)
        state["sealed_embedding"] = _seal(key, event.embedding)
        sealed = object.__new__(type(event))
        object.__setattr__(sealed, "__dict__", state)
        return sealed

    def _unseal(self, event: Any, uuid: str | None = None) -> None:
        state = vars(event)
        sealed, sealed_embedding = state.pop("sealed"), state.pop("sealed_embedding")
        uuid = str(event.originator_id) if uuid is None else uuid
        raw_key = self._key_for(uuid)
        if raw_key is None:  # forgotten: the key is gone, and with it every copy of the body
            state.update(dict.fromkeys(_body_fields(event)), embedding=None)
            return
        try:
            body, embedding = _open_body(raw_key, sealed, sealed_embedding)
        except InvalidTag:
            # A key damaged in one copy of the key store: the other copy's may open it (the
            # dream cycle's check finds the two copies differ, and repairs the wrong one).
            given = uuid in (getattr(self._held, "given", None) or {})
            candidates = getattr(self.keys, "key_candidates", None)
            for other in [] if given or candidates is None else candidates(uuid):
                if other == raw_key:
                    continue
                try:
                    body, embedding = _open_body(other, sealed, sealed_embedding)
                    break
                except InvalidTag:
                    continue
            else:
                raise
        state.update(json.loads(body), embedding=embedding)

    def _key_for(self, uuid: str) -> bytes | None:
        given = getattr(self._held, "given", None)
        if given is not None and uuid in given:
            return given[uuid]
        if self.keys is None:
            return None
        held = getattr(self._held, "keys", None)
        return held[uuid] if held is not None and uuid in held else self.keys.key_for(uuid)


def _body_fields(event: Any) -> tuple[str, ...]:
    """The sealed fields besides the embedding (a kept embedding has no text)."""
    return () if isinstance(event, Fragment.EmbeddingKept) else ("text", "metadata")


def _open_body(raw_key: bytes, sealed: bytes, sealed_embedding: bytes) -> tuple[bytes, bytes]:
    key = AESGCM(raw_key)
    return _unseal(key, sealed), _unseal(key, sealed_embedding)


def _seal(key: AESGCM, plaintext: bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + key.encrypt(nonce, plaintext, None)


def _unseal(key: AESGCM, sealed: bytes) -> bytes:
    return key.decrypt(sealed[:12], sealed[12:], None)


def checksum_holds(stored: StoredEvent) -> bool:
    try:
        verified_payload(stored)
    except CorruptEvent:
        return False
    return True


_HEAD = len(_MAGIC) + _DIGEST_SIZE


def digest_holds(originator_id: UUID | str, version: int, topic: str, state: Any) -> bool:
    """Whether a stored event's bytes are framed and match their digest."""
    return (
        isinstance(state, bytes)
        and len(state) >= _HEAD
        and state[: len(_MAGIC)] == _MAGIC
        and hmac.compare_digest(
            state[len(_MAGIC) : _HEAD], _digest(originator_id, version, topic, state[_HEAD:])
        )
    )


def verified_payload(stored: StoredEvent) -> bytes:
    """The payload of a stored event whose checksum holds; CorruptEvent otherwise."""
    if not digest_holds(
        stored.originator_id, stored.originator_version, stored.topic, stored.state
    ):
        raise CorruptEvent(
            originator_id=stored.originator_id,
            version=stored.originator_version,
            topic=stored.topic,
            position=getattr(stored, "id", None),
        )
    return stored.state[_HEAD:]

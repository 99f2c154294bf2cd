"""The log on a real database (SQLite or PostgreSQL): compact embeddings, checksums verified
on read."""

import sqlite3
from uuid import UUID

import pytest
from carma.domain import CorruptEvent
from eventsourcing.persistence import StoredEvent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carma.log import verified_payload
from tests.conftest import damage_event, stored_rows


def flip(mem, position, offset):
    ((uuid, version),) = [(o, v) for p, o, v, _, _ in stored_rows(mem) if p == position]

    def flipped(state):
        damaged = bytearray(state)
        damaged[offset % len(damaged)] ^= 0x01
        return damaged

    assert damage_event(mem, UUID(uuid), version, flipped)


def test_embeddings_are_stored_as_float32_bytes_not_float_lists(mem):
    mem.add("A sentence about compact storage of vectors.")
    _, _, _, topic, state = stored_rows(mem)[-1]
    assert topic.endswith("FragmentWritten")
    # 64 float32 = 256 bytes, sealed (+28) = 380 base64 characters; a JSON list of the same
    # floats would take ~1,200 on its own.
    compact = state.replace(b" ", b"")
    assert b'"sealed_embedding":{"_type_":"b64","_data_":"' in compact
    assert (
        len(compact.split(b'"sealed_embedding":{"_type_":"b64","_data_":"')[1].split(b'"')[0])
        == 380
    )
    assert b'"embedding":[' not in compact and len(state) < 1000


def test_a_flipped_byte_is_reported_naming_the_event_never_decoded(mem):
    mem.add("The original text, which must never come back altered.")
    position = stored_rows(mem)[-1][0]
    flip(mem, position, 200)
    (stored,) = mem.log.unreadable()
    with pytest.raises(CorruptEvent) as caught:
        mem.log.mapper.to_domain_event(stored)
    message = str(caught.value)
    assert "FragmentWritten" in message and "version 1" in message
    assert f"at log position {position}" in message


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(offset=st.integers(min_value=0, max_value=10_000), bit=st.integers(0, 7))
def test_any_single_bit_flip_anywhere_in_a_stored_event_is_detected(mem, offset, bit):
    mem.add("Checksums cover every byte of the payload.", id="fixed")
    notification = mem.log.recorder.select_notifications(start=None, limit=10)[-1]
    state = bytearray(notification.state)
    state[offset % len(state)] ^= 1 << bit
    damaged = StoredEvent(
        notification.originator_id,
        notification.originator_version,
        notification.topic,
        bytes(state),
    )
    with pytest.raises(CorruptEvent):
        verified_payload(damaged)


def test_topic_and_version_are_covered_by_the_checksum(mem):
    mem.add("Moving an event to another aggregate version is detected too.", id="fixed")
    n = mem.log.recorder.select_notifications(start=None, limit=10)[-1]
    with pytest.raises(CorruptEvent):
        verified_payload(StoredEvent(n.originator_id, n.originator_version + 1, n.topic, n.state))
    with pytest.raises(CorruptEvent):
        verified_payload(
            StoredEvent(
                n.originator_id,
                n.originator_version,
                n.topic.replace("Written", "Revised"),
                n.state,
            )
        )


@pytest.mark.sqlite_only  # WAL is a mode of the SQLite file; PostgreSQL has its own journal
def test_the_log_is_in_wal_mode(mem, home):
    mem.add("Write-ahead logging lets readers and a writer work at once.")
    with sqlite3.connect(home / "events.sqlite") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# -- the events a log has just recorded, handed to its projections without a read -----------


def test_recent_events_served_from_memory_are_the_events_the_log_holds(mem):
    keys = mem.add_many(["first fragment", "second fragment", "third fragment"]).ids
    mem.revise(keys[0], text="first fragment, revised")
    mem.cache.path_of(mem.ledger.row(keys[1])["uuid"]).unlink()
    mem.dream()
    served = mem.log.read(0, 1_000)
    stored = mem.log._read_stored(0, 1_000)
    assert mem.log.recent.after(0, 1, ()) is not None  # some were served from memory
    assert [p for p, _ in served] == [p for p, _ in stored]
    for (_, a), (_, b) in zip(served, stored, strict=True):
        assert type(a) is type(b) and vars(a) == vars(b)


def test_a_rebuild_reads_the_log_as_stored_not_what_was_recorded(mem, tmp_path):
    key = mem.add("a fragment whose event rots at once", id="rot")
    mem.add("a fragment that stays intact", id="intact")
    assert mem.log.recent.after(0, 1, ()) is not None  # its event is held in memory, intact
    assert damage_event(mem, mem.ledger.row(key)["uuid"], 1, lambda b: b[:-3] + bytes(3))
    mem.rebuild()
    with mem.replay(into=tmp_path / "replica") as replica:  # reads nothing but the stored log
        assert [(e.kind, e.detail) for e in mem.history(key)] == [
            (e.kind, e.detail) for e in replica.history(key)
        ]
        assert mem.health()["by_status"] == replica.health()["by_status"]


def test_a_forgotten_body_is_not_served_from_memory(mem):
    key = mem.add("a secret that must go", id="secret")
    head = mem.log.position()
    mem.forget(key, reason="erasure")
    assert mem.log.recent.after(0, 1, ()) is None  # nothing held from before the forgetting
    written = [e for _, e in mem.log.read(0, 1_000) if type(e).__name__ == "FragmentWritten"]
    assert written and all(e.text is None for e in written)
    assert mem.log.position() > head


def test_keys_fetched_at_once_are_the_keys_fetched_one_at_a_time(mem):
    ids = mem.add_many([f"fragment {i}" for i in range(12)]).ids
    mem.forget(ids[0], reason="erasure")
    keys = mem.log.mapper.keys
    uuids = [mem.ledger.row(i)["uuid"] for i in ids] + ["00000000-0000-0000-0000-000000000000"]
    held = keys.keys_for(uuids)
    assert held == {u: keys.key_for(u) for u in uuids}
    assert held[uuids[0]] is None and held[uuids[-1]] is None and held[uuids[1]] is not None


def test_a_replay_given_events_decoded_already_ends_in_the_same_state(mem):
    ids = mem.add_many([f"fragment {i}" for i in range(6)]).ids
    for key in ids[:3]:
        mem.cache.path_of(mem.ledger.row(key)["uuid"]).unlink()
    mem.scrub()
    findings = [e for _, e in mem.log.read(0, 1_000) if type(e).__name__ == "FragmentLost"]
    uuids = [e.originator_id for e in findings]
    assert len(findings) == 3
    plain = mem.log.fragments_by_uuid(uuids)
    given = mem.log.fragments_by_uuid(uuids, known=findings)
    assert {u: vars(f) for u, f in given.items()} == {u: vars(f) for u, f in plain.items()}
    assert all(list(f.faults.values()) == ["missing"] for f in given.values())

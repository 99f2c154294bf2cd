"""Audit: the log streamed as it is, and tamper evidence against an attacker with sqlite3."""

import base64
import json
import sqlite3

import pytest
from click.testing import CliRunner

import carma
from carma.cli import cli


@pytest.fixture
def store(home, embedder):
    with carma.open(home, embedder=embedder) as mem:
        keys = mem.add_many([f"fact {i} about the archive" for i in range(6)]).ids
        mem.revise(keys[0], text="fact zero, revised")
        mem.delete(keys[1], reason="obsolete")
    return home, keys


def verify(home, embedder):
    with carma.open(home, embedder=embedder) as mem:
        return mem.verify()


def sql(home, *statements):
    with sqlite3.connect(home / "events.sqlite") as conn:
        for statement, *params in statements:
            conn.execute(statement, *params)


def test_a_clean_log_verifies_and_names_its_head(store, embedder):
    home, _ = store
    report = verify(home, embedder)
    assert report["ok"] and report["first_bad"] is None
    assert report["events"] == report["head_position"] == 9  # profile, 6 writes, 1+1 changes
    assert len(report["head"]) == 64


@pytest.mark.parametrize("attack, first_bad", [
    # edit one byte of an event's payload
    ((("UPDATE stored_events SET state = substr(state, 1, 40) || x'00' || substr(state, 42)"
       " WHERE rowid = 4",),), 4),
    # delete an event in the middle
    ((("DELETE FROM stored_events WHERE rowid = 5",),), 5),
    # delete it and its chain entry, then renumber the rest to close the gap
    ((("DELETE FROM stored_events WHERE rowid = 5",), ("DELETE FROM event_chain WHERE position = 5",),
      ("UPDATE stored_events SET rowid = rowid - 1 WHERE rowid > 5",)), 5),
    # swap the payloads of two events of the same aggregate version order
    ((("UPDATE stored_events SET state = (SELECT state FROM stored_events WHERE rowid = 3)"
       " WHERE rowid = 6",),), 6),
    # insert a forged event at the end, with a forged chain entry
    ((("INSERT INTO stored_events(originator_id, originator_version, topic, state)"
       " SELECT originator_id, 99, topic, state FROM stored_events WHERE rowid = 2",),
      ("INSERT INTO event_chain(position, mac) VALUES (10, zeroblob(32))",)), 10),
    # insert a forged event without a chain entry
    ((("INSERT INTO stored_events(originator_id, originator_version, topic, state)"
       " SELECT originator_id, 99, topic, state FROM stored_events WHERE rowid = 2",),), 10),
])
def test_tampering_with_the_database_file_is_caught_at_the_first_bad_position(
        store, embedder, attack, first_bad):
    home, _ = store
    sql(home, *attack)
    report = verify(home, embedder)
    assert not report["ok"]
    assert report["first_bad"] == first_bad, report["reason"]


def test_the_cli_exits_1_on_tampering_and_0_when_clean(tmp_path):
    home = tmp_path / "home"
    runner = CliRunner()
    run = lambda *a: runner.invoke(cli, [*a, "--home", str(home), "--embedder", "hashing"])  # noqa: E731
    run("add-many", "one", "two", "three")
    clean = run("verify", "--json")
    assert clean.exit_code == 0 and json.loads(clean.stdout)["ok"] is True
    sql(home, ("DELETE FROM stored_events WHERE rowid = 2",))
    tampered = run("verify", "--json")
    assert tampered.exit_code == 1
    assert json.loads(tampered.stdout) | {"head": None} == {
        "ok": False, "events": 3, "first_bad": 2,
        "reason": "an event is missing (a gap in the log)", "head": None, "head_position": 1}


def test_the_chain_key_survives_the_loss_of_one_copy_and_never_enters_the_log(store, embedder):
    home, keys = store
    key = (home / "keys" / "chain.key").read_bytes()
    for folder in ("keys", "keys.mirror"):
        (home / folder / "chain.key").unlink()
        with carma.open(home, embedder=embedder) as mem:
            mem.add("written after losing one copy of the key")
            assert mem.verify()["ok"]
        assert (home / folder / "chain.key").read_bytes() == key  # written back
    assert key not in (home / "events.sqlite").read_bytes()
    assert key.hex().encode() not in (home / "events.sqlite").read_bytes()


def test_losing_both_copies_of_the_key_is_a_clear_error(store, embedder):
    home, _ = store
    for folder in ("keys", "keys.mirror"):
        (home / folder / "chain.key").unlink()
    with carma.open(home, embedder=embedder) as mem:
        assert mem.get(store[1][2]).text  # reads still work
        with pytest.raises(carma.StorageError, match="chain key is lost"):
            mem.verify()
        before = mem.log.position()
        with pytest.raises(carma.StorageError, match="chain key is lost"):
            mem.add("cannot be chained")
        assert mem.log.position() == before


def test_the_log_streams_every_event_with_its_position_and_kind(store, embedder):
    home, keys = store
    with carma.open(home, embedder=embedder) as mem:
        entries = list(mem.log_events())
        assert [e["position"] for e in entries] == list(range(1, 10))
        assert [e["kind"] for e in entries][-2:] == ["FragmentRevised", "FragmentDeleted"]
        written = list(mem.log_events(kinds=["FragmentWritten"], since=3, until=4))
        assert [e["position"] for e in written] == [3, 4]
        assert written[0]["data"]["embedding"] == {"float32": 64}
        with pytest.raises(carma.InvalidInput, match="unknown event kind"):
            list(mem.log_events(kinds=["Nope"]))
    sql(home, ("UPDATE stored_events SET state = x'00' WHERE rowid = 3",))
    result = CliRunner().invoke(cli, ["log", "--home", str(home), "--json"])
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.exit_code == 1
    assert lines[2]["kind"] == "corrupt" and "position 3" in lines[2]["error"]
    assert len(lines) == 9


def test_replay_to_a_past_position_answers_what_the_store_knew_then(home, embedder, tmp_path):
    with carma.open(home, embedder=embedder) as mem:
        kept = mem.add("the meeting is on monday", id="meeting")
        mem.add("the budget is approved", id="budget")
        then = mem.log.position()
        moment = mem.history("budget")[-1].at
        mem.revise("meeting", text="the meeting moved to friday")
        mem.delete("budget")
        mem.add("a fact learned later", id="later")
        with mem.replay(until=then, into=tmp_path / "then") as past:
            assert past.get(kept).text == "the meeting is on monday"
            assert past.get("budget").text == "the budget is approved"
            with pytest.raises(carma.FragmentNotFound):
                past.get("later")
            assert [h.id for h in past.search("when is the meeting", k=1)] == ["meeting"]
            assert past.verify()["ok"] and past.verify()["head_position"] == then
        with mem.replay(until=moment, into=tmp_path / "moment") as past:
            assert past.log.position() == then
        with pytest.raises(carma.InvalidInput, match="not an empty folder"):
            mem.replay(until=then, into=tmp_path / "then")
        with pytest.raises(carma.InvalidInput, match="outside this store"):
            mem.replay(into=home / "inside")


def test_replaying_the_whole_log_gives_identical_state(home, embedder, tmp_path):
    from tests.conftest import store_state

    with carma.open(home, embedder=embedder) as mem:
        ids = mem.add_many([f"note {i}" for i in range(20)]).ids
        mem.revise(ids[3], text="note three, revised", metadata={"r": 1})
        mem.delete(ids[4])
        mem.cache.path_of(mem.ledger.row(ids[5])["uuid"]).unlink()
        mem.dream()
        with mem.replay(into=tmp_path / "copy") as copy:
            assert store_state(copy) == store_state(mem)


def test_the_cli_replays_by_position_and_by_time(tmp_path):
    home = tmp_path / "home"
    runner = CliRunner()
    run = lambda *a: runner.invoke(cli, [*a, "--home", str(home), "--embedder", "hashing"])  # noqa: E731
    run("add", "first fact")
    run("add", "second fact")
    done = run("replay", "--until", "2", "--into", str(tmp_path / "p2"), "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["live"] == 1
    bad = run("replay", "--until", "yesterday", "--into", str(tmp_path / "x"))
    assert bad.exit_code == 2 and "neither a log position" in bad.stderr
    timed = run("replay", "--until", "2000-01-01T00:00:00Z", "--into", str(tmp_path / "t"),
                "--json")
    assert json.loads(timed.stdout) | {"into": None} == {"into": None, "position": 0, "live": 0}


def test_the_event_log_round_trips_through_export_and_import(tmp_path):
    runner = CliRunner()
    a, b = tmp_path / "a", tmp_path / "b"

    def run(home, *args, **kw):
        return runner.invoke(cli, [*args, "--home", str(home), "--embedder", "hashing"], **kw)

    run(a, "add-many", "alpha fact", "beta fact", "gamma fact")
    key = run(a, "add", "delta fact", "--id", "d").stdout.strip()
    run(a, "revise", key, "--text", "delta fact, revised")
    run(a, "delete", key)
    exported = run(a, "export", "--events")
    assert exported.exit_code == 0 and len(exported.stdout.splitlines()) == 7
    backup = tmp_path / "events.jsonl"
    backup.write_text(exported.stdout)
    first = run(b, "import", "--events", str(backup), "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout) == {"appended": 7, "unchanged": 0, "restored": 0}
    again = run(b, "import", "--events", str(backup), "--json")
    assert json.loads(again.stdout) == {"appended": 0, "unchanged": 7, "restored": 0}
    assert run(b, "export", "--events").stdout == exported.stdout  # identical round trip
    assert run(b, "export").stdout == run(a, "export").stdout
    assert run(b, "verify").exit_code == 0  # chained anew under b's own key
    # A damaged line refuses the whole import: nothing changes.
    lines = exported.stdout.splitlines()
    broken = json.loads(lines[2])
    state = bytearray(base64.b64decode(broken["state"]))
    state[30] ^= 1
    broken["state"] = base64.b64encode(bytes(state)).decode()
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_text("\n".join(lines[:2] + [json.dumps(broken)]) + "\n")
    c = tmp_path / "c"
    refused = run(c, "import", "--events", str(damaged))
    assert refused.exit_code == 1 and "corrupt event" in refused.stderr
    assert run(c, "export", "--events").stdout == ""

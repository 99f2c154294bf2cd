"""Audit: the log streamed as it is, and tamper evidence against an attacker who edits the
database directly (sqlite3 on the SQLite file, or SQL on the PostgreSQL tables)."""

import base64
import json
import sqlite3
from uuid import UUID

import pytest
from click.testing import CliRunner

import carma
from carma.cli import cli
from tests.conftest import damage_event, stored_rows


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


class Attacker:
    """Direct writes to the log's tables of a closed store, bypassing CARMA. Events are named
    by their place in the log (1: the first), since positions on PostgreSQL may have gaps."""

    def __init__(self, home, backend):
        self.home = home
        self.rows = stored_rows(home)
        self.positions = [r[0] for r in self.rows]
        self.url = backend.url_for(home)

    def at(self, n):
        return self.positions[n - 1]

    def _run(self, statement, params=()):
        """One statement on the log's own tables, written for SQLite (?, rowid, stored_events,
        event_chain) and translated for PostgreSQL; the rows it returns."""
        if self.url is None:
            with sqlite3.connect(self.home / "events.sqlite") as conn:
                return conn.execute(statement, params).fetchall()
        import psycopg

        from carma.log.postgres import PostgresURL

        schema = PostgresURL.parse(self.url).schema
        statement = (
            statement.replace("?", "%s")
            .replace("rowid", "notification_id")
            .replace("stored_events", f"{schema}.carma_events")
            .replace("event_chain", f"{schema}.carma_event_chain")
        )
        with psycopg.connect(self.url.split("?")[0], autocommit=True) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def edit(self, n, change):
        """Put other bytes in the n-th event's place."""
        _, uuid, version, _, _ = self.rows[n - 1]
        assert damage_event(self.home, UUID(uuid), version, change)

    def delete(self, n):
        self._run("DELETE FROM stored_events WHERE rowid = ?", [self.at(n)])

    def delete_chain_entry(self, n):
        self._run("DELETE FROM event_chain WHERE position = ?", [self.at(n)])

    def close_the_gap(self, n):
        """After the n-th event was deleted, move every later one a place back."""
        for before, after in zip(self.positions[n - 1 :], self.positions[n:]):
            self._run("UPDATE stored_events SET rowid = ? WHERE rowid = ?", [before, after])

    def copy_state(self, source, target):
        state = self.rows[source - 1][4]
        self.edit(target, lambda _: state)

    def forge(self, n, chained):
        """Append a copy of the n-th event as another version; with a forged chain entry."""
        self._run(
            "INSERT INTO stored_events(originator_id, originator_version, topic, state)"
            " SELECT originator_id, 99, topic, state FROM stored_events WHERE rowid = ?",
            [self.at(n)],
        )
        (forged,) = [r[0] for r in stored_rows(self.home) if r[0] not in self.positions]
        if chained:
            self._run("INSERT INTO event_chain(position, mac) VALUES (?, ?)", [forged, bytes(32)])
        return forged


def test_a_clean_log_verifies_and_names_its_head(store, embedder):
    home, _ = store
    report = verify(home, embedder)
    assert report["ok"] and report["first_bad"] is None
    assert report["events"] == 9  # profile, 6 writes, 1+1 changes
    assert report["head_position"] == stored_rows(home)[-1][0]
    assert len(report["head"]) == 64


@pytest.mark.parametrize(
    "attack",
    [
        # edit one byte of an event's payload
        lambda a: (a.edit(4, lambda state: state[:40] + b"\0" + state[41:]), a.at(4))[1],
        # delete an event in the middle
        lambda a: (a.delete(5), a.at(5))[1],
        # delete it and its chain entry, then renumber the rest to close the gap
        lambda a: (a.delete(5), a.delete_chain_entry(5), a.close_the_gap(5), a.at(5))[3],
        # swap the payloads of two events of the same aggregate version order
        lambda a: (a.copy_state(3, 6), a.at(6))[1],
        # insert a forged event at the end, with a forged chain entry
        lambda a: a.forge(2, chained=True),
        # insert a forged event without a chain entry
        lambda a: a.forge(2, chained=False),
    ],
    ids=["edit", "delete", "delete-and-renumber", "swap", "forge-chained", "forge"],
)
def test_tampering_with_the_database_is_caught_at_the_first_bad_position(
    store, embedder, backend, attack
):
    home, _ = store
    first_bad = attack(Attacker(home, backend))  # the position the attack starts at
    report = verify(home, embedder)
    assert not report["ok"]
    assert report["first_bad"] == first_bad, report["reason"]


def test_the_cli_exits_1_on_tampering_and_0_when_clean(tmp_path, backend):
    home = tmp_path / "home"
    runner = CliRunner()
    run = lambda *a: runner.invoke(cli, [*a, "--home", str(home), "--embedder", "hashing"])  # noqa: E731
    run("add-many", "one", "two", "three")
    clean = run("verify", "--json")
    assert clean.exit_code == 0 and json.loads(clean.stdout)["ok"] is True
    attacker = Attacker(home, backend)
    attacker.delete(2)
    tampered = run("verify", "--json")
    assert tampered.exit_code == 1
    assert json.loads(tampered.stdout) | {"head": None} == {
        "ok": False,
        "events": 3,
        "first_bad": attacker.at(1) + 1,
        "reason": "an event is missing (a gap in the log)",
        "head": None,
        "head_position": attacker.at(1),
    }


@pytest.mark.sqlite_only  # a SQLite home keeps its chain key in two files; PostgreSQL, in a table
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


def test_the_chain_key_never_enters_the_events(store, embedder):
    home, _ = store
    with carma.open(home, embedder=embedder) as mem:
        key = mem._chain_key
    states = b"".join(state for *_, state in stored_rows(home))
    assert len(key) == 32 and key not in states and key.hex().encode() not in states


@pytest.mark.sqlite_only  # as above: the two key files of a SQLite home
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
        positions = [r[0] for r in stored_rows(mem)]
        entries = list(mem.log_events())
        assert [e["position"] for e in entries] == positions and len(positions) == 9
        assert [e["kind"] for e in entries][-2:] == ["FragmentRevised", "FragmentDeleted"]
        written = list(
            mem.log_events(kinds=["FragmentWritten"], since=positions[2], until=positions[3])
        )
        assert [e["position"] for e in written] == positions[2:4]
        assert written[0]["data"]["embedding"] == {"float32": 64}
        with pytest.raises(carma.InvalidInput, match="unknown event kind"):
            list(mem.log_events(kinds=["Nope"]))
        _, uuid, version, _, _ = stored_rows(mem)[2]
        assert damage_event(mem, UUID(uuid), version, lambda _: b"\x00")
    result = CliRunner().invoke(cli, ["log", "--home", str(home), "--json"])
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.exit_code == 1
    assert lines[2]["kind"] == "corrupt" and f"position {positions[2]}" in lines[2]["error"]
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
    timed = run(
        "replay", "--until", "2000-01-01T00:00:00Z", "--into", str(tmp_path / "t"), "--json"
    )
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

"""A rebuild in place: the cache files that already hold the bytes the replay derives stay
as they are; the others are written again, and the files of no fragment are swept."""

import os
import uuid

import pytest

from tests.conftest import store_state


def _stamp(path):
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns


def test_a_rebuild_keeps_the_right_files_rewrites_the_wrong_and_sweeps_the_rest(mem):
    keys = [mem.add(f"note {i} about the rebuild in place", {"i": i}) for i in range(30)]
    mem.revise(keys[0], text="a revised note")
    mem.delete(keys[1])
    before = store_state(mem)
    files = mem.cache.files()
    changed, missing, *untouched = files
    stamps = {path: _stamp(path) for path in untouched}
    changed.write_bytes(b'{"format": 1, "text": "not what the log says"}')
    missing.unlink()
    root = mem.cache.root
    stranger = uuid.uuid4().hex  # a fragment-named file of no fragment
    (root / stranger[:2]).mkdir(exist_ok=True)
    (root / stranger[:2] / f"{stranger}.json").write_bytes(b"{}")
    misplaced = untouched[0].name  # a live fragment's name, in a folder not its own
    other = "00" if untouched[0].parent.name != "00" else "01"
    (root / other).mkdir(exist_ok=True)
    (root / other / misplaced).write_bytes(untouched[0].read_bytes())
    (untouched[1].parent / f".tmp-1-2-{untouched[1].name}").write_bytes(b"half")
    (root / "junk").mkdir()
    (root / "junk" / "file").write_bytes(b"x")
    (root / "stray.txt").write_bytes(b"x")

    mem.rebuild()

    assert store_state(mem) == before
    assert {path: _stamp(path) for path in untouched} == stamps  # kept in place
    assert changed.read_bytes() == before["cache"][changed.relative_to(root).as_posix()]
    assert missing.exists()
    assert not (root / stranger[:2] / f"{stranger}.json").exists()
    assert not (root / other / misplaced).exists()
    assert not (untouched[1].parent / f".tmp-1-2-{untouched[1].name}").exists()
    assert not (root / "junk").exists() and not (root / "stray.txt").exists()
    assert (root / "POSITION").exists()
    assert mem.scrub()["found"] == {}


def test_a_rebuild_that_stops_sweeps_nothing_and_the_next_one_ends_the_same(mem, monkeypatch):
    for i in range(40):
        mem.add(f"note {i} about a rebuild that stops")
    before = store_state(mem)
    mem.runner.batch_size = 5
    apply = type(mem.ledger).apply
    calls = []

    def failing(self, batch):
        calls.append(len(batch))
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return apply(self, batch)

    monkeypatch.setattr(type(mem.ledger), "apply", failing)
    with pytest.raises(Exception, match="rebuild"):
        mem.rebuild()
    # The replay stopped at its third batch: the files it had not reached are still there.
    assert len(mem.cache.files()) == len(before["cache"])
    monkeypatch.setattr(type(mem.ledger), "apply", apply)
    mem.rebuild()
    assert store_state(mem) == before


def test_a_rebuild_of_an_intact_cache_writes_no_file(mem):
    for i in range(20):
        mem.add(f"note {i} about an intact cache")
    root = mem.cache.root
    stamps = {path: _stamp(path) for path in mem.cache.files()}
    folders = {p: os.stat(p).st_mtime_ns for p in root.iterdir() if p.is_dir()}
    mem.rebuild()
    assert {path: _stamp(path) for path in mem.cache.files()} == stamps
    assert {p: os.stat(p).st_mtime_ns for p in root.iterdir() if p.is_dir()} == folders


def _schema(mem):
    return mem.ledger.db.execute(
        "SELECT type, name, sql FROM sqlite_master ORDER BY name"
    ).fetchall()


def test_a_rebuild_replays_the_ledger_in_bulk_and_ends_with_what_the_writes_made(mem):
    """An empty ledger's replay makes its checksums, metadata fields, triggers and indexes
    at the end (HealthLedger._in_bulk): the same rows, the same schema, every row stamped
    after any scrub before it, and the triggers at work again for the next write."""
    keys = [mem.add(f"note {i} on bulk replay", {"i": i, "tag": f"t{i % 3}"}) for i in range(30)]
    mem.revise(keys[0], text="a revised note", metadata={"i": 100, "tag": "new"})
    mem.delete(keys[1])
    mem.forget(keys[2], reason="asked")
    mem.scrub()
    tick = mem.dreamer.scrubber._expected.tick
    before, schema = store_state(mem), _schema(mem)

    mem.rebuild()

    assert store_state(mem) == before and _schema(mem) == schema
    assert len(mem.ledger.scan_changes(tick).rows) == 30  # every row read again
    assert mem.ledger.check_file() is None
    assert {r.id for r in mem.search("note", where={"tag": "t1"}, k=30)} == {
        k for i, k in enumerate(keys) if i % 3 == 1 and i > 2
    }
    assert mem.scrub()["found"] == {}
    new = mem.add("a note after the rebuild", {"tag": "after"})
    assert [r.id for r in mem.search("note", where={"tag": "after"})] == [new]
    row = mem.ledger.db.execute("SELECT changed FROM fragments WHERE id = ?", [new]).fetchone()
    (clock,) = mem.ledger.db.execute("SELECT tick FROM scan_clock").fetchone()
    assert row == (clock,) and mem.ledger.check_file() is None


def test_a_bulk_replay_that_fails_leaves_the_ledger_empty_with_its_schema_whole(mem):
    for i in range(20):
        mem.add(f"note {i} about a replay that fails", {"i": i})
    before, schema = store_state(mem), _schema(mem)
    mem.ledger.reset()
    with pytest.raises(ValueError), mem.ledger.transaction():
        mem.ledger.apply(mem.runner.read(0, 10))
        assert mem.ledger.db.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'trigger'"
        ).fetchone() == (0,)  # replaying in bulk
        raise ValueError("stopped")
    assert _schema(mem) == schema and mem.ledger.position == 0
    mem.runner.catch_up(strict=True)
    assert store_state(mem) == before


def _third_batch_fails(mem, monkeypatch) -> list[int]:
    """Catch-ups in batches of 5 whose third run of the ledger's writes fails (a full disk);
    the runs' sizes are appended to the list returned."""
    monkeypatch.setattr(mem.runner, "batch_size", 5)
    writes = mem.ledger._apply_writes
    calls: list[int] = []

    def third_fails(conn, run):
        calls.append(len(run))
        if len(calls) == 3:
            raise OSError("disk full")
        writes(conn, run)

    monkeypatch.setattr(mem.ledger, "_apply_writes", third_fails)
    return calls


def test_a_batch_that_fails_in_a_bulk_replay_undoes_the_whole_replay(mem, monkeypatch):
    """A replay into an empty ledger takes no savepoint per batch: a batch that fails
    in a catch-up (which goes on with the other projections) undoes every batch before it
    too, and the ledger waits at position zero, empty, its schema whole, for the next."""
    for i in range(20):
        mem.add(f"note {i} about a batch that fails", {"i": i})
    before, schema = store_state(mem), _schema(mem)
    mem.ledger.reset()
    calls = _third_batch_fails(mem, monkeypatch)
    mem.runner.catch_up()
    assert len(calls) == 3 and "disk full" in mem.runner.errors["ledger"]
    assert mem.ledger.position == 0 and _schema(mem) == schema
    assert mem.ledger.db.execute("SELECT count(*) FROM fragments").fetchone() == (0,)
    monkeypatch.undo()
    mem.runner.catch_up()
    assert "ledger" not in mem.runner.errors and store_state(mem) == before


def test_a_batch_that_fails_in_a_catch_up_undoes_the_whole_catch_up(mem, monkeypatch):
    """Past an empty ledger too, a catch-up is all or nothing (no savepoint per batch): a
    batch that fails undoes every batch of the catch-up before it, the write is still
    acknowledged (the log holds it), and the next catch-up applies the whole."""
    mem.add_many([f"note {i} before the write that fails" for i in range(10)])
    position, fragments = mem.ledger.position, mem.stats()["live"]
    calls = _third_batch_fails(mem, monkeypatch)
    added = mem.add_many([f"note {i} of the write that fails" for i in range(20)])
    assert added.added == 20 and len(calls) == 3
    assert "disk full" in mem.runner.errors["ledger"]
    assert mem.ledger.position == position  # not the two batches before the failed one
    assert mem.ledger.db.execute("SELECT count(*) FROM fragments").fetchone() == (fragments,)
    monkeypatch.undo()
    mem.runner.catch_up()
    assert "ledger" not in mem.runner.errors
    assert mem.ledger.db.execute("SELECT count(*) FROM fragments").fetchone() == (30,)
    assert mem.get(added.ids[0]).text == "note 0 of the write that fails"

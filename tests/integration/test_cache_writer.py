"""The cache hands large batches to a writer process: the files are durable and the position
recorded when the call that wrote them returns, a failure holds the position back, and a
rebuild through the process keeps the files in place."""

import json

from carma.projections.cache import BACKGROUND_FILES

import carma
from tests.conftest import store_state

MANY = 3 * BACKGROUND_FILES


def _items(count, start=0):
    return [
        {"text": f"note {i} on the cache's writer process", "metadata": {"i": i}}
        for i in range(start, start + count)
    ]


def _recorded(mem):
    return json.loads((mem.cache.root / "POSITION").read_text())["position"]


def test_a_large_write_is_on_disk_and_recorded_when_add_many_returns(mem):
    keys = mem.add_many(_items(MANY)).ids
    writer = mem.cache._batches._process
    assert writer is not None and not writer.stopped  # a process wrote them
    assert _recorded(mem) == mem.cache.position == mem.log.position()
    assert len(mem.cache.files()) == MANY
    for key in keys:
        copy = mem.cache.read(mem.ledger.row(key)["uuid"])
        assert copy is not None and copy.text == mem.get(key).text
    assert mem.scrub()["found"] == {}
    mem.close()
    assert writer.stopped and writer._process.returncode == 0  # closing the store ends it


def test_a_batch_the_process_cannot_write_holds_the_position_back_until_it_can(mem):
    mem.add_many(_items(MANY))
    held = mem.cache.position
    root = mem.cache.root
    # Every shard folder moved aside and a file put in its place: no file can be made.
    shards = [root / f"{i:02x}" for i in range(256)]
    for shard in shards:
        if shard.is_dir():
            shard.rename(root / f"aside-{shard.name}")
        shard.write_text("a file where a folder should be")
    result = mem.add_many(_items(MANY, start=MANY))
    assert result.added == MANY  # the write stands: the log has it
    assert "cache" in mem.stats()["projection_errors"]
    assert mem.cache.position == held == _recorded(mem)
    assert mem.get(result.ids[0]).text == _items(1, start=MANY)[0]["text"]  # from the log
    assert not mem.cache._batches._process.stopped  # the same process goes on
    for shard in shards:
        shard.unlink()
    for path in root.glob("aside-*"):
        path.rename(root / path.name.removeprefix("aside-"))
    mem.catch_up()
    assert "cache" not in mem.stats()["projection_errors"]
    assert _recorded(mem) == mem.log.position()
    assert len(mem.cache.files()) == 2 * MANY
    assert mem.scrub()["found"] == {}


def test_a_writer_process_killed_is_replaced_and_nothing_it_lost_is_recorded(mem):
    mem.add_many(_items(MANY))
    held = mem.cache.position
    killed = mem.cache._batches._process._process
    killed.kill()
    killed.wait()
    result = mem.add_many(_items(MANY, start=MANY))
    assert "file writer process stopped" in mem.runner.errors["cache"]
    assert mem.cache.position == held == _recorded(mem)
    mem.catch_up()  # a new process writes what the killed one could not
    assert mem.cache._batches._process._process.pid != killed.pid
    assert "cache" not in mem.runner.errors
    assert _recorded(mem) == mem.log.position()
    assert (
        mem.cache.read(mem.ledger.row(result.ids[-1])["uuid"]).text
        == _items(1, 2 * MANY - 1)[0]["text"]
    )
    assert mem.scrub()["found"] == {}


def test_a_rebuild_through_the_process_keeps_the_files_that_hold_their_bytes(mem):
    keys = mem.add_many(_items(MANY)).ids
    mem.revise(keys[0], text="a revised note")
    mem.delete(keys[1])
    before = store_state(mem)
    files = mem.cache.files()
    wrong, *untouched = files
    wrong.write_bytes(b'{"format": 1, "text": "not what the log says"}')
    stamps = {path: (path.stat().st_ino, path.stat().st_mtime_ns) for path in untouched}
    mem.rebuild()
    assert store_state(mem) == before
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in untouched} == stamps
    assert mem.cache.read(wrong.stem).text != "not what the log says"
    assert mem.scrub()["found"] == {}


def test_a_store_reopened_after_the_process_wrote_reads_every_file(home, embedder):
    with carma.open(home, embedder=embedder) as mem:
        keys = mem.add_many(_items(MANY)).ids
    with carma.open(home, embedder=embedder) as mem:
        assert mem.cache.position == mem.log.position()
        assert [mem.cache.read(mem.ledger.row(key)["uuid"]).text for key in keys] == [
            item["text"] for item in _items(MANY)
        ]

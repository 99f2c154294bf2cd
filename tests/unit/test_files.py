"""The writer process and the cache's batch writer, on real files."""

import errno
import shutil
import sys
from uuid import UUID, uuid4

import pytest
from carma.projections import CachedFragment, FragmentCache
from carma.projections.cache import _Rendered, render
from carma.projections.files import FileWriter


@pytest.fixture
def writer(tmp_path):
    writer = FileWriter(tmp_path)
    yield writer
    writer.close()


def test_a_writer_process_makes_batches_in_the_order_given(tmp_path, writer):
    writer.submit([], [("a1/x.json", b"first"), ("a1/y.json", b"second")])
    # The second batch removes and replaces what the first wrote: only order makes it right.
    writer.submit(["a1/x.json"], [("a1/y.json", b"second, again"), ("b2/z.json", b"third")])
    assert writer.outstanding == 2
    writer.wait()
    writer.wait()
    assert writer.outstanding == 0
    assert not (tmp_path / "a1" / "x.json").exists()
    assert (tmp_path / "a1" / "y.json").read_bytes() == b"second, again"
    assert (tmp_path / "b2" / "z.json").read_bytes() == b"third"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a1", "b2", "y.json", "z.json"]


def test_a_failed_batch_is_reported_by_its_own_wait_and_the_writer_goes_on(tmp_path, writer):
    (tmp_path / "c3").write_text("a file where a folder should be")
    writer.submit([], [("a1/x.json", b"fine")])
    writer.submit([], [("c3/y.json", b"cannot be written")])
    writer.submit([], [("a1/z.json", b"fine too")])
    writer.wait()
    with pytest.raises(OSError) as raised:
        writer.wait()
    assert raised.value.errno == errno.EEXIST and raised.value.filename.endswith("c3")
    writer.wait()
    assert (tmp_path / "a1" / "z.json").read_bytes() == b"fine too"
    assert not list(tmp_path.rglob(".tmp-*"))  # nothing half-written is left behind


def test_drain_waits_for_every_batch_and_raises_the_first_failure_after(tmp_path, writer):
    (tmp_path / "c3").write_text("in the way")
    writer.submit([], [("c3/y.json", b"no")])
    writer.submit([], [("a1/x.json", b"yes")])
    with pytest.raises(OSError):
        writer.drain()
    assert writer.outstanding == 0
    assert (tmp_path / "a1" / "x.json").read_bytes() == b"yes"


def test_a_writer_process_finishes_what_it_was_given_when_closed(tmp_path):
    writer = FileWriter(tmp_path)
    writer.submit([], [(f"{i % 7:02x}/{i}.json", b"x" * i) for i in range(300)])
    writer.close()  # no wait: closing lets it finish, then it ends
    assert writer._process.returncode == 0
    assert len(list(tmp_path.rglob("*.json"))) == 300


def fragment(text, uuid=None):
    return CachedFragment(
        uuid=str(uuid or uuid4()),
        key=text,
        namespace="default",
        text=text,
        metadata={},
        content_hash="h",
        version=1,
    )


def test_the_cache_writer_writes_at_once_until_asked_for_the_background(tmp_path):
    cache = FragmentCache(tmp_path / "cache")
    first, second, third = fragment("one"), fragment("two"), fragment("three")
    with cache.writer() as writer:
        writer.submit([], [first])
        assert cache.read(first.uuid) == first  # written at once
        assert writer._process is None
        writer.submit([first.uuid], [second], background=True)
        writer.submit([], [third])  # the process is running: it takes every later batch
        writer.wait()
        writer.wait()
        writer.wait()
        assert writer._process is not None
    assert cache.read(first.uuid) is None
    assert cache.path_of(second.uuid).read_bytes() == render(second)
    assert cache.read(third.uuid) == third


def test_a_batch_written_at_once_reports_its_failure_at_its_wait(tmp_path):
    cache = FragmentCache(tmp_path / "cache")
    blocked = fragment("blocked", UUID(int=0xAA << 120))
    cache.path_of(blocked.uuid).parent.write_text("in the way")
    fine = fragment("fine", UUID(int=0xBB << 120))  # in another shard folder
    with cache.writer() as writer:
        writer.submit([], [blocked])  # no raise here: the caller learns at its wait
        writer.submit([], [fine])
        with pytest.raises(OSError):
            writer.wait()
        writer.wait()
    assert cache.read(fine.uuid) == fine


def test_an_interpreter_that_cannot_run_the_writer_leaves_the_cache_writing_at_once(
    tmp_path, monkeypatch
):
    # sys.executable may be a program that embeds Python (a server binary), not Python.
    monkeypatch.setattr(sys, "executable", shutil.which("true"))
    with pytest.raises(OSError, match="did not start a file writer"):
        FileWriter(tmp_path)
    cache = FragmentCache(tmp_path / "cache")
    first = fragment("one")
    with cache.writer() as writer:
        writer.submit([], [first], background=True)
        assert writer._process is None and writer.outstanding == 1
        writer.drain()
    assert cache.read(first.uuid) == first


class _Body:
    def __init__(self, text: str, version: int = 1):
        self.text, self.metadata, self.content_hash = text, {"n": 1}, "h" * 64
        self.originator_version = version


def test_a_file_rendered_for_an_event_is_rendered_once_for_the_same_naming():
    """The ledger and the cache render the same event's file in turn: the second is the
    first's bytes; another naming of it, or another event, is rendered anew."""
    rendered, uuid = _Rendered(2), uuid4()
    first, second = _Body("a note"), _Body("a note", version=2)
    data = rendered.file(uuid, "k", "default", first)
    assert data == render(CachedFragment.of(uuid, "k", "default", first, 1))
    assert rendered.file(str(uuid), "k", "default", first) is data
    assert rendered.file(uuid, "other", "default", first) == render(
        CachedFragment.of(uuid, "other", "default", first, 1)
    )
    assert rendered.file(uuid, "k", "default", second) == render(
        CachedFragment.of(uuid, "k", "default", second, 2)
    )
    assert rendered.file(uuid, "k", "default", first) is not data  # (kept as named last)

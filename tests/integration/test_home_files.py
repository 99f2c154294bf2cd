"""Every file of the home heals: a damaged page of the health ledger, of the key store or of
its mirror is found by the next dream cycle, recorded once and repaired (the ledger rebuilt
from the log beside the old one and swapped in; a key store copy written again from the keys
that prove themselves), while queries and writes go on: none fails, every write is found."""

import json
import sqlite3
import subprocess
import sys

import pytest
from carma.projections import ledger_file
from click.testing import CliRunner

import carma
from carma.cli import cli
from carma.demo.chaos import FILES, flip_page, flip_used_page
from carma.demo.corpus import varied
from carma.embedding import HashingEmbedder

TEXTS = varied(600)


def _store(home):
    with carma.open(home, embedder=HashingEmbedder(dimension=64)) as mem:
        return mem.add_many(TEXTS).ids


def _damaged_then_used(home, name):
    """Flip a page of one file of a closed store, then search, write and dream in it."""
    ids = _store(home)
    flip_used_page(home / FILES[name])
    with carma.open(home, embedder=HashingEmbedder(dimension=64)) as mem:
        hits = [mem.search(t, k=3) for t in TEXTS[:20]]
        written = {
            mem.add(f"written while {name} was damaged: {i}", {"i": i}): i for i in range(10)
        }
        again = mem.add(f"written while {name} was damaged: 3")  # idempotent still
        cycle = mem.dream()
        second = mem.dream()
        return (
            ids,
            hits,
            written,
            again,
            cycle,
            second,
            mem.health(),
            {key: mem.get(key).text for key in [*ids, *written]},
        )


@pytest.mark.parametrize("name", ["ledger", "keys", "mirror"])
@pytest.mark.sqlite_only("the key store and its mirror are files of a SQLite home")
def test_a_damaged_page_is_found_repaired_and_nothing_fails(tmp_path, name, backend):
    home = tmp_path / "home"
    ids, hits, written, again, cycle, second, health, texts = _damaged_then_used(home, name)
    assert all(len(h) == 3 for h in hits)  # every query answered
    assert list(written)[3] == again
    copy = {"ledger": "ledger", "keys": "keys", "mirror": "keys-mirror"}[name]
    assert cycle["found"].get(f"{copy}/corrupt") == 1
    assert [k for k in cycle["repaired"] if k.startswith(f"{copy}/")] != []
    assert second["found"] == {} and health["score"] == 1.0 and health["by_fault"] == {}
    assert [texts[k] for k in ids] == TEXTS
    assert all(texts[k].endswith(f": {i}") for k, i in written.items())
    assert list(home.rglob("*.damaged-*"))  # the damaged file is kept aside, never deleted


def test_writes_while_the_ledger_is_corrupt_are_all_found_afterwards(tmp_path, backend):
    home = tmp_path / "home"
    _store(home)
    flip_used_page(home / "ledger.sqlite")
    with carma.open(home, embedder=HashingEmbedder(dimension=64)) as mem:
        keys = mem.add_many([f"batch written to a damaged ledger {i}" for i in range(50)]).ids
        own = [mem.add(f"with an id {i}", id=f"own-{i}") for i in range(5)]
        found = mem.dream()["found"]
        assert found.get("ledger/corrupt") == 1
        assert [mem.get(k).text for k in keys] == [
            f"batch written to a damaged ledger {i}" for i in range(50)
        ]
        assert [mem.get(k).text for k in own] == [f"with an id {i}" for i in range(5)]
        assert mem.stats()["live"] == len(TEXTS) + 55
        history = [
            e["kind"] for e in mem.log_events(kinds=["ProjectionLost", "ProjectionRepaired"])
        ]
        assert history == ["ProjectionLost", "ProjectionRepaired"]


def test_a_ledger_too_damaged_to_open_is_begun_again_and_says_so(tmp_path, backend):
    home = tmp_path / "home"
    ids = _store(home)
    flip_page(home / "ledger.sqlite", at=0.0, count=100)  # its header
    with carma.open(home, embedder=HashingEmbedder(dimension=64)) as mem:
        assert mem.get(ids[7]).text == TEXTS[7]
        kinds = [
            (e["kind"], e["data"]["copy"])
            for e in mem.log_events(kinds=["ProjectionLost", "ProjectionRepaired"])
        ]
        assert kinds == [("ProjectionLost", "ledger"), ("ProjectionRepaired", "ledger")]
        assert mem.health()["score"] == 1.0


@pytest.mark.sqlite_only("the key store and its mirror are files of a SQLite home")
def test_chaos_damages_the_ledger_and_both_key_copies_and_the_store_heals(tmp_path, backend):
    home = tmp_path / "home"
    _store(home)
    result = CliRunner().invoke(
        cli,
        [
            "chaos",
            "--home",
            str(home),
            "--json",
            "--queries",
            "30",
            "--threads",
            "2",
            "--damage-file",
            "ledger",
            "--damage-file",
            "keys",
            "--damage-file",
            "mirror",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["queries_failed"] == 0 and report["wrong_answers"] == 0
    assert report["writes"] == {"tried": 20, "failed": 0, "found_after": 20}
    assert {"ledger_page", "keys_page", "mirror_page"} <= set(report["damage"])
    assert report["found"].get("ledger/corrupt") == 1
    assert report["health"]["after"] == 1.0


def test_the_keyword_index_is_scrubbed_and_rebuilt_from_the_log(tmp_path, backend):
    home = tmp_path / "home"
    ids = _store(home)
    with carma.open(home, embedder=HashingEmbedder(dimension=64)) as mem:
        word = TEXTS[5].split()[3]
        with mem.ledger.db.conn:  # rows lost from the index, and a stray one
            mem.ledger.db.execute(
                "DELETE FROM keywords WHERE rowid IN (SELECT rowid FROM keywords LIMIT 40)"
            )
            mem.ledger.db.execute(
                "INSERT INTO keywords(rowid, text, exact) VALUES (42, 'stray words', 1)"
            )
        cycle = mem.dream()
        assert cycle["found"].get("keywords/stale") == 1
        assert cycle["repaired"].get("keywords/rebuilt-from-log") == 1
        assert mem.dream()["found"] == {}
        assert ids[5] in {h.id for h in mem.search(word, k=50, mode="keyword")}
        assert mem.search("stray", mode="keyword") == []


def test_the_ledger_is_checked_whole_at_a_process_first_scrub_every_deep_one_and_every_eighth(
    tmp_path,
):
    """SQLite's integrity_check (every index against its table) costs 20x its quick_check on
    a large ledger: a routine scrub runs the page checks, the whole check comes round on the
    log's rolling schedule, and the first scrub after opening (what happened to the file
    while no process had it open is unknown) and every deep one run it."""
    home = tmp_path / "home"
    _store(home)
    with carma.open(home, embedder=HashingEmbedder(dimension=64)) as mem:
        wholes = [mem.scrub()["checked"]["files_whole"] for _ in range(10)]
        deep = mem.scrub(deep=True)["checked"]["files_whole"]
    assert wholes == [1, 0, 0, 0, 0, 0, 0, 0, 1, 0] and deep == 1
    with carma.open(home, embedder=HashingEmbedder(dimension=64)) as mem:
        assert mem.scrub()["checked"]["files_whole"] == 1


def test_a_text_written_while_the_ledger_cannot_catch_up_is_still_written_once(
    tmp_path, backend, monkeypatch
):
    """A ledger that cannot apply new events (a damaged page on its write path, a full disk)
    still answers reads, but it does not know the latest writes: a text written again must
    be found in the log, not written twice."""
    with carma.open(tmp_path / "home", embedder=HashingEmbedder(dimension=64)) as mem:
        mem.add_many(TEXTS[:20])

        def refuse(batch):
            raise sqlite3.DatabaseError("database disk image is malformed")

        monkeypatch.setattr(mem.ledger, "apply", refuse)
        first = mem.add("written while the ledger is behind")
        assert mem.stats()["projection_errors"]  # said, not hidden
        assert mem.add("written while the ledger is behind") == first
        assert mem.add_many(["written while the ledger is behind"]).ids == [first]


@pytest.mark.sqlite_only("the key store's mirror is a file of a SQLite home")
def test_a_key_row_whose_uuid_was_damaged_is_dropped_by_the_repair(tmp_path, backend):
    """Flipped bytes can leave a key row whose uuid is still text but no UUID: it names no
    fragment, so a repair from both copies drops it (it stopped every dream cycle with a
    ValueError)."""
    home = tmp_path / "home"
    ids = _store(home)
    mirror = home / FILES["mirror"]
    with sqlite3.connect(mirror) as conn:
        conn.execute("INSERT INTO keys VALUES (?, ?)", ["9b1e\u00e9-not-a-uuid", b"k" * 32])
    conn.close()
    flip_used_page(home / FILES["keys"])  # the other copy damaged: a repair from both
    with carma.open(home, embedder=HashingEmbedder(dimension=64)) as mem:
        cycle = mem.dream()
        assert cycle["found"].get("keys/corrupt") == 1
        assert cycle["repaired"].get("keys/restored-from-mirror") == 1
        assert mem.dream()["found"] == {}
        assert [mem.get(k).text for k in ids] == TEXTS
    with sqlite3.connect(mirror) as conn:
        left = conn.execute("SELECT count(*) FROM keys WHERE uuid LIKE '%not-a-uuid'")
        assert left.fetchone() == (0,)
    conn.close()


@pytest.mark.sqlite_only("the ledger's schema is damaged in its file")
def test_a_ledger_whose_damaged_schema_is_not_text_is_replaced_and_the_store_opens(
    tmp_path, backend
):
    """SQLite's error quotes the damaged name, and its bytes are not UTF-8: that is the
    same damage as any other, not a store that cannot open."""
    home = tmp_path / "home"
    ids = _store(home)
    data = bytearray((home / "ledger.sqlite").read_bytes())
    data[data.index(b"tablepositionspositions") + 7] = 0x8F
    data[data.index(b'CREATE TABLE "positions"') + 14] = 0x8F
    (home / "ledger.sqlite").write_bytes(bytes(data))
    with carma.open(home, embedder=HashingEmbedder(dimension=64)) as mem:
        assert [mem.get(k).text for k in ids] == TEXTS
        assert len(mem.search(TEXTS[0], k=3)) == 3
    assert list(home.glob("ledger.sqlite.damaged-*"))


def test_the_ledger_s_pages_are_checked_under_no_lock_of_the_store_s(tmp_path):
    """The page check runs on a thread and a connection of its own, beside the scan of the
    copies: it finishes while another thread holds the store's lock and the ledger's own
    connection is inside a write transaction (WAL: it checks the committed snapshot)."""
    home = tmp_path / "home"
    _store(home)
    with carma.open(home, embedder=HashingEmbedder(dimension=64)) as mem:
        with mem._lock, mem.ledger._transaction() as conn:
            conn.execute("UPDATE fragments SET updated_at = 'uncommitted'")
            assert mem.dreamer.files.check_pages(whole=True).result(timeout=60) is None
    flip_used_page(home / "ledger.sqlite")  # (closed: the write-ahead log holds no page)
    with carma.open(home, embedder=HashingEmbedder(dimension=64)) as mem:
        with mem._lock:
            problem = mem.dreamer.files.check_pages(whole=True).result(timeout=60)
        assert problem is not None  # (SQLite says what it found)


@pytest.mark.sqlite_only("the cache's files and the ledger are files of a SQLite home")
def test_what_a_scan_finds_against_a_damaged_ledger_is_let_go_and_found_again_after(tmp_path):
    """The copies are scanned while the ledger's pages are checked: when the ledger proves
    damaged, nothing the scan found is acted on (no file removed, no loss recorded); the
    ledger is rebuilt, the scan runs again, and each real difference is found once."""
    home = tmp_path / "home"
    ids = _store(home)
    with carma.open(home, embedder=HashingEmbedder(dimension=64)) as mem:
        lost = mem.cache.path_of(mem.ledger.row(ids[9])["uuid"])
        stray = mem.cache.path_of("00000000-0000-4000-8000-000000000000")  # no fragment's
    lost.unlink()
    stray.parent.mkdir(exist_ok=True)
    stray.write_text("{}")
    flip_used_page(home / "ledger.sqlite")
    with carma.open(home, embedder=HashingEmbedder(dimension=64)) as mem:
        cycle = mem.dream()
        assert cycle["found"].get("ledger/corrupt") == 1
        assert cycle["found"].get("cache/missing") == 1 and not stray.exists()
        lost_events = mem.log_events(kinds=["FragmentLost"])
        assert [(e["data"]["copy"], e["data"]["fault"]) for e in lost_events] == [
            ("cache", "missing")
        ]
        assert mem.get(ids[9]).text == TEXTS[9] and lost.exists()
        assert mem.dream()["found"] == {} and mem.health()["score"] == 1.0


@pytest.mark.sqlite_only("the ledger is a file of a SQLite home")
def test_the_ledger_check_in_a_process_of_its_own_finds_what_the_check_here_finds(
    tmp_path, monkeypatch
):
    """A dream cycle checks the ledger in a child process (its rows' checksums are Python
    the scan beside it would wait for): the child's answer is the in-process check's, a clean
    ledger and a row that fails its checksum alike; where no child can run, the check is
    made here, with the same answer."""
    home = tmp_path / "home"
    _store(home)
    ledger = home / "ledger.sqlite"

    def apart(whole):
        done = subprocess.run(
            [sys.executable, "-I", "-S", ledger_file.__file__, str(ledger), whole],
            capture_output=True,
            check=True,
        )
        return json.loads(done.stdout)["problem"]

    assert apart("whole") is None and apart("quick") is None
    assert ledger_file.check_apart(ledger) is None
    with sqlite3.connect(ledger) as conn:  # (a plain connection: no trigger sees the change)
        conn.execute(
            "UPDATE row_checks SET checksum = ~checksum"
            " WHERE uuid = (SELECT min(uuid) FROM row_checks)"
        )
    conn.close()
    found = ledger_file.check(ledger)
    assert found == "1 fragments row(s) fail their checksum"
    assert apart("whole") == found and apart("quick") == found
    assert ledger_file.check_apart(ledger, whole=False) == found
    for no_child in (str(tmp_path / "no-such-python"), "/bin/false"):
        monkeypatch.setattr(sys, "executable", no_child)
        assert ledger_file.check_apart(ledger) == found

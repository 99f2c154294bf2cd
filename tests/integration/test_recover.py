"""A lost log reads as what it is, not as "no store": the home still holds every fragment's
text and vector. Opening it says so and changes nothing; `carma recover` builds a new log from
the surviving copies, says so in the log itself, and `verify` starts a new chain there."""

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

import carma
from carma.cli import cli
from carma.embedding import HashingEmbedder

pytestmark = pytest.mark.sqlite_only("a home whose log is its own SQLite file")
ARGS = ["--embedder", "hashing"]


def _store(home: Path) -> dict:
    with carma.open(home, embedder=HashingEmbedder()) as mem:
        keys = [
            mem.add(
                f"note {i}: the {['cat', 'dog', 'bird'][i % 3]} did thing {i}",
                {"n": i},
                namespace=["a", "b"][i % 2],
            )
            for i in range(30)
        ]
        mem.add("my own id", {"tag": "x"}, id="mine")
        mem.revise(keys[0], text="note 0, revised")
        mem.delete(keys[1], reason="gone")
        mem.forget(keys[2], reason="asked")
        live = {r.id: r.model_dump(include={"text", "metadata", "namespace"}) for r in mem.export()}
    return {"keys": keys, "live": live}


def _files(home: Path) -> dict[str, str]:
    return {
        str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(home.rglob("*"))
        if p.is_file()
    }


def _delete(home: Path) -> None:
    for p in home.glob("events.sqlite*"):
        p.unlink()


def _truncate(home: Path) -> None:
    with sqlite3.connect(home / "events.sqlite") as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    path = home / "events.sqlite"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def _replace_with_empty(home: Path) -> None:
    _delete(home)
    with sqlite3.connect(home / "events.sqlite") as conn:
        conn.execute("CREATE TABLE unrelated (x)")


@pytest.mark.parametrize(
    "damage",
    [_delete, _truncate, _replace_with_empty],
    ids=["deleted", "truncated", "replaced-by-empty"],
)
def test_a_lost_log_is_said_so_and_recovered_from_the_surviving_copies(tmp_path, damage, backend):
    home = tmp_path / "home"
    stored = _store(home)
    damage(home)
    before = _files(home)

    opened = CliRunner().invoke(cli, ["get", "mine", "--home", str(home), *ARGS])
    assert opened.exit_code == 1
    assert "no store" not in opened.stderr and "log" in opened.stderr
    assert "29 live fragment(s) survive" in opened.stderr and "carma recover" in opened.stderr
    with pytest.raises(carma.LogLost):
        carma.open(home, embedder=HashingEmbedder())
    assert _files(home) == before  # nothing changed, nothing created

    done = CliRunner().invoke(cli, ["recover", "--home", str(home), "--json", *ARGS])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["recovered"] == 29 and report["verified"] == 29
    assert report["vector_from_index"] == 29 and report["unrecovered"] == {}
    kept = [Path(p).name for p in report["kept"]]
    assert any(k.startswith("ledger.sqlite.lost-") for k in kept)
    if damage is not _delete:  # the damaged log is kept aside, never deleted
        assert any(k.startswith("events.sqlite.lost-") for k in kept)

    with carma.open(home, embedder=HashingEmbedder()) as mem:
        live = {r.id: r.model_dump(include={"text", "metadata", "namespace"}) for r in mem.export()}
        assert live == stored["live"]
        for gone in stored["keys"][1:3]:  # deleted and forgotten stay gone
            with pytest.raises(carma.FragmentNotFound):
                mem.get(gone)
        assert [e.kind for e in mem.history("mine")] == ["recovered"]
        assert mem.history("mine")[0].detail["recovered"] == {
            "copy": "cache",
            "verified_against": "ledger",
            "was_version": 1,
        }
        assert mem.search("the dog did thing 4", k=1)[0].id == stored["keys"][4]
        assert mem.verify()["ok"] is True
        declared = [e for e in mem.log_events(kinds=["HistoryLost"])]
        assert len(declared) == 1 and declared[0]["data"]["recovered"] == 29
        assert mem.health()["score"] == 1.0
        mem.add("a write after the recovery")  # the store goes on


def test_without_a_ledger_the_cache_files_vouch_for_themselves(tmp_path, backend):
    home = tmp_path / "home"
    stored = _store(home)
    _delete(home)
    for p in home.glob("ledger.sqlite*"):
        p.unlink()
    report = carma.recover(home, embedder=HashingEmbedder())
    # Without the ledger, nothing says the deleted and forgotten ones were live: their cache
    # files are gone with them, so only live fragments come back.
    assert report["recovered"] == 29 and report["unverified"] == 29
    with carma.open(home, embedder=HashingEmbedder()) as mem:
        assert {r.id for r in mem.export()} == set(stored["live"])


def test_a_fragment_with_no_exact_text_left_is_named_never_made_up(tmp_path, backend):
    home = tmp_path / "home"
    stored = _store(home)
    victim = stored["keys"][5]
    with carma.open(home, embedder=HashingEmbedder()) as mem:
        victim_file = mem.cache.path_of(mem.ledger.row(victim)["uuid"])
    _delete(home)
    victim_file.write_text("{damaged")
    report = carma.recover(home, embedder=HashingEmbedder())
    assert report["recovered"] == 28
    assert report["unrecovered"] == {victim: "no exact copy of its text survives"}
    result = CliRunner().invoke(cli, ["stats", "--home", str(home), *ARGS])
    assert result.exit_code == 0


def test_recover_refuses_a_whole_log_and_changes_nothing(tmp_path, backend):
    home = tmp_path / "home"
    _store(home)
    before = _files(home)
    with pytest.raises(carma.InvalidInput, match="nothing to recover"):
        carma.recover(home, embedder=HashingEmbedder())
    assert _files(home) == before

"""Forgetting that really forgets: crypto-shredding of the body, every other copy destroyed,
the audit trail intact."""

import pytest
from click.testing import CliRunner

import carma
from carma import FragmentGone
from carma.cli import cli
from tests.conftest import damage_event, snapshot_count, store_state, stored_bytes

SECRET = "Dana Whitfield lives at 14 Larkspur Lane and takes warfarin"
MARKER = "whitfield-private-note"


def every_byte(home):
    """Every byte the store holds: the home's files, and its log wherever that is."""
    return b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file()) + stored_bytes(home)


def test_a_forgotten_fragment_leaves_no_byte_of_its_body_in_the_home(home, embedder):
    with carma.open(home, embedder=embedder) as mem:
        keep = mem.add("an unrelated fragment that stays", id="keep")
        key = mem.add(SECRET, {"note": MARKER}, id="dana")
        mem.revise(key, text=SECRET + " twice a day")
        embedding = mem.log.fragment(key).embedding
        mem.dream()
        mem.close()  # the index file and every projection are on disk now
    assert SECRET.encode() in every_byte(home)  # in its cache file, before it is forgotten
    assert SECRET.encode() not in stored_bytes(home)
    with carma.open(home, embedder=embedder) as mem:
        assert mem.forget(key, reason="GDPR erasure request #42") is True
        assert mem.forget(key, reason="again") is False
        with pytest.raises(FragmentGone):
            mem.get(key)
        assert key not in [h.id for h in mem.search(SECRET, k=5)]
        assert mem.get(keep).text == "an unrelated fragment that stays"
        kinds = [e.kind for e in mem.history(key)]
        assert kinds[0] == "written" and kinds[-1] == "forgotten"
        assert mem.history(key)[-1].detail == {"reason": "GDPR erasure request #42"}
        assert mem.verify()["ok"]
    raw = every_byte(home)
    for secret in (SECRET.encode(), b"Larkspur", b"warfarin", MARKER.encode(), embedding):
        assert secret not in raw


def test_a_forgotten_fragment_is_never_healed_and_replays_and_rebuilds_without_it(
    home, embedder, tmp_path
):
    with carma.open(home, embedder=embedder) as mem:
        key = mem.add(SECRET, id="dana")
        mem.add("another fragment", id="other")
        stale = mem.cache.path_of(mem.ledger.row(key)["uuid"])
        copy = stale.read_bytes()
        mem.forget(key, reason="erasure")
        stale.parent.mkdir(exist_ok=True)
        stale.write_bytes(copy)  # an old copy reappears (restored from a file backup)
        report = mem.dream()
        assert report["found"] == {"cache/extra": 1} and not stale.exists()
        assert mem.scrub()["found"] == {}
        assert mem.health()["live"] == 1
        incremental = store_state(mem)
        mem.rebuild()
        assert store_state(mem) == incremental
        with mem.replay(into=tmp_path / "replica") as replica:
            with pytest.raises(FragmentGone):
                replica.get(key)
            assert replica.get("other").text == "another fragment"


@pytest.mark.sqlite_only  # a SQLite home keeps fragment keys in files; PostgreSQL, in a table
def test_losing_one_copy_of_the_fragment_keys_loses_nothing(home, embedder):
    with carma.open(home, embedder=embedder) as mem:
        key = mem.add(SECRET, id="dana")
    (home / "keys" / "fragments.sqlite").unlink()
    with carma.open(home, embedder=embedder) as mem:
        assert mem.dream()["found"] == {"keys/missing": 1}
        mem.rebuild()
        assert mem.get(key).text == SECRET


def test_the_cli_forgets_with_a_reason(tmp_path):
    home = str(tmp_path / "home")
    runner = CliRunner()
    key = runner.invoke(
        cli, ["add", SECRET, "--home", home, "--embedder", "hashing"]
    ).stdout.strip()
    no_reason = runner.invoke(cli, ["forget", key, "--home", home])
    assert no_reason.exit_code == 2
    done = runner.invoke(cli, ["forget", key, "--reason", "asked to", "--home", home, "--json"])
    assert done.exit_code == 0 and '"forgotten": true' in done.stdout
    assert runner.invoke(cli, ["get", key, "--home", home]).exit_code == 2
    assert runner.invoke(cli, ["verify", "--home", home]).exit_code == 0


def test_a_repaired_fragment_forgotten_leaves_no_byte_in_its_snapshots_either(home, embedder):
    """A repair of a damaged log body restates the body in a new event and a snapshot: both
    are sealed under the fragment's key, so forgetting shreds them too."""
    from carma.domain import fragment_uuid

    with carma.open(home, embedder=embedder) as mem:
        mem.add("an unrelated fragment that stays", id="keep")
        key = mem.add(SECRET, {"note": MARKER}, id="dana")
        embedding = mem.log.fragment(key).embedding
        assert damage_event(
            mem,
            fragment_uuid(key),
            1,
            lambda state: state[:100] + bytes([state[100] ^ 1]) + state[101:],
        )
        assert mem.dream()["repaired"] == {"log-body/exact-copy": 1}
        assert snapshot_count(mem) == 1
        assert mem.forget(key, reason="erasure")
        assert [e.kind for e in mem.history(key)][-1] == "forgotten"
    raw = every_byte(home)
    for secret in (SECRET.encode(), b"Larkspur", MARKER.encode(), embedding):
        assert secret not in raw


def test_an_event_export_with_a_forgetting_imports_into_a_new_home(tmp_path, embedder):
    with carma.open(tmp_path / "a", embedder=embedder) as a:
        a.add("an unrelated fragment that stays", id="keep")
        a.add(SECRET, id="dana")
        a.forget("dana", "erasure")
        lines = list(a.export_events())
    with carma.open(tmp_path / "b", embedder=embedder) as b:
        assert b.import_events(lines) == {"appended": len(lines), "unchanged": 0, "restored": 0}
        assert [e.kind for e in b.history("dana")] == ["written", "forgotten"]
        assert [e["kind"] for e in b.log_events(kinds=["FragmentForgotten"])] == [
            "FragmentForgotten"
        ]

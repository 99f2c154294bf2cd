"""A full disk under a home whose log is on PostgreSQL: writes are still acknowledged (the
log is on the server), so health must say loudly that the home's projections stopped
following it; with room again they catch up and nothing is lost."""

import json

from click.testing import CliRunner

import carma
from carma.cli import cli
from carma.embedding import HashingEmbedder


def fill(path):
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass


def test_a_full_home_on_a_shared_log_is_reported_loudly_and_catches_up(tiny_disk, shared_url):
    home = tiny_disk / "home"
    embedder = HashingEmbedder(dimension=64)
    with carma.open(home, embedder=embedder, database_url=shared_url) as mem:
        mem.add_many(
            [{"text": f"written while there was room {i}", "id": f"a{i}"} for i in range(20)]
        )
        assert mem.health()["projection_errors"] == {}
        fill(tiny_disk / "filler")
        for i in range(20):  # acknowledged: the log is on the server, not on this disk
            mem.add(f"written on a full disk {i} " + "words " * 40, id=f"b{i}")
        health = mem.health()
        errors = health["projection_errors"]
        assert "cache" in errors, "a projection that cannot follow must say so"
        assert all("No space left" in e or "disk is full" in e for e in errors.values())
        assert mem.get("b7").text.startswith("written on a full disk 7 ")  # from the log

    runner = CliRunner()
    args = ["--home", str(home), "--database-url", shared_url]
    shown = runner.invoke(cli, ["health", *args])
    assert shown.exit_code == 0, shown.output
    assert "BEHIND" in shown.output and "cache stopped following the log" in shown.output
    as_json = json.loads(runner.invoke(cli, ["health", "--json", *args]).stdout)
    assert as_json["projection_errors"]

    (tiny_disk / "filler").unlink()  # room again: the projections catch up, nothing lost
    with carma.open(home, embedder=embedder, database_url=shared_url) as mem:
        mem.dream()
        health = mem.health()
        assert health["projection_errors"] == {}
        assert set(health["lag"].values()) == {0}
        assert health["score"] == 1.0 and health["live"] == 40
        assert [mem.get(f"b{i}").text.split(" words")[0] for i in range(20)] == [
            f"written on a full disk {i}" for i in range(20)
        ]
        assert mem.scrub()["found"] == {}
    shown = runner.invoke(cli, ["health", *args])
    assert "BEHIND" not in shown.output

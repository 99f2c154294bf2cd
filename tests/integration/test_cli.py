"""The CLI through click's CliRunner: shapes of --json output, exit codes, nothing changed on
error."""

import json

import pytest
from click.testing import CliRunner

from carma.cli import cli
from tests.conftest import log_length


@pytest.fixture
def run(home):
    runner = CliRunner()

    def invoke(*args, input=None):
        return runner.invoke(
            cli,
            [*args, "--home", str(home), "--embedder", "hashing"],
            input=input,
            catch_exceptions=False,
        )

    return invoke


def ok_json(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


FRAGMENT_KEYS = {
    "id",
    "namespace",
    "text",
    "metadata",
    "version",
    "status",
    "fidelity",
    "expected_recall",
    "expected_recall_unknown",  # why an approximate body has none (null otherwise)
    "expected_recall_source",  # where its calibration was measured (null without one)
    "content_hash",
}


def test_add_get_search_revise_delete_history_round_trip(run):
    added = ok_json(
        run(
            "add",
            "The heron waits in the shallows.",
            "--metadata",
            '{"bird": "heron"}',
            "--namespace",
            "nature",
            "--json",
        )
    )
    assert added["outcome"] == "added"
    key = added["id"]
    got = ok_json(run("get", key, "--json"))
    assert set(got) == FRAGMENT_KEYS
    assert (got["text"], got["metadata"], got["namespace"], got["status"]) == (
        "The heron waits in the shallows.",
        {"bird": "heron"},
        "nature",
        "healthy",
    )
    hits = ok_json(run("search", "heron shallows", "-k", "3", "--json"))
    assert hits[0]["id"] == key and set(hits[0]) == FRAGMENT_KEYS | {"score"}
    filtered = ok_json(run("search", "heron", "--where", '{"bird": "crow"}', "--json"))
    assert filtered == []
    revised = ok_json(run("revise", key, "--text", "The heron flies off.", "--json"))
    assert revised["version"] == 2
    assert ok_json(run("delete", key, "--reason", "left", "--json")) == {"id": key, "deleted": True}
    kinds = [e["kind"] for e in ok_json(run("history", key, "--json"))]
    assert kinds == ["written", "revised", "deleted"]
    plain = run("search", "heron")
    assert plain.exit_code == 0 and "no results" in plain.output


def test_add_many_reads_stdin_and_reports_ids(run):
    result = ok_json(
        run(
            "add-many",
            "-",
            "--namespace",
            "n1",
            "--json",
            input="first line\n\nsecond line\nfirst line\n",
        )
    )
    assert (result["added"], result["unchanged"], len(result["ids"])) == (2, 1, 3)


@pytest.mark.parametrize(
    "args, message",
    [
        (("add", ""), "text is empty"),
        (("add", "x", "--metadata", "{not json"), "--metadata is not valid JSON"),
        (("add", "x", "--metadata", '{"a": {"b": 1}}'), "flat lists"),
        (("add", "x", "--metadata", '{"a": NaN}'), "finite"),
        (("add", "x", "--namespace", "../../etc"), "namespace"),
        (("add", "x", "--id", "a\tb"), "control characters"),
        (("get", "missing"), "no fragment with id 'missing'"),
        (("revise", "missing", "--text", "y"), "no fragment"),
        (("revise", "seed"), "revise needs"),
        (("delete", "missing"), "no fragment"),
        (("search", "x", "-k", "0"), "k must be"),
        (("search", "x", "--where", "[1]"), "JSON object"),
        (("add", "x", "--id", "seed", "--namespace", "other"), "lives in namespace"),
    ],
)
def test_bad_input_prints_one_line_exits_2_and_changes_nothing(run, home, args, message):
    run("add", "the seed fragment", "--id", "seed")
    before = log_length(home)
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert log_length(home) == before


def test_import_export_round_trip_is_identical_and_import_is_idempotent(run, home, tmp_path):
    lines = [
        {"text": "Alpha fact.", "metadata": {"n": 1}},
        {"text": "Beta fact.", "namespace": "greek", "id": "beta"},
        {"text": "Gamma fact.", "metadata": {"tags": ["a", "b"], "ok": True}},
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert ok_json(run("import", str(source), "--json")) == {
        "added": 3,
        "unchanged": 0,
        "revised": 0,
        "restored": 0,
        "rejected": 0,
    }
    length = log_length(home)
    assert ok_json(run("import", str(source), "--json"))["unchanged"] == 3
    assert log_length(home) == length
    exported = run("export")
    assert exported.exit_code == 0
    rows = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [(r["text"], r["metadata"], r["namespace"]) for r in rows] == [
        (line["text"], line.get("metadata", {}), line.get("namespace", "default")) for line in lines
    ]
    assert all({"id", "version", "status", "fidelity"} <= set(r) for r in rows)
    # Importing the export into a fresh home reproduces the same fragments, ids included.
    second = tmp_path / "second"
    back = tmp_path / "export.jsonl"
    back.write_text(
        "".join(
            json.dumps({k: r[k] for k in ("text", "metadata", "namespace", "id")}) + "\n"
            for r in rows
        )
    )
    runner = CliRunner()
    again = runner.invoke(
        cli, ["import", str(back), "--home", str(second), "--embedder", "hashing"]
    )
    assert again.exit_code == 0, again.output
    re_exported = runner.invoke(cli, ["export", "--home", str(second), "--embedder", "hashing"])
    assert re_exported.stdout == exported.stdout


def test_an_import_with_a_bad_line_changes_nothing_unless_told_to_skip(run, home, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "good"}\n{"text": ""}\nnot json\n{"text": "fine", "x": 1}\n')
    result = run("import", str(source))
    assert result.exit_code == 2
    assert "line 2: text is empty" in result.stderr and "line 3" in result.stderr
    assert log_length(home) == 0
    skipped = run("import", str(source), "--skip-invalid", "--json")
    assert skipped.exit_code == 1
    assert json.loads(skipped.stdout) == {
        "added": 1,
        "unchanged": 0,
        "revised": 0,
        "restored": 0,
        "rejected": 3,
    }


def test_rebuild_and_stats(run):
    run("add-many", "one", "two", "three")
    rebuilt = ok_json(run("rebuild", "--json"))
    assert rebuilt["live"] == 3 and rebuilt["events"] == 4  # the store profile + 3 writes
    assert rebuilt["graph_seconds"] >= rebuilt["seconds"] > 0 and rebuilt["graph_pending"] == 0
    stats = ok_json(run("stats", "--json"))
    assert stats["live"] == 3 and stats["lag"] == {"ledger": 0, "cache": 0, "index": 0}
    assert stats["index_graph_pending"] == 0
    assert stats["model"] == {"name": "hashing-384", "dimension": 384}


def test_every_command_has_home_and_json_options():
    commands = {
        f"{name} {sub}" if sub else name: command
        for name, group in cli.commands.items()
        for sub, command in (getattr(group, "commands", None) or {"": group}).items()
    }  # a group's (`keys`) commands each
    assert "keys create" in commands
    for name, command in commands.items():
        options = {o for p in command.params for o in getattr(p, "opts", [])}
        assert "--json" in options, name
        if name != "bench":
            assert "--home" in options, name


def test_a_home_that_is_a_file_is_a_clear_usage_error(tmp_path):
    target = tmp_path / "plain-file"
    target.write_text("not a store")
    result = CliRunner().invoke(cli, ["add", "x", "--home", str(target), "--embedder", "hashing"])
    assert result.exit_code == 2 and "is not a folder" in result.stderr
    reading = CliRunner().invoke(
        cli, ["stats", "--home", str(tmp_path / "none"), "--embedder", "hashing"]
    )
    assert reading.exit_code == 2 and "no store at" in reading.stderr
    assert not (tmp_path / "none").exists()  # a read never creates a store


def test_healing_commands_report_in_the_documented_shapes(run, home):
    run("add-many", "alpha fact", "beta fact", "gamma fact")
    assert run("scrub").exit_code == 0
    for path in (home / "cache").glob("??/*.json"):
        path.unlink()
    scrubbed = run("scrub", "--json")
    assert scrubbed.exit_code == 1  # open findings: a failure found
    assert json.loads(scrubbed.stdout)["found"] == {"cache/missing": 3}
    health = ok_json(run("health", "--json"))
    assert {
        "score",
        "live",
        "by_status",
        "by_fault",
        "by_method",
        "fidelity",
        "lag",
        "last_cycle",
    } <= set(health)
    assert health["score"] == 0.0 and health["by_fault"] == {"cache/missing": 3}
    cycle = ok_json(run("dream", "--json"))
    assert {"id", "found", "repaired", "seconds", "health_before", "health_after"} <= set(cycle)
    assert cycle["repaired"] == {"cache/exact-log": 3} and cycle["health_after"] == 1.0
    assert ok_json(run("heal", "--json")) == {"repaired": {}}
    # The log's checksums: a scrub reads what its rolling schedule says, --deep all of it.
    deep = ok_json(run("scrub", "--deep", "--json"))["checked"]
    assert deep["log_deep"] == 1 and deep["log_events"] > 0
    assert ok_json(run("dream", "--deep", "--json"))["checked"]["log_deep"] == 1
    assert "log checksums:" in run("scrub", "--deep").stdout
    table = run("health")
    assert table.exit_code == 0 and "100.0%" in table.stdout
    watched = run("watch", "--every", "0.1", "--cycles", "2", "--json")
    assert watched.exit_code == 0 and len(watched.stdout.splitlines()) == 2


def test_chaos_damages_for_real_and_no_query_fails(run, home):
    run("add-many", *[f"fact number {i} about lighthouses and tides" for i in range(60)])
    result = run("chaos", "--queries", "40", "--threads", "3", "--seed", "3", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["damage"] == {"cache_deleted": 18, "cache_corrupted": 3, "index_file": 1}
    assert report["queries_failed"] == 0 and report["wrong_answers"] == 0
    assert report["phases"]["before"]["queries"] == 40
    assert report["health"]["as_found"] < 1.0 and report["health"]["after"] == 1.0
    assert sum(report["repaired"].values()) >= 22
    assert 0 < report["cycle_phases_s"]["heal"] <= report["heal_seconds"]
    text = run("chaos", "--queries", "10", "--threads", "2", "--seed", "4")
    assert text.exit_code == 0 and "queries" in text.output and "repairs" in text.output
    missing = CliRunner().invoke(
        cli, ["chaos", "--home", str(home / "nope"), "--embedder", "hashing"]
    )
    assert missing.exit_code == 2 and "no store at" in missing.stderr


def test_an_import_the_log_refuses_late_in_the_file_changes_nothing(run, home, tmp_path):
    run("add", "soon deleted", "--id", "gone")
    run("delete", "gone")
    before = log_length(home)
    source = tmp_path / "in.jsonl"
    lines = [{"text": f"line {i}"} for i in range(299)] + [{"text": "again", "id": "gone"}]
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = run("import", str(source))
    assert result.exit_code == 2 and "was deleted" in result.stderr
    assert log_length(home) == before


@pytest.mark.parametrize(
    "args, message",
    [
        (("log", "--since", "99999999999999999999"), "Invalid value"),
        (("replay", "--until", "²", "--into", "/tmp/carma-never"), "neither a log position"),
    ],
)
def test_odd_arguments_are_usage_errors_not_tracebacks(run, args, message):
    run("add", "something")
    result = run(*args)
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output


def test_a_file_that_is_not_utf8_or_not_an_export_is_refused_in_one_line(run, home, tmp_path):
    run("add", "something")
    before = log_length(home)
    latin = tmp_path / "latin1.jsonl"
    latin.write_bytes('{"text": "caf\xe9"}\n'.encode("latin-1"))
    result = run("import", str(latin))
    assert result.exit_code == 2 and "not UTF-8" in result.stderr
    forged = tmp_path / "forged.jsonl"
    forged.write_text(
        json.dumps(
            {
                "aggregate": "5f6c2f0e-8a57-4c1b-9d8e-0c4a2f6d7b31",
                "version": 1,
                "topic": "os:system",
                "state": "",
            }
        )
        + "\n"
    )
    result = run("import", "--events", str(forged))
    assert result.exit_code == 2 and "not an exported CARMA event" in result.stderr
    huge = tmp_path / "huge.jsonl"
    huge.write_text(
        '{"aggregate": "5f6c2f0e-8a57-4c1b-9d8e-0c4a2f6d7b31", "version": 1e400,'
        ' "topic": "x", "state": ""}\n'
    )
    assert run("import", "--events", str(huge)).exit_code == 2
    assert log_length(home) == before

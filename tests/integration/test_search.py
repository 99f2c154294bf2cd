"""Search beyond the vector through the CLI: filter operators, keyword and hybrid modes, and
search as of a moment; bad input is a clear error that changes nothing."""

import json

import pytest
from click.testing import CliRunner

import carma
from carma.cli import cli
from carma.embedding import HashingEmbedder


@pytest.fixture
def home(tmp_path, backend):
    home = tmp_path / "home"
    with carma.open(home, embedder=HashingEmbedder(dimension=64)) as mem:
        mem.add(
            "Invoice INV-2291 was paid on Tuesday.", {"kind": "finance", "year": 2026}, id="inv"
        )
        mem.add(
            "The quarterly review moved to March.", {"kind": "calendar", "year": 2025}, id="rev"
        )
        mem.add("Disk full on the build server again.", {"kind": "ops"}, id="ops")
    return home


def run(home, *args):
    return CliRunner().invoke(cli, [*args, "--home", str(home), "--json"])


def ids(result):
    assert result.exit_code == 0, result.output
    return [h["id"] for h in json.loads(result.stdout)]


def test_the_cli_filters_with_operators_and_finds_tokens_by_keyword(home):
    assert ids(run(home, "search", "anything", "--where", '{"year": {"$gte": 2026}}')) == ["inv"]
    assert set(
        ids(run(home, "search", "x", "--where", '{"$or": [{"kind": "ops"}, {"year": 2025}]}'))
    ) == {"ops", "rev"}
    assert set(ids(run(home, "search", "x", "--where", '{"year": {"$exists": false}}'))) == {"ops"}
    assert ids(run(home, "search", "INV-2291", "--mode", "keyword")) == ["inv"]
    assert ids(run(home, "search", "INV-2291 payment", "--mode", "hybrid"))[0] == "inv"


def test_the_cli_searches_as_of_a_position(home):
    with carma.open(home, embedder=HashingEmbedder(dimension=64)) as mem:
        before = mem.log.position()
        mem.revise("inv", text="Invoice INV-2291 is disputed.")
        mem.delete("ops")
    past = json.loads(run(home, "search", "invoice", "--as-of", str(before)).stdout)
    assert {h["id"]: h["text"] for h in past}["inv"] == "Invoice INV-2291 was paid on Tuesday."
    assert "ops" in {h["id"] for h in past}
    assert "ops" not in ids(run(home, "search", "invoice"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--where", '{"year": {"$between": [1, 2]}}'], "where.year.$between: unknown operator"),
        (["--where", '{"$not": {"year": 1}}'], "where.$not: unknown operator"),
        (["--where", '{"$and": []}'], "where.$and: takes a non-empty list"),
        # a key the caller spelled with a newline is shown escaped (the soak found it raw)
        (["--where", '{"a\\nb": 1}'], 'where["a\\nb"]: not a metadata key'),
        (["--where", '{"k": {"$\\n": 1}}'], 'where.k["$\\n"]: unknown operator'),
        (["--mode", "fuzzy"], "Invalid value for '--mode'"),
        (["--as-of", "yesterday"], "--as-of 'yesterday' is neither"),
    ],
)
def test_a_bad_search_is_a_clear_error(home, args, message):
    result = run(home, "search", "anything", *args)
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output
    if args[0] == "--where":  # CARMA's own refusal: one line
        assert len(result.output.strip().splitlines()) == 1

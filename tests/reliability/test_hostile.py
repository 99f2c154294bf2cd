"""Hostile and broken input: always a clear error, never a traceback, nothing changed,
nothing written outside the home."""

import json
import os
import shutil
import subprocess

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import carma
from carma import CarmaError, StorageError
from carma.cli import cli
from carma.embedding import HashingEmbedder
from tests.conftest import log_length

any_text = st.text(st.characters(codec=None), max_size=300) | st.sampled_from(
    ["", " ", "\x00", "a\x00b", "\ud800", "\u202eevil", "x" * 20_001, "../../etc/passwd"]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=6,
)
any_id = st.none() | any_text | st.sampled_from(["../x", "/abs/olute", "a/../../b", "\x00"])
any_namespace = any_text | st.sampled_from(["default", "../..", "a" * 65, "ns/1"])


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory, backend):
    """A parent folder holding only the home: anything else appearing in it escaped the home."""
    parent = tmp_path_factory.mktemp("sandbox")
    mem = carma.open(parent / "home", embedder=HashingEmbedder(dimension=16))
    mem.add("a fragment that is already there", id="existing")
    yield parent, mem
    mem.close()


# Per test: 300 in CI (cheap, so many more than the default profile); `make soak` raises it
# (CARMA_SOAK_HOSTILE) so that its four tests below try 10,000 inputs in all.
HOSTILE_EXAMPLES = int(os.environ.get("CARMA_SOAK_HOSTILE", "300"))


@settings(max_examples=HOSTILE_EXAMPLES)
@given(text=any_text, metadata=json_values, namespace=any_namespace, key=any_id)
def test_the_api_accepts_or_refuses_cleanly_and_a_refusal_changes_nothing(
    sandbox, text, metadata, namespace, key
):
    parent, mem = sandbox
    before = log_length(mem)
    try:
        mem.add(text, metadata, namespace=namespace, id=key)
    except CarmaError as exc:
        assert str(exc) and "\n" not in str(exc)
        assert log_length(mem) == before
    assert sorted(p.name for p in parent.iterdir()) == ["home"]


@settings(max_examples=HOSTILE_EXAMPLES)
@given(
    query=any_text, k=st.integers(-5, 2000) | st.sampled_from([True, 2.5, "3"]), where=json_values
)
def test_search_and_get_never_crash(sandbox, query, k, where):
    _, mem = sandbox
    try:
        mem.search(query, k=k, where=where)
    except CarmaError as exc:
        assert "\n" not in str(exc)
    try:
        mem.get(query)
    except CarmaError:
        pass


cli_text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=200)


@settings(max_examples=HOSTILE_EXAMPLES)
@given(
    text=cli_text, metadata=cli_text | json_values.map(json.dumps), key=cli_text, namespace=cli_text
)
def test_the_cli_exits_0_or_2_with_one_line_and_never_a_traceback(
    tmp_path_factory, text, metadata, key, namespace
):
    home = tmp_path_factory.mktemp("cli") / "home"
    args = [
        "add",
        text,
        "--metadata",
        metadata,
        "--id",
        key,
        "--namespace",
        namespace,
        "--home",
        str(home),
        "--embedder",
        "hashing",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code in (0, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    if result.exit_code == 2:
        assert "Traceback" not in result.output
        assert log_length(home) == 0


import_line = (
    json_values.map(json.dumps)
    | st.fixed_dictionaries(
        {"text": any_text},
        optional={
            "metadata": json_values,
            "namespace": any_namespace,
            "id": any_id,
            "status": any_text | st.just("healthy"),
            "extra": json_values,
        },
    ).map(json.dumps)
    | any_text
)


@settings(max_examples=HOSTILE_EXAMPLES)
@given(lines=st.lists(import_line, min_size=1, max_size=4), skip=st.booleans())
def test_an_import_refuses_or_skips_bad_lines_cleanly_and_a_refusal_changes_nothing(
    sandbox, lines, skip
):
    parent, mem = sandbox
    before = log_length(mem)
    try:
        result = mem.import_lines(lines, skip_invalid=skip)
    except CarmaError as exc:
        assert str(exc) and not skip
        assert log_length(mem) == before
    else:  # every line is accounted for, once
        outcomes = result.model_dump(exclude={"problems"}).values()
        assert sum(outcomes) == sum(1 for line in lines if line.strip())
    assert sorted(p.name for p in parent.iterdir()) == ["home"]


def test_an_id_crafted_to_escape_the_home_writes_nothing_outside(tmp_path):
    with carma.open(tmp_path / "home", embedder=HashingEmbedder(dimension=16)) as mem:
        for key in ("../../outside", "/tmp/abs", "..", "a/../../../b"):
            mem.add(f"text for {key}", id=key)
            assert mem.get(key).text == f"text for {key}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


def test_a_home_under_a_file_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(carma.InvalidInput, match="cannot create home"):
        carma.open(blocker / "home", embedder=HashingEmbedder(dimension=16))


@pytest.mark.sqlite_only  # the full disk must hold the log; on PostgreSQL it holds projections only
def test_a_full_disk_is_a_clear_error_and_loses_nothing_acknowledged(tiny_disk):
    home = tiny_disk / "home"
    acknowledged: list[str] = []
    with carma.open(home, embedder=HashingEmbedder(dimension=64)) as mem:
        with pytest.raises(StorageError) as refused:
            for i in range(100_000):
                key = f"k{i}"
                mem.add(f"fragment {i} " + "words to fill the disk " * 20, id=key)
                acknowledged.append(key)
        assert "\n" not in str(refused.value)
        assert len(acknowledged) > 10
        # Reads keep working on the full disk, and every acknowledged write is there.
        for key in acknowledged[:: max(1, len(acknowledged) // 50)]:
            assert mem.get(key).text.startswith("fragment ")
    # Room again (as an operator would make it): everything acknowledged is still there exactly.
    shutil.copytree(home, tiny_disk.parent / "moved")
    with carma.open(tiny_disk.parent / "moved", embedder=HashingEmbedder(dimension=64)) as mem:
        got = {k: mem.get(k).text for k in acknowledged}
        assert all(t.startswith(f"fragment {k[1:]} ") for k, t in got.items())
        mem.dream()
        assert mem.scrub()["found"] == {}


@pytest.mark.sqlite_only  # as above: a SQLite log on the full disk
def test_the_cli_on_a_full_disk_says_so_in_one_line(tiny_disk):
    home = tiny_disk / "home"
    runner = CliRunner()
    filler = tiny_disk / "filler"
    result = runner.invoke(cli, ["add", "first", "--home", str(home), "--embedder", "hashing"])
    assert result.exit_code == 0
    before = log_length(home)
    with open(filler, "wb", buffering=0) as f:  # fill what is left
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    result = runner.invoke(
        cli, ["add", "second " * 200, "--home", str(home), "--embedder", "hashing"]
    )
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.output
    filler.unlink()  # room again: the refused write left nothing in the log
    assert log_length(home) == before


def test_a_read_only_home_is_a_clear_error(tmp_path):
    source = tmp_path / "home"
    with carma.open(source, embedder=HashingEmbedder(dimension=16)) as mem:
        mem.add("written before the home became read-only", id="k")
    mount = tmp_path / "ro"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
    try:
        shutil.copytree(source, mount / "home")
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        result = CliRunner().invoke(
            cli, ["add", "new", "--home", str(mount / "home"), "--embedder", "hashing"]
        )
        assert result.exit_code in (1, 2) and "Traceback" not in result.output
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
    with carma.open(source, embedder=HashingEmbedder(dimension=16)) as mem:
        assert mem.get("k").text == "written before the home became read-only"


DEEP = "[" * 5_000  # what made the import die with a RecursionError traceback


@pytest.mark.parametrize(
    "args, stdin",
    [
        (["import", "-"], '{"text": "fine"}\n' + DEEP + "\n"),
        (["import", "--events", "-"], DEEP + "\n"),
        (["add", "some text", "--metadata", '{"a": ' + DEEP + "}"], None),
        (["search", "some text", "--where", DEEP], None),
        (["import", "-"], '{"text": "a number", "metadata": {"n": ' + "9" * 5_000 + "}}\n"),
    ],
    ids=["import", "import-events", "metadata", "where", "huge-integer"],
)
def test_json_nested_or_huge_past_its_bounds_is_a_clear_refusal(tmp_path, args, stdin, backend):
    home = tmp_path / "home"
    with carma.open(home, embedder=HashingEmbedder(dimension=16)) as mem:
        mem.add("already there")
        before = log_length(mem)
    result = CliRunner().invoke(cli, [*args, "--home", str(home)], input=stdin)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output and "error:" in result.stderr
    assert log_length(home) == before


def test_a_deep_line_is_skipped_under_skip_invalid_and_the_rest_imported(tmp_path, backend):
    home = tmp_path / "home"
    lines = '{"text": "first"}\n' + DEEP + '\n{"text": "second"}\n'
    result = CliRunner().invoke(
        cli, ["import", "-", "--skip-invalid", "--json", "--home", str(home)], input=lines
    )
    assert result.exit_code == 1  # a line was rejected
    assert json.loads(result.stdout)["added"] == 2
    assert json.loads(result.stdout)["rejected"] == 1
    assert "line 2: the line nests 5000 levels deep" in result.stderr


def test_the_api_refuses_a_deep_line_with_the_others_unwritten(tmp_path, backend):
    with carma.open(tmp_path / "home", embedder=HashingEmbedder(dimension=16)) as mem:
        with pytest.raises(carma.InvalidLines) as refused:
            mem.import_lines(['{"text": "first"}', DEEP])
        assert refused.value.problems == [
            "line 2: the line nests 5000 levels deep; the limit is 32"
        ]
        assert mem.stats()["live"] == 0

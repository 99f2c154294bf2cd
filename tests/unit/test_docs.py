"""The README and the manual in docs/ say what the code does: every command, public name and
environment variable is documented, every relative link leads somewhere, and every Python
example runs.

Fenced blocks tagged exactly `python` are run: the blocks of one page in order, in one shared
namespace, in a fresh working directory, offline, with none of CARMA's environment variables
set. Illustrative blocks that must not run are tagged otherwise (`text`, `pycon`, `bash`)."""

from __future__ import annotations

import re
import threading
import unicodedata
from pathlib import Path

import pytest

import carma
import carma.config
from carma.bench import BENCHMARKS
from carma.cli import cli

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
README_MAX_LINES = 160
OPENING_LINES = 40

FENCE = re.compile(
    r"^(?P<fence>`{3,})(?P<tag>[^`\n]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.M | re.S
)
BACKTICKED = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)


def _page_id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def _read(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def _blocks(text: str) -> list[tuple[str, str, int]]:
    """Each fenced block: its tag, its body, and the line it starts on."""
    return [
        (m["tag"].strip(), m["body"], text.count("\n", 0, m.start()) + 1)
        for m in FENCE.finditer(text)
    ]


def _prose(text: str) -> str:
    """The page without its fenced blocks (links and headings inside code do not count)."""
    return FENCE.sub("", text)


def _backticked_names(text: str) -> set[str]:
    """The names set in backticks: `carma.open(path)` counts as `open`, `$CARMA_HOME` and
    `CARMA_HOME=x` as `CARMA_HOME`."""
    names = set()
    for span in BACKTICKED.findall(text):
        name = re.split(r"[\s(\[=:,]", span.strip().lstrip("$"), maxsplit=1)[0]
        names.add(name)
        names.add(name.removeprefix("carma."))
    return names


# -- the README -------------------------------------------------------------------------------


def test_the_readme_opens_with_the_two_commands():
    opening = "\n".join(_read(README).splitlines()[:OPENING_LINES])
    blocks = [body for _, body, _ in _blocks(opening)]
    assert any("make demo" in body and "make test" in body for body in blocks), (
        f"no fenced block within the README's first {OPENING_LINES} lines holds both "
        "`make demo` and `make test`"
    )


def test_the_readme_is_short():
    lines = len(_read(README).splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; at most {README_MAX_LINES}"


# -- what the code offers is documented -------------------------------------------------------


def test_every_command_has_a_heading_in_the_cli_page():
    headings = set(re.findall(r"^### carma ([a-z][a-z-]*)[ \t]*$", _read(DOCS / "cli.md"), re.M))
    missing = sorted(set(cli.commands) - headings)
    assert missing == [], f"docs/cli.md has no `### carma NAME` heading for: {missing}"


def test_every_benchmark_is_documented():
    text = _read(DOCS / "cli.md") + _read(DOCS / "benchmarks.md")
    missing = sorted(name for name in BENCHMARKS if f"carma bench {name}" not in text)
    assert missing == [], f"neither docs/cli.md nor docs/benchmarks.md shows: {missing}"


def test_every_public_name_is_in_the_python_api_page():
    documented = _backticked_names(_prose(_read(DOCS / "python-api.md")))
    missing = sorted(set(carma.__all__) - {"__version__"} - documented)
    assert missing == [], f"docs/python-api.md does not name in backticks: {missing}"


def test_every_environment_variable_is_in_the_configuration_page():
    documented = _backticked_names(_prose(_read(DOCS / "configuration.md")))
    missing = sorted(set(carma.config.ENVIRONMENT) - documented)
    assert missing == [], f"docs/configuration.md does not name in backticks: {missing}"


# -- links ------------------------------------------------------------------------------------


def _slug(heading: str) -> str:
    """The anchor a Markdown renderer gives a heading, as GitHub makes it."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    kept = "".join(ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in ("L", "N"))
    return kept.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    anchors, seen = set(), {}
    for heading in HEADING.findall(_prose(_read(page))):
        slug = _slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_relative_link_leads_somewhere(page: Path):
    broken = []
    for target in LINK.findall(_prose(_read(page))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not ours to check
            continue
        path, _, anchor = target.partition("#")
        where = page if not path else (page.parent / path).resolve()
        if not where.exists():
            broken.append(f"{target} (no file {where.relative_to(ROOT)})")
        elif anchor and where.suffix == ".md" and anchor not in _anchors(where):
            broken.append(f"{target} (no heading #{anchor} in {where.name})")
    assert broken == [], f"{_page_id(page)} links to nothing: {broken}"


def test_the_docs_test_reads_every_page():
    assert {p.name for p in PAGES} >= {"README.md", "index.md", "python-api.md", "cli.md"}


# -- the examples run -------------------------------------------------------------------------

RUNNABLE = [page for page in PAGES if any(tag == "python" for tag, _, _ in _blocks(_read(page)))]


def _runnable_params():
    for page in RUNNABLE:
        # The README's example uses the default model, as users run it; the others need none.
        marks = [pytest.mark.realmodel] if page == README else []
        yield pytest.param(page, id=_page_id(page), marks=marks)


@pytest.mark.parametrize("page", list(_runnable_params()))
def test_the_python_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for variable in carma.config.ENVIRONMENT:
        monkeypatch.delenv(variable, raising=False)
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem.replace('-', '_')}"}

    def run_the_page() -> None:
        try:
            for tag, body, line in _blocks(_read(page)):
                if tag != "python":
                    continue
                code = compile(body, f"{_page_id(page)}:{line + 1}", "exec")
                exec(code, namespace)  # noqa: S102 - the documentation's own examples
        finally:
            for value in namespace.values():
                if isinstance(value, carma.Memory):
                    value.close()

    # In a thread of its own, as a reader's script runs in a fresh interpreter: the examples
    # call asyncio.run(), which refuses a thread where an event loop is marked running, and
    # Playwright's sync API leaves the test process's main thread so marked once the browser
    # tests have run (CI ran them first and this test failed).
    failures: list[BaseException] = []

    def run_and_keep_the_failure() -> None:
        try:
            run_the_page()
        except BaseException as failure:  # re-raised in the test's own thread
            failures.append(failure)

    thread = threading.Thread(target=run_and_keep_the_failure, name=f"docs {page.name}")
    thread.start()
    thread.join()
    if failures:
        raise failures[0]


def test_some_examples_run():
    assert README in RUNNABLE and DOCS / "python-api.md" in RUNNABLE

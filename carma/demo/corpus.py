"""A deterministic corpus of real English sentences: the standard library's own docstrings.

Every Python install has them, so tests, the demo and the benchmarks need no download.
Sources are parsed with `ast` (never imported: some modules act on import).
"""

from __future__ import annotations

import ast
import itertools
import re
import sysconfig
from collections.abc import Iterator
from pathlib import Path

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_SKIP_DIRS = {"test", "tests", "idlelib", "site-packages", "lib2to3", "turtledemo", "__pycache__"}


def _sources() -> Iterator[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        if not _SKIP_DIRS.intersection(path.relative_to(root).parts[:-1]):
            yield path


def _docstrings(path: Path) -> Iterator[str]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
        return
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                yield doc


def _usable(sentence: str) -> bool:
    if not 40 <= len(sentence) <= 240 or not sentence[0].isupper() or sentence[-1] != ".":
        return False
    if any(mark in sentence for mark in (">>>", "::", "`", "http", "\\", "|", "{", "}", "==")):
        return False
    letters = sum(c.isalpha() or c == " " for c in sentence)
    return letters / len(sentence) > 0.9 and len(sentence.split()) >= 7


def _sentences() -> Iterator[str]:
    """Unique sentences from docstrings, in a fixed order (sorted files, then document order)."""
    seen: set[str] = set()
    for path in _sources():
        for doc in _docstrings(path):
            for paragraph in doc.split("\n\n"):
                flat = " ".join(paragraph.split())
                for sentence in _SENTENCE_END.split(flat):
                    if _usable(sentence) and sentence not in seen:
                        seen.add(sentence)
                        yield sentence


def corpus(n: int) -> list[str]:
    """The first n sentences; past the corpus's size, numbered variants keep every text unique.

    Parses only as many source files as n needs.
    """
    out = list(itertools.islice(_sentences(), n))
    base = tuple(out)  # when short of n, this is the whole corpus
    if not base and n > 0:
        raise RuntimeError("no docstring sentences found in this Python's standard library")
    copy = 1
    while len(out) < n:
        out.extend(f"{s[:-1]} (variant {copy})." for s in base[: n - len(out)])
        copy += 1
    return out


def varied(n: int, shortest: int = 40, longest: int = 300) -> list[str]:
    """n texts of varied length, from `shortest` to `longest` characters, as users' notes are:
    runs of consecutive sentences cut at a word, each length drawn from a fixed spread."""
    sentences = corpus(max(n * 2, 64))
    out: list[str] = []
    seen: set[str] = set()
    i = 0
    while len(out) < n:
        # A fixed, well-mixed spread of target lengths (a multiplicative walk mod the range).
        target = shortest + (len(out) * 7_919) % (longest - shortest + 1)
        text = sentences[i % len(sentences)]
        i += 1
        while len(text) < target:
            text += " " + sentences[i % len(sentences)]
            i += 1
        if len(text) > longest:
            text = text[: text.rfind(" ", 0, longest)].rstrip(",;:") + "."
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def api_reference(n: int) -> list[tuple[str, str, str | None]]:
    """(name, summary, more) of up to n public functions and methods of the standard library,
    in a fixed order: a function's qualified name (`fnmatch.fnmatchcase`), its docstring's
    first sentence, and the next sentence about it (None if it has none). The names are the
    exact, id-like tokens a keyword search must find; a name defined twice is left out, so
    that each names one function."""
    root = Path(sysconfig.get_paths()["stdlib"])
    seen: dict[str, tuple[str, str, str | None] | None] = {}
    for path in _sources():
        parts = path.relative_to(root).with_suffix("").parts
        if any(p.startswith("_") for p in parts) and parts[-1] != "__init__":
            continue
        module = ".".join(p for p in parts if p != "__init__")
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
            continue
        functions = [(module, n) for n in tree.body if isinstance(n, ast.FunctionDef)]
        functions += [  # and the methods of public classes
            (f"{module}.{c.name}", n)
            for c in tree.body
            if isinstance(c, ast.ClassDef) and not c.name.startswith("_")
            for n in c.body
            if isinstance(n, ast.FunctionDef)
        ]
        for owner, node in functions:
            doc = ast.get_docstring(node, clean=True)
            if node.name.startswith("_") or not doc or len(node.name) < 6:
                continue
            sentences = [t for t in _SENTENCE_END.split(" ".join(doc.split())) if _usable(t)]
            first = _SENTENCE_END.split(" ".join(doc.split("\n\n")[0].split()))[0]
            if not 30 <= len(first) <= 200 or not first[0].isupper():
                continue
            more = next((t for t in sentences if t not in first and first not in t), None)
            # A name defined twice is no exact token: it is dropped wherever it is.
            seen[node.name] = None if node.name in seen else (f"{owner}.{node.name}", first, more)
        if sum(v is not None for v in seen.values()) >= n * 2:
            break
    return [v for v in seen.values() if v is not None][:n]

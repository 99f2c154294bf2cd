"""A deterministic corpus of real English sentences: the standard library's own docstrings.

Every Python install has them, so tests, the demo and the benchmarks need no download.
Sources are parsed with `ast` (never imported: some modules act on import).
"""

from __future__ import annotations

import ast
import functools
import hashlib
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


def _loosely_usable(sentence: str) -> bool:
    """A sentence of prose for a benchmark that needs many (shorter ones allowed)."""
    if not 30 <= len(sentence) <= 300 or not sentence[0].isupper() or sentence[-1] != ".":
        return False
    if not sentence.isprintable():  # a NUL or a lone surrogate: a text no store should take
        return False
    if any(mark in sentence for mark in (">>>", "::", "`", "http", "\\", "|", "{", "}", "==")):
        return False
    letters = sum(c.isalpha() or c == " " for c in sentence)
    return letters / len(sentence) > 0.85 and len(sentence.split()) >= 5


def installed(n: int) -> list[str]:
    """Up to n unique sentences from the docstrings of the standard library, then of the
    installed packages (site-packages, files sorted): real text in the hundred thousands for
    benchmarks at scale, the same on every machine with the same packages. Fewer than n when
    there are not that many (callers report how many they got)."""
    roots = [Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"])]
    seen: dict[str, None] = {}
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            for doc in _docstrings(path):
                for paragraph in doc.split("\n\n"):
                    flat = " ".join(paragraph.split())
                    for sentence in _SENTENCE_END.split(flat):
                        if _loosely_usable(sentence):
                            seen.setdefault(sentence)
                            if len(seen) >= n:
                                return list(seen)
    return list(seen)


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


# Namespace sizes for `by_module`: mostly 10 to 40 fragments, as one user's or agent's memories
# are, with a few smaller and larger ones so that every size band is represented.
MODULE_CAPS = (8, 12, 15, 18, 22, 26, 30, 35, 40)
LARGE_CAP = 60
MIN_MODULE_SENTENCES = 8
# Three disjoint parts of the standard library's top-level modules, by a hash of their names:
# what ships with the package (public text, and the calibration measured on it), what method
# choices were tuned on, and what the benchmark reports on. Nothing is measured on the text it
# was tuned on.
PARTS = ("shipped", "tuning", "report")


def module_part(module: str) -> str:
    """Which part a top-level standard-library module belongs to (a fixed hash of its name)."""
    return PARTS[hashlib.sha256(module.encode()).digest()[0] % len(PARTS)]


@functools.cache
def _module_sentences() -> dict[str, tuple[str, ...]]:
    """Every usable docstring sentence, by top-level module. Every part is read, so that a
    sentence two modules share belongs to the first one only, whichever part is asked for:
    no text is in two parts."""
    root = Path(sysconfig.get_paths()["stdlib"])
    found: dict[str, list[str]] = {}
    seen: set[str] = set()
    for path in _sources():
        module = path.relative_to(root).parts[0].removesuffix(".py")
        for doc in _docstrings(path):
            for paragraph in doc.split("\n\n"):
                flat = " ".join(paragraph.split())
                for sentence in _SENTENCE_END.split(flat):
                    if _usable(sentence) and sentence not in seen:
                        seen.add(sentence)
                        found.setdefault(module, []).append(sentence)
    return {m: tuple(texts) for m, texts in found.items()}


def by_module(part: str | None = None) -> dict[str, list[str]]:
    """Sentences of the standard library's docstrings, one list per top-level module (a package
    is one module), in a fixed order: many small collections on unrelated subjects, as agents'
    memories are. Each is capped at a size given by a hash of the module's name (MODULE_CAPS
    in turn, LARGE_CAP for a third of the modules that have that many); modules with fewer
    than MIN_MODULE_SENTENCES sentences are left out. `part`: only the modules of one of
    PARTS (None: all). Keys are module names without leading or trailing underscores, so
    that each is a valid namespace."""
    found = {
        m: list(texts)
        for m, texts in _module_sentences().items()
        if part is None or module_part(m) == part
    }
    kept = sorted(
        (m for m, sentences in found.items() if len(sentences) >= MIN_MODULE_SENTENCES),
        key=lambda m: hashlib.sha256(f"cap:{m}".encode()).digest(),
    )
    # A third of the modules large enough for it hold LARGE_CAP fragments (the band above 40);
    # the others take the caps of MODULE_CAPS in turn.
    large = [m for m in kept if len(found[m]) >= LARGE_CAP][::3]
    out: dict[str, list[str]] = {}
    for module in sorted(kept):
        sentences = found[module]
        if module in large:
            cap = LARGE_CAP
        else:
            cap = MODULE_CAPS[[m for m in kept if m not in large].index(module) % len(MODULE_CAPS)]
        # Spread over the module (not its first file's opening): every `step`-th sentence.
        step = max(1, len(sentences) // cap)
        out[module.strip("_")] = sentences[::step][:cap]  # a namespace starts with a letter
    return out

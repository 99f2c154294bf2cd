"""The JSON lines of `import` and `export`, one rule for the Python API, the CLI and the
services alike.

An import line is `{"text": str, "metadata": {...}?, "namespace": str?, "id": str?}`. An export
line is an import line with the fragment's `id` and its `version`, `status`, `fidelity` and
`expected_recall` added: importing an export drops those, so a store re-imports its own export.
A line exported `approximate` or `lost` is refused: importing it as an original would launder a
reconstruction into an exact fragment.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from carma.domain import Draft, InvalidInput
from carma.records import FragmentRecord

#: The fields an export adds to an import line.
EXPORT_ONLY = ("version", "status", "fidelity", "expected_recall", "content_hash")
#: Bounds on any JSON a user gives (an import line, --metadata, --where, a request body): the
#: largest valid import line (20,000 characters of text, 16 KiB of metadata, a 4,096-d vector)
#: is far below the size, and no valid input nests deeper than a few levels.
MAX_JSON_CHARS = 1 << 20
MAX_JSON_DEPTH = 32


def export_line(record: FragmentRecord) -> dict[str, Any]:
    """A live fragment as a line of `export`."""
    return {
        "id": record.id,
        "text": record.text,
        "metadata": record.metadata,
        "namespace": record.namespace,
        "version": record.version,
        "status": record.status,
        "fidelity": record.fidelity,
        "expected_recall": record.expected_recall,
    }


def draft_from_line(line: str | bytes | Mapping[str, Any]) -> Draft:
    """The draft an import line asks for (a JSON text, or the object it holds); InvalidInput
    with one clear line otherwise."""
    item: Any = line
    if isinstance(line, (str, bytes)):
        item = parse_json(line, "the line")
    if isinstance(item, Mapping) and "status" in item:  # a line of `export`
        if item["status"] != "healthy":
            raise InvalidInput(
                f"the fragment was exported {item['status']!r}: only exact texts can be imported"
            )
        item = {k: v for k, v in item.items() if k not in EXPORT_ONLY}
    return Draft.from_mapping(dict(item) if isinstance(item, Mapping) else item)


class InvalidLines(InvalidInput):
    """Lines of an import that break its rules; nothing of the import was written."""

    SHOWN = 10

    def __init__(self, problems: list[str]):
        more = f" (and {len(problems) - self.SHOWN} more)" if len(problems) > self.SHOWN else ""
        super().__init__(
            f"{len(problems)} invalid line(s){more}; nothing was imported "
            "(skip_invalid imports the rest): " + "; ".join(problems[:3])
        )
        self.problems = problems


def parse_json(text: str | bytes, what: str) -> Any:
    """A JSON text a user gave, or InvalidInput naming `what`: never a RecursionError or a
    parser's limit escaping as a traceback."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"{what} is not UTF-8 text (byte {exc.start})") from None
    if len(text) > MAX_JSON_CHARS:
        raise InvalidInput(f"{what} has {len(text)} characters; the limit is {MAX_JSON_CHARS}")
    depth = _nesting(text)
    if depth > MAX_JSON_DEPTH:
        raise InvalidInput(f"{what} nests {depth} levels deep; the limit is {MAX_JSON_DEPTH}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc.msg} at column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer of 5,000 digits
        raise InvalidInput(f"{what} is not usable JSON: {str(exc).splitlines()[0]}") from None


def _nesting(text: str) -> int:
    """How deep the text's brackets nest, outside strings (without parsing it)."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return 0  # cannot nest deeper than it has brackets: the common case, at once
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def position_or_moment(value: str | None, option: str) -> int | datetime | None:
    """A log position (a whole number) or a moment (ISO 8601) given as text: the CLI's
    `--as-of`/`--until`, the HTTP API's and MCP's `as_of`. `option` names it in the error."""
    if value is None:
        return None
    if value.isascii() and value.isdigit() and len(value) < 19:
        return int(value)
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"{option} {value!r} is neither a log position nor an ISO 8601 time"
        ) from None

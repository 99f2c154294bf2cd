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
from typing import Any

from carma.domain import Draft, InvalidInput
from carma.records import FragmentRecord

#: The fields an export adds to an import line.
EXPORT_ONLY = ("version", "status", "fidelity", "expected_recall", "content_hash")


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
    """A JSON text a user gave, or InvalidInput naming `what`."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc.msg} at column {exc.colno}") from None

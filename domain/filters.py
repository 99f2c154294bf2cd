"""Metadata filters: what a search's `where` may say, checked once, and what it means.

The operators are Chroma's spelling, so that users' filters carry over: `$eq`, `$ne`, `$gt`,
`$gte`, `$lt`, `$lte`, `$in`, `$nin`, `$exists`, combined with `$and` / `$or`; a plain
`{"key": value}` is `$eq`, and several keys (or several operators on one key) must all hold.

Meaning, exactly (the store's index and `matches` agree on it; a property test checks them
against a brute-force reading):
- `$eq`: the field holds the value, of the same kind: a string equals a string, a number a
  number (1 equals 1.0), a boolean a boolean, null null, a list the same list. `$ne` is its
  negation: a fragment without the field matches `$ne`.
- `$gt`, `$gte`, `$lt`, `$lte`: a number compared with a number, a string with a string (ISO
  dates compare as they should); a field of another kind, or none, does not match.
- `$in`: the field equals one of the values (a non-empty list of scalars); `$nin` negates it.
- `$exists`: the key is present (with any value, null included), or absent for false.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from carma.domain.errors import InvalidInput
from carma.domain.values import METADATA_KEY_PATTERN, validate_metadata

COMPARISONS = ("$gt", "$gte", "$lt", "$lte")
OPERATORS = ("$eq", "$ne", *COMPARISONS, "$in", "$nin", "$exists")
MAX_CLAUSES = 256  # conditions in one filter, all levels together
MAX_DEPTH = 16
_KEY = re.compile(METADATA_KEY_PATTERN)
_PLAIN = re.compile(r"\$?[A-Za-z0-9_.-]{1,64}")  # shown in an error path as it is


@dataclass(frozen=True)
class Condition:
    """One operator on one metadata key."""

    key: str
    op: str
    value: Any


@dataclass(frozen=True)
class AllOf:
    parts: tuple[Filter, ...]


@dataclass(frozen=True)
class AnyOf:
    parts: tuple[Filter, ...]


Filter = Condition | AllOf | AnyOf
EVERYTHING = AllOf(())


def parse_filter(where: object) -> Filter:
    """The filter a `where` states, or InvalidInput naming the offending part."""
    if where is None:
        return EVERYTHING
    counted = [0]
    return _parse(where, "where", 0, counted)


def _step(at: str, name: object) -> str:
    """The path to a part of the filter, for an error: a name the caller gave is shown
    escaped and cut short, so the error stays one readable line whatever it holds."""
    if isinstance(name, str) and _PLAIN.fullmatch(name):
        return f"{at}.{name}"
    shown = json.dumps(name) if isinstance(name, str) else repr(name)
    return f"{at}[{shown[:60]}{'...' if len(shown) > 60 else ''}]"


def _parse(node: object, at: str, depth: int, counted: list[int]) -> Filter:
    if depth > MAX_DEPTH:
        raise InvalidInput(f"{at}: filters nest deeper than {MAX_DEPTH} levels")
    if not isinstance(node, dict):
        raise InvalidInput(f"{at}: a filter is a JSON object, not {type(node).__name__}")
    parts: list[Filter] = []
    for key, value in node.items():
        here = _step(at, key)
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise InvalidInput(f"{here}: takes a non-empty list of filters")
            inner = tuple(
                _parse(v, f"{here}[{i}]", depth + 1, counted) for i, v in enumerate(value)
            )
            parts.append(AllOf(inner) if key == "$and" else AnyOf(inner))
        elif isinstance(key, str) and key.startswith("$"):
            raise InvalidInput(
                f"{here}: unknown operator at this level (only $and and $or combine filters; "
                f"{', '.join(OPERATORS)} go under a metadata key)"
            )
        else:
            if not isinstance(key, str) or not _KEY.fullmatch(key):
                raise InvalidInput(f"{here}: not a metadata key")
            if isinstance(value, dict):
                if not value:
                    raise InvalidInput(f"{here}: an empty operator object")
                for op, operand in value.items():
                    parts.append(_condition(key, op, operand, _step(here, op)))
            else:
                parts.append(_condition(key, "$eq", value, here))
        counted[0] += 1
        if counted[0] > MAX_CLAUSES:
            raise InvalidInput(f"{at}: more than {MAX_CLAUSES} conditions")
    return parts[0] if len(parts) == 1 else AllOf(tuple(parts))


def _scalar(value: object) -> bool:
    return value is None or isinstance(value, (str, bool, int, float))


def _condition(key: str, op: str, value: object, at: str) -> Condition:
    if op not in OPERATORS:
        raise InvalidInput(f"{at}: unknown operator; known: {', '.join(OPERATORS)}")
    if op in ("$eq", "$ne"):
        try:  # the values a metadata field may hold, checked by the metadata rules
            validate_metadata({key: value})
        except InvalidInput:
            raise InvalidInput(
                f"{at}: compares with a string, a number, a boolean, null or a flat list"
            ) from None
    elif op in COMPARISONS:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not (number or isinstance(value, str)) or (number and value != value):
            raise InvalidInput(f"{at}: compares with a number or a string, not {value!r:.40}")
    elif op in ("$in", "$nin"):
        if not isinstance(value, list) or not value or not all(_scalar(v) for v in value):
            raise InvalidInput(
                f"{at}: takes a non-empty list of strings, numbers, booleans or null"
            )
        validate_metadata({key: value})
    elif not isinstance(value, bool):  # $exists
        raise InvalidInput(f"{at}: takes true or false")
    return Condition(key, op, value)


# -- the meaning, on one fragment's metadata ------------------------------------------------------


def matches(node: Filter, metadata: dict[str, Any]) -> bool:
    """Whether a fragment's metadata satisfies the filter."""
    if isinstance(node, AllOf):
        return all(matches(part, metadata) for part in node.parts)
    if isinstance(node, AnyOf):
        return any(matches(part, metadata) for part in node.parts)
    present = node.key in metadata
    field = metadata.get(node.key)
    if node.op == "$exists":
        return present is node.value
    if node.op in ("$eq", "$ne"):
        equal = present and same(field, node.value)
        return equal if node.op == "$eq" else not equal
    if node.op in ("$in", "$nin"):
        inside = present and any(same(field, v) for v in node.value)
        return inside if node.op == "$in" else not inside
    if not present or kind(field) != kind(node.value) or kind(field) not in ("number", "string"):
        return False
    return {
        "$gt": field > node.value,
        "$gte": field >= node.value,
        "$lt": field < node.value,
        "$lte": field <= node.value,
    }[node.op]


def kind(value: Any) -> str:
    """A metadata value's kind, as a filter compares kinds."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "list"


def same(field: Any, value: Any) -> bool:
    """Equality of a filter: the same kind, and the same value (1 equals 1.0)."""
    if kind(field) != kind(value):
        return False
    if isinstance(field, list):  # element for element and kind for kind: 1 is not 1.0 here
        return _spelled(field) == _spelled(value)
    return field == value


def _spelled(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

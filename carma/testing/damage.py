"""Damage to a store's copies, as a failing disk, an operator or a bug would do it, through
the documented layout of a home (`<home>/cache/`, `<home>/index/`, `<home>/events.sqlite`):
CARMA must keep answering through it and heal it.

A damage is a kind and a `pick`, a number that chooses its target (`targets[pick % n]`) and
the byte it hits, so that hypothesis shrinks and replays it exactly.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import carma

#: unlink-cache, truncate-cache, flip-cache: a fragment's cache file removed, cut short, or one
#: byte flipped; drop-index-file: the vector index's file removed; flip-event: one byte of the
#: stored event that holds a fragment's current body changed (a store whose log is its own
#: SQLite file; on a shared PostgreSQL log it is not done).
DAMAGE_KINDS = ("unlink-cache", "truncate-cache", "flip-cache", "drop-index-file", "flip-event")
BODY_KINDS = ("written", "revised")  # history kinds whose event holds the fragment's body


@dataclass(frozen=True)
class Damage:
    kind: str
    pick: int = 0

    def __post_init__(self) -> None:
        if self.kind not in DAMAGE_KINDS:
            raise ValueError(f"unknown damage {self.kind!r}; known: {', '.join(DAMAGE_KINDS)}")


@dataclass(frozen=True)
class Damaged:
    """A damage done: its kind and the fragment it hit (None: the index file)."""

    kind: str
    fragment_id: str | None


def apply_damage(
    memory: carma.Memory,
    plan: Iterable[Damage],
    targets: Sequence[str] | None = None,
    *,
    flip_event: Callable[[carma.Memory, str, int], bool] | None = None,
) -> list[Damaged]:
    """Do each damage of the plan to the store; returns those done (a damage with no target
    left, such as a cache file already gone, is not). `targets`: the fragment ids to choose
    from (default: every live fragment, oldest first). `flip_event`: how to damage a stored
    event (default: in the home's SQLite log)."""
    if targets is None:
        targets = [record.id for record in memory.export()]
    done = []
    for step in plan:
        result = damage(memory, step, targets, flip_event=flip_event)
        if result is not None:
            done.append(result)
    return done


def damage(
    memory: carma.Memory,
    step: Damage,
    targets: Sequence[str],
    *,
    flip_event: Callable[[carma.Memory, str, int], bool] | None = None,
) -> Damaged | None:
    home = Path(memory.home)
    if step.kind == "drop-index-file":
        index = home / "index" / "vectors.faiss"
        if not index.exists():
            return None
        index.unlink()
        return Damaged(step.kind, None)
    if not targets:
        return None
    key = targets[step.pick % len(targets)]
    if step.kind == "flip-event":
        flipped = (flip_event or flip_stored_body)(memory, key, step.pick)
        return Damaged(step.kind, key) if flipped else None
    path = cache_file(home, key)
    if path is None:
        return None
    data = path.read_bytes()
    if step.kind == "unlink-cache" or not data:
        path.unlink()
    elif step.kind == "truncate-cache":
        path.write_bytes(data[: step.pick % len(data)])
    else:
        flipped = bytearray(data)
        flipped[step.pick % len(flipped)] ^= 0x04
        path.write_bytes(bytes(flipped))
    return Damaged(step.kind, key)


def cache_file(home: Path, key: str) -> Path | None:
    """The cache file of a fragment: each file is self-describing JSON naming its id, `key` (one
    already damaged past reading is not found)."""
    for path in sorted((home / "cache").rglob("*.json")):
        try:
            if json.loads(path.read_bytes()).get("key") == key:
                return path
        except (ValueError, AttributeError, OSError):
            continue
    return None


def flip_stored_body(memory: carma.Memory, key: str, pick: int) -> bool:
    """Change one byte of the stored event that holds a fragment's current body, in the
    home's SQLite log (its position is in the fragment's history). False where the log is
    not the home's own SQLite file, or the fragment has no such event."""
    database = Path(memory.home) / "events.sqlite"
    if getattr(memory, "database", None) is not None or not database.exists():
        return False
    try:
        history = memory.history(key)
    except carma.CarmaError:
        return False
    bodies = [
        entry.position
        for entry in history
        if entry.kind in BODY_KINDS
        or (entry.kind == "reconstructed" and entry.detail.get("copy") == "log-body")
    ]
    if not bodies:
        return False
    with sqlite3.connect(database, timeout=30) as connection:
        row = connection.execute(
            "SELECT state FROM stored_events WHERE rowid = ?", [bodies[-1]]
        ).fetchone()
        if row is None:
            return False
        state = bytearray(row[0])
        # Adding (not xor-ing) never undoes an earlier change to the same byte.
        state[pick % len(state)] = (state[pick % len(state)] + 1) % 256
        connection.execute(
            "UPDATE stored_events SET state = ? WHERE rowid = ?",
            [bytes(state), bodies[-1]],
        )
    connection.close()
    return True

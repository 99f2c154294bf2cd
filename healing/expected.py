"""What every copy should hold, as the ledger says: the scrubber keeps it between scrubs and
brings it up to date with the rows the ledger has changed since (HealthLedger.scan_changes):
most of a store does not change between two dream cycles, and reading, grouping and sorting
every fragment's row again cost a scrub a third of what reading the files does."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from operator import itemgetter
from typing import Any

import numpy as np
from carma.projections.ledger import ScanChanges

GONE = ("deleted", "forgotten")  # statuses of fragments that must have no copies
# Fields of a scan row (HealthLedger.scan_changes): tuples, since a scrub reads one per
# fragment, and kept for every fragment between scrubs (about 0.6 kB each, with their folders).
HEX, KEY, FAISS_ID, STATUS, FINGERPRINT, DIGEST = range(6)
Row = tuple[Any, ...]
Folder = Mapping[str, Row]  # a cache folder's file names, each with its fragment's row
NO_FILES: Folder = {}


@dataclass(frozen=True)
class IndexExpected:
    """The ledger's rows sorted by FAISS id, with their ids, fingerprints and liveness as
    arrays: what a scrub compares the whole index with, vectorised."""

    rows: list[Row]
    ids: np.ndarray
    fingerprints: np.ndarray
    live: np.ndarray


@dataclass(frozen=True)
class Expected:
    """One state of the ledger, never changed once made (a scrub may still be reading the
    one before): `updated` makes the next, sharing every cache folder that did not change."""

    tick: int = 0  # the ledger's scan clock this state reflects
    generation: str = ""  # the clock's ("": none read yet)
    count: int = 0  # fragments
    live: Mapping[str, Folder] = field(default_factory=dict)  # by cache folder (shard)
    gone: Mapping[str, Folder] = field(default_factory=dict)  # deleted, forgotten

    def follows(self, changes: ScanChanges) -> bool:
        """Whether these changes are of this state's clock, since its tick."""
        return self.generation in ("", changes.generation) and changes.tick >= self.tick

    def updated(self, changes: ScanChanges) -> Expected:
        """This state with the rows changed since (see `follows`)."""
        tick, generation = changes.tick, changes.generation
        by_shard: dict[str, list[Row]] = {}
        for row in changes.rows:
            by_shard.setdefault(row[HEX][:2], []).append(row)
        if not by_shard:  # the same state (kept whole while the clock stands: its arrays too)
            if (tick, generation) == (self.tick, self.generation):
                return self
            return Expected(tick, generation, self.count, self.live, self.gone)
        count, live, gone = self.count, dict(self.live), dict(self.gone)
        for shard, rows in by_shard.items():
            # A folder that changed is copied, never edited: the state before is still whole.
            live_files, gone_files = (
                dict(live.get(shard, NO_FILES)),
                dict(gone.get(shard, NO_FILES)),
            )
            for row in rows:
                name = f"{row[HEX]}.json"
                # One string per status, not one per row.
                row = (*row[:STATUS], sys.intern(row[STATUS]), *row[STATUS + 1 :])
                known = live_files.pop(name, None) or gone_files.pop(name, None)
                count += known is None
                (gone_files if row[STATUS] in GONE else live_files)[name] = row
            live[shard], gone[shard] = live_files, gone_files
        return Expected(tick, generation, count, live, gone)

    @cached_property
    def index(self) -> IndexExpected:
        known = sorted(
            (
                row
                for folders in (self.live, self.gone)
                for files in folders.values()
                for row in files.values()
            ),
            key=itemgetter(FAISS_ID),
        )
        count = len(known)
        return IndexExpected(
            known,
            np.fromiter(map(itemgetter(FAISS_ID), known), dtype=np.int64, count=count),
            np.fromiter(map(itemgetter(FINGERPRINT), known), dtype=np.int64, count=count),
            np.fromiter((r[STATUS] not in GONE for r in known), dtype=bool, count=count),
        )

"""What every copy should hold, as the ledger says: the scrubber keeps it between scrubs and
brings it up to date with the rows the ledger has changed since (HealthLedger.scan_changes):
most of a store does not change between two dream cycles, and reading, grouping and sorting
every fragment's row again cost a scrub a third of what reading the files does. Rows are kept
as arrays, one set per cache folder (ScanRows: about 80 bytes a fragment)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from carma.projections.ledger import NO_SCAN_ROWS, ScanChanges, ScanRows

GONE = ("deleted", "forgotten")  # statuses of fragments that must have no copies
Folder = ScanRows  # a cache folder's fragments, live and gone, in no particular order
NO_FILES: Folder = NO_SCAN_ROWS


def shard_of(hexes: np.ndarray) -> np.ndarray:
    """Each uuid's cache folder (its hex's first two characters), of an "S32" array."""
    return np.ascontiguousarray(hexes).view("S2")[::16]


@dataclass(frozen=True)
class IndexExpected:
    """The ledger's rows sorted by FAISS id, as arrays: what a scrub compares the whole
    index with, vectorised."""

    hexes: np.ndarray  # "S32"
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
    folders: Mapping[str, Folder] = field(default_factory=dict)  # by cache folder (shard)

    def follows(self, changes: ScanChanges) -> bool:
        """Whether these changes are of this state's clock, since its tick."""
        return self.generation in ("", changes.generation) and changes.tick >= self.tick

    def updated(self, changes: ScanChanges) -> Expected:
        """This state with the rows changed since (see `follows`)."""
        tick, generation, rows = changes.tick, changes.generation, changes.rows
        if not len(rows):  # the same state (kept whole while the clock stands: its arrays too)
            if (tick, generation) == (self.tick, self.generation):
                return self
            return Expected(tick, generation, self.count, self.folders)
        count, folders = self.count, dict(self.folders)
        shards = shard_of(rows.hexes)
        order = np.argsort(shards, kind="stable")
        names, starts = np.unique(shards[order], return_index=True)
        for name, start, end in zip(names.tolist(), starts, [*starts[1:], len(order)]):
            shard, changed = name.decode(), rows.take(order[start:end])
            # A folder that changed is made anew, never edited: the state before is still
            # whole, and a folder's identity says whether its rows changed.
            before = folders.get(shard)
            if before is None:
                folders[shard] = changed
                count += len(changed)
                continue
            kept = ~np.isin(before.hexes, changed.hexes)
            count += len(changed) - (len(before) - int(kept.sum()))
            folders[shard] = ScanRows.joined([before.take(kept), changed])
        return Expected(tick, generation, count, folders)

    @cached_property
    def index(self) -> IndexExpected:
        # The columns the index is compared on only (a joined copy of every row's cache
        # digest besides, 32 MB at a million, added to a scrub's peak for nothing).
        folders = list(self.folders.values()) or [NO_SCAN_ROWS]

        def joined(name: str) -> np.ndarray:
            return np.concatenate([folder.column(name) for folder in folders])

        ids = joined("faiss_ids")
        order = np.argsort(ids, kind="stable")
        return IndexExpected(
            joined("hexes")[order],
            ids[order],
            joined("fingerprints")[order],
            ~joined("gone")[order],
        )

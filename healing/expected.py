"""What every copy should hold, as the ledger says: the scrubber keeps it between scrubs and
brings it up to date with the rows the ledger has changed since (HealthLedger.scan_changes):
most of a store does not change between two dream cycles, and reading and sorting every
fragment's row again cost a scrub more than a quarter of what reading the files does."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from operator import itemgetter
from typing import Any

import numpy as np

GONE = ("deleted", "forgotten")  # statuses of fragments that must have no copies
# Fields of a scan row (HealthLedger.scan_changes): tuples, since a scrub reads one per fragment.
UUID_, KEY, FAISS_ID, STATUS, FINGERPRINT, DIGEST = range(6)
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
    rows: Mapping[str, Row] = field(default_factory=dict)  # by the fragment's uuid in hex
    live: Mapping[str, Folder] = field(default_factory=dict)  # by cache folder (shard)
    gone: Mapping[str, Folder] = field(default_factory=dict)  # deleted, forgotten

    def updated(self, tick: int, changed: Iterable[Row]) -> Expected:
        by_shard: dict[str, list[tuple[str, Row]]] = {}
        for row in changed:
            hex_ = row[UUID_].replace("-", "")
            by_shard.setdefault(hex_[:2], []).append((hex_, row))
        if not by_shard:  # the same state (kept whole: its sorted index arrays too)
            return self if tick == self.tick else Expected(tick, self.rows, self.live,
                                                           self.gone)
        rows, live, gone = dict(self.rows), dict(self.live), dict(self.gone)
        for shard, changes in by_shard.items():
            # A folder that changed is copied, never edited: the state before is still whole.
            live_files, gone_files = dict(live.get(shard, NO_FILES)), dict(
                gone.get(shard, NO_FILES))
            for hex_, row in changes:
                rows[hex_] = row
                name = f"{hex_}.json"
                if row[STATUS] in GONE:
                    gone_files[name] = row
                    live_files.pop(name, None)
                else:
                    live_files[name] = row
                    gone_files.pop(name, None)
            live[shard], gone[shard] = live_files, gone_files
        return Expected(tick, rows, live, gone)

    @cached_property
    def index(self) -> IndexExpected:
        known = sorted(self.rows.values(), key=itemgetter(FAISS_ID))
        count = len(known)
        return IndexExpected(
            known,
            np.fromiter(map(itemgetter(FAISS_ID), known), dtype=np.int64, count=count),
            np.fromiter(map(itemgetter(FINGERPRINT), known), dtype=np.int64, count=count),
            np.fromiter((r[STATUS] not in GONE for r in known), dtype=bool, count=count))

"""Scrubber: compares every copy with what the log says, and names each difference once."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from domain import content_hash
from projections import FragmentCache, HealthLedger, VectorIndex
from projections.ledger import canonical_json

# An index file may lag the in-memory index by this many log positions before a scrub
# calls it stale (it is rewritten at every repair and on close).
STALE_AFTER = 10_000


@dataclass(frozen=True)
class Finding:
    uuid: str
    key: str
    copy: str  # "cache" | "index"
    fault: str  # "missing" | "unreadable" | "corrupt" | "stale" | "extra"


@dataclass
class ScrubReport:
    findings: list[Finding] = field(default_factory=list)
    index_file: str | None = None  # the fault of the persisted index file, if any
    strays_removed: int = 0  # cache files and index ids that belong to no fragment at all
    checked: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.findings:
            out[f"{f.copy}/{f.fault}"] = out.get(f"{f.copy}/{f.fault}", 0) + 1
        if self.index_file:
            out[f"index-file/{self.index_file}"] = 1
        if self.strays_removed:
            out["stray"] = self.strays_removed
        return out


class Scrubber:
    """Checks the cache files, the in-memory index and the index file against the ledger,
    which mirrors the log's current state (content hash, version and embedding digest)."""

    def __init__(self, cache: FragmentCache, index: VectorIndex, ledger: HealthLedger,
                 lock: Any, head: Callable[[], int]):
        self.cache = cache
        self.index = index
        self.ledger = ledger
        self._lock = lock  # guards the ledger connection and the in-memory index
        self._head = head

    def scrub(self) -> ScrubReport:
        with self._lock:
            rows = {r["uuid"].replace("-", ""): r for r in self.ledger.all_rows()}
        report = ScrubReport()
        self._scrub_cache(rows, report)
        self._scrub_index(rows, report)
        return report

    def _scrub_cache(self, rows: dict[str, dict[str, Any]], report: ScrubReport) -> None:
        # Shard by shard: one listing says which files exist (no failing opens for missing
        # ones, and what is left over is extra); each expected file costs what reading and
        # hashing it costs, since its digest is the one the ledger expects. Only a file that
        # differs is parsed to say how.
        expected: dict[str, dict[str, dict[str, Any]]] = {}
        for hex_, row in rows.items():
            expected.setdefault(hex_[:2], {})[f"{hex_}.json"] = row
        root = str(self.cache.root)
        shards = sorted({n for n in os.listdir(root) if len(n) == 2} | expected.keys())
        findings, strays, on_disk = self._scrub_shards(root, shards, expected)
        report.findings.extend(findings)
        report.strays_removed += strays
        report.checked["cache_files"] = on_disk

    def _scrub_shards(self, root: str, shards: list[str],
                      expected: dict[str, dict[str, dict[str, Any]]]
                      ) -> tuple[list[Finding], int, int]:
        findings: list[Finding] = []
        strays = on_disk = 0
        for shard in shards:
            folder = f"{root}/{shard}"
            try:
                names = set(os.listdir(folder))
            except (FileNotFoundError, NotADirectoryError):
                names = set()
            on_disk += len(names)
            for name, row in expected.get(shard, {}).items():
                present = name in names
                names.discard(name)
                if row["status"] == "deleted":
                    if present:  # a copy of a deleted fragment
                        findings.append(Finding(row["uuid"], row["id"], "cache", "extra"))
                    continue
                fault = self._file_fault(f"{folder}/{name}", row) if present else "missing"
                if fault:
                    findings.append(Finding(row["uuid"], row["id"], "cache", fault))
            for name in names:  # nothing in the log to attribute these to (a crash's temp file)
                try:
                    os.unlink(f"{folder}/{name}")
                except (FileNotFoundError, IsADirectoryError, PermissionError):
                    continue
                strays += 1
        return findings, strays, on_disk

    def _file_fault(self, path: str, row: dict[str, Any]) -> str | None:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return "missing"
        except OSError:
            return "unreadable"
        if hashlib.sha256(data).hexdigest() == row["cache_digest"]:
            return None
        cached, fault = self.cache.inspect(row["uuid"])
        if cached is not None:
            fault = cache_fault(cached, row) or "corrupt"
        return fault

    def _scrub_index(self, rows: dict[str, dict[str, Any]], report: ScrubReport) -> None:
        with self._lock:
            ids, fingerprints = self.index.fingerprints()
            report.index_file = self.index.check_file(self._head(), STALE_AFTER)
        # Vectorised: the ledger's fingerprints sorted by FAISS id, looked up for every entry.
        known = sorted(rows.values(), key=lambda r: r["faiss_id"])
        known_ids = np.fromiter((r["faiss_id"] for r in known), dtype=np.int64, count=len(known))
        expected = np.fromiter((r["embedding_fingerprint"] for r in known), dtype=np.int64,
                               count=len(known))
        live = np.fromiter((r["status"] != "deleted" for r in known), dtype=bool,
                           count=len(known))
        at = np.minimum(np.searchsorted(known_ids, ids), max(len(known) - 1, 0))
        found = (known_ids[at] == ids) if len(known) else np.zeros(len(ids), dtype=bool)
        for i in np.flatnonzero(found & ~live[at]):
            row = known[at[i]]
            report.findings.append(Finding(row["uuid"], row["id"], "index", "extra"))
        wrong = found & live[at] & (fingerprints != expected[at])
        for i in np.flatnonzero(wrong):
            row = known[at[i]]
            report.findings.append(Finding(row["uuid"], row["id"], "index", "corrupt"))
        absent = live & ~np.isin(known_ids, ids)
        for i in np.flatnonzero(absent):
            row = known[i]
            report.findings.append(Finding(row["uuid"], row["id"], "index", "missing"))
        strays = ids[~found].tolist()  # ids the log never had: nothing to attribute them to
        if strays:
            with self._lock:
                self.index.remove(strays)
            report.strays_removed += len(strays)
        report.checked["index_vectors"] = len(ids)


def cache_fault(cached: Any, row: dict[str, Any]) -> str | None:
    """How a readable cache file differs from the ledger's row: 'stale', 'corrupt' or None."""
    if cached.version < row["version"]:
        return "stale"
    if (
        cached.version != row["version"]
        or cached.content_hash != row["content_hash"]
        or content_hash(cached.text) != row["content_hash"]
        or cached.key != row["id"]
        or cached.namespace != row["namespace"]
        or canonical_json(cached.metadata) != row["metadata"]
    ):
        return "corrupt"
    return None


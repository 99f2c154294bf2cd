"""Scrubber: compares every copy with what the log says, and names each difference once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from domain import content_hash
from projections import FragmentCache, HealthLedger, VectorIndex
from projections.index import embedding_digest
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
        live = {h: r for h, r in rows.items() if r["status"] != "deleted"}
        for hex_, row in live.items():
            cached, fault = self.cache.inspect(hex_)
            if cached is not None:
                fault = cache_fault(cached, row)
            if fault:
                report.findings.append(Finding(row["uuid"], row["id"], "cache", fault))
        on_disk = 0
        for hex_, path in self.cache.files_on_disk():
            on_disk += 1
            if hex_ is not None and hex_ in live:
                continue
            row = rows.get(hex_) if hex_ else None
            if row is not None:  # a file for a deleted fragment
                report.findings.append(Finding(row["uuid"], row["id"], "cache", "extra"))
            else:  # a leftover temp file or a stranger: nothing in the log to attribute it to
                path.unlink(missing_ok=True)
                report.strays_removed += 1
        report.checked["cache_files"] = on_disk

    def _scrub_index(self, rows: dict[str, dict[str, Any]], report: ScrubReport) -> None:
        with self._lock:
            ids, vectors = self.index.vectors()
            report.index_file = self.index.check_file(self._head(), STALE_AFTER)
        by_fid = {r["faiss_id"]: r for r in rows.values()}
        present = set()
        strays: list[int] = []
        for fid, vector in zip(ids.tolist(), vectors):
            present.add(fid)
            row = by_fid.get(fid)
            if row is None:  # an id the log never had: nothing to attribute it to
                strays.append(fid)
                continue
            if row["status"] == "deleted":
                report.findings.append(Finding(row["uuid"], row["id"], "index", "extra"))
            elif embedding_digest(vector.astype("<f4").tobytes()) != row["embedding_hash"]:
                report.findings.append(Finding(row["uuid"], row["id"], "index", "corrupt"))
        for row in rows.values():
            if row["status"] != "deleted" and row["faiss_id"] not in present:
                report.findings.append(Finding(row["uuid"], row["id"], "index", "missing"))
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


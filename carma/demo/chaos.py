"""`carma chaos`: damage a real store on disk, keep querying it from several threads while a
dream cycle heals it, and report what the users of the store saw."""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from carma.domain import CarmaError

# Whole files of the home a chaos run can damage: a page of each flipped (64 bytes, as bit rot
# or a bad sector would), the key store's two copies at different places (independent faults:
# the same page of both would lose the keys it holds, as a forgetting does).
FILES = {
    "ledger": Path("ledger.sqlite"),
    "keys": Path("keys") / "fragments.sqlite",
    "mirror": Path("keys.mirror") / "fragments.sqlite",
}
PAGE_AT = {"ledger": 1 / 3, "keys": 1 / 3, "mirror": 2 / 3}
WRITTEN = "carma_chaos_write"  # the metadata key of the writes a chaos run makes


def flip_page(path: Path, at: float = 1 / 3, count: int = 64) -> None:
    """Flip `count` bytes of a file from `at` of its length on: a damaged page."""
    data = bytearray(path.read_bytes())
    _flip(path, data, int(len(data) * at), count)


def _flip(path: Path, data: bytearray, start: int, count: int) -> None:
    start = min(start, max(len(data) - count, 0))
    for i in range(start, min(start + count, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def flip_used_page(path: Path, at: float = 1 / 3, count: int = 64) -> None:
    """Flip `count` bytes at the head of the first page in use at or after `at` of a SQLite
    file: a damaged page that holds rows. (Bytes flipped in a free page, or in a page's unused
    space, damage nothing a check could find or a reader could miss: flip_page's may land
    there.) Without SQLite's dbstat table, the page at `at`, from its first byte."""
    data = bytearray(path.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    if page_size == 1:  # (how the header spells 65536)
        page_size = 65_536
    first = int(len(data) * at) // page_size + 1  # pages are numbered from 1
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = conn.execute(
            "SELECT min(pageno) FROM dbstat WHERE pageno >= ? AND pagetype IN ('leaf', 'internal')",
            [first],
        ).fetchone()
        page = row[0] if row and row[0] else first
    except sqlite3.DatabaseError:
        page = first
    finally:
        conn.close()
    start = (page - 1) * page_size + (100 if page == 1 else 0)  # page 1 begins with the header
    _flip(path, data, start, count)


def damage_store(
    home: Path,
    *,
    cache_delete: float,
    cache_corrupt: float,
    index: str,
    seed: int,
    files: tuple[str, ...] = (),
) -> dict[str, int]:
    """Delete and corrupt cache files and the index file of a closed store, at the given
    rates, reproducibly (damage to an open store could be saved over on close), and flip a
    page of each of `files` (names of FILES)."""
    rng = random.Random(seed)
    cache_files = sorted((home / "cache").glob("??/*.json"))
    rng.shuffle(cache_files)
    n_delete = round(len(cache_files) * cache_delete)
    n_corrupt = min(round(len(cache_files) * cache_corrupt), len(cache_files) - n_delete)
    for path in cache_files[:n_delete]:
        path.unlink()
    for i, path in enumerate(cache_files[n_delete : n_delete + n_corrupt]):
        data = bytearray(path.read_bytes())
        if i % 2:
            path.write_bytes(bytes(data[: rng.randrange(len(data))]))  # truncated
        else:
            for _ in range(3):  # flipped bytes
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            path.write_bytes(bytes(data))
    path = home / "index" / "vectors.faiss"
    if index == "drop":
        path.unlink(missing_ok=True)
    elif index == "truncate" and path.exists():
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    for name in files:
        flip_used_page(home / FILES[name], PAGE_AT[name])
    return {
        "cache_deleted": n_delete,
        "cache_corrupted": n_corrupt,
        "index_file": 0 if index == "keep" else 1,
        **{f"{name}_page": 1 for name in files},
    }


class QueryLoad:
    """Queries from several threads: search, then get of the best hit. Counts failures and
    answers that differ from the ones the undamaged store gave."""

    def __init__(self, mem: Any, queries: list[str], threads: int):
        self.mem = mem
        self.queries = queries
        self.threads = threads
        self.expected: dict[str, list[str]] = {}

    def run(
        self, count: int | None = None, until: threading.Event | None = None, learn: bool = False
    ) -> dict[str, Any]:
        latencies: list[float] = []
        failures: list[str] = []
        wrong = 0
        lock = threading.Lock()
        next_query = iter(range(10**9))

        def worker() -> None:
            nonlocal wrong
            while True:
                with lock:
                    i = next(next_query)
                if count is not None and i >= count:
                    return
                if count is None and until is not None and until.is_set() and i >= self.threads:
                    return
                query = self.queries[i % len(self.queries)]
                started = time.perf_counter()
                try:
                    # (not the run's own writes: they would change the answers compared)
                    hits = self.mem.search(query, k=5, where={WRITTEN: {"$exists": False}})
                    texts = [self.mem.get(hits[0].id).text] if hits else []
                    answer = [h.id for h in hits] + texts
                except CarmaError as exc:  # a query that fails is what chaos must never see
                    with lock:
                        failures.append(str(exc))
                    continue
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    latencies.append(elapsed)
                    if learn:
                        self.expected[query] = answer
                    elif self.expected.get(query, answer) != answer:
                        wrong += 1

        workers = [threading.Thread(target=worker) for _ in range(self.threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        ms = np.array(latencies) if latencies else np.zeros(1)
        return {
            "queries": len(latencies) + len(failures),
            "failed": len(failures),
            "wrong_answers": wrong,
            "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "first_failure": failures[0] if failures else None,
        }


def destroy_bodies(mem: Any, keys: list[str]) -> None:
    """Bit rot where it hurts most: flip a byte of the stored event holding each fragment's
    current body (in the log's database, under the store: its SQLite file or its PostgreSQL
    table) and delete its cache file, so that no exact copy of the text is left; the embedding
    survives in the vector index."""
    from uuid import UUID

    tables = mem.log.tables
    for key in keys:
        row = mem.ledger.row(key)
        uuid, version = UUID(row["uuid"]), row["version"]
        found = tables.stored_at(uuid, version)
        if not found:
            continue
        ((_, state),) = found
        damaged = bytearray(state)
        damaged[len(damaged) // 2] ^= 0x20
        tables.overwrite(uuid, version, bytes(damaged))
        mem.cache.path_of(row["uuid"]).unlink(missing_ok=True)


def run_chaos(
    open_store: Callable[[], Any],
    *,
    cache_delete: float = 0.3,
    cache_corrupt: float = 0.05,
    index: str = "drop",
    seed: int = 0,
    threads: int = 4,
    queries: int = 200,
    say: Callable[[str], None] = lambda s: None,
    files: tuple[str, ...] = (),
    writes: int = 20,
) -> dict[str, Any]:
    """Damage the store at `open_store()`'s home, restart it, and query it while it heals."""
    mem = open_store()
    try:
        live = [r for r in mem.export()]
        if not live:
            raise CarmaError("the store is empty: add fragments before running chaos")
        rng = random.Random(seed)
        sample = rng.sample(live, min(len(live), 100))
        # Queries: stored texts with every third word dropped (near, not identical).
        texts = [
            " ".join(w for i, w in enumerate(r.text.split()) if i % 3 != 2) or r.text
            for r in sample
        ]
        load = QueryLoad(mem, texts, threads)
        say(f"before: {queries} queries from {threads} threads on {len(live)} fragments")
        before = load.run(count=queries, learn=True)
        health_start = mem.health()["score"]
        expected = load.expected
        home = mem.home
    finally:
        mem.close()
    say(
        f"damage: {cache_delete:.0%} of cache files deleted, {cache_corrupt:.0%} corrupted, "
        f"index file: {index}" + "".join(f", a page of {FILES[name]}" for name in files)
    )
    damaged = damage_store(
        home,
        cache_delete=cache_delete,
        cache_corrupt=cache_corrupt,
        index=index,
        seed=seed,
        files=files,
    )
    # Restart on the damaged home, as a crashed agent would: the index file cannot be trusted.
    started = time.perf_counter()
    mem = open_store()
    try:
        reopen_s = time.perf_counter() - started
        load = QueryLoad(mem, texts, threads)
        load.expected = expected
        say(f"restarted in {reopen_s:.2f} s; writing to the damaged store")
        # Writes before the repair: the log's commit is the acknowledgement, whatever state
        # the projections are in.
        written: dict[str, str] = {}
        write_failures = 0
        for i in range(writes):
            text = f"chaos write {seed}-{i}: written while the store was damaged"
            try:
                written[mem.add(text, {WRITTEN: i})] = text
            except CarmaError:
                write_failures += 1
        say("querying while a dream cycle heals")
        cycle: dict[str, Any] = {}
        failed: list[BaseException] = []
        dreaming = threading.Event()

        def dream() -> None:
            try:
                cycle.update(mem.dream())
            except BaseException as exc:  # reported below, in the caller's thread
                failed.append(exc)
            finally:
                dreaming.set()

        healer = threading.Thread(target=dream)
        healer.start()
        during = load.run(until=dreaming)
        healer.join()
        if failed:
            raise failed[0]
        after = load.run(count=queries)
        health = mem.health()
        found_after = sum(1 for key, text in written.items() if mem.get(key).text == text)
        say(f"healed in {cycle['seconds']['total']:.2f} s: {cycle['repaired']}")
        return {
            "fragments": len(live),
            "seed": seed,
            "threads": threads,
            "damage": damaged,
            "phases": {"before": before, "during": during, "after": after},
            "queries_run": before["queries"] + during["queries"] + after["queries"],
            "queries_failed": before["failed"] + during["failed"] + after["failed"],
            "wrong_answers": during["wrong_answers"] + after["wrong_answers"],
            "writes": {"tried": writes, "failed": write_failures, "found_after": found_after},
            "reopen_seconds": round(reopen_s, 3),
            "found": cycle["found"],
            "repaired": cycle["repaired"],
            "heal_seconds": cycle["seconds"]["total"],
            # where the cycle's time went: the scan, the repairs, and any calibration and
            # refinement of approximate bodies the store holds (real-model work)
            "cycle_phases_s": cycle["seconds"],
            "health": {
                "before_damage": health_start,
                "as_found": cycle["health_before"],
                "after": health["score"],
            },
        }
    finally:
        mem.close()


def chaos_text(r: dict[str, Any]) -> str:
    """A chaos report as a table."""
    w = r["writes"]
    lines = [
        f"chaos on {r['fragments']} fragments (seed {r['seed']}, {r['threads']} threads)",
        f"writes while damaged: {w['tried']}, failed {w['failed']}, "
        f"found after the repair {w['found_after']}",
        f"damage: {r['damage']}",
        f"{'phase':<8} {'queries':>8} {'failed':>7} {'wrong':>6} {'p50 ms':>8} {'p95 ms':>8}",
    ]
    for name, p in r["phases"].items():
        lines.append(
            f"{name:<8} {p['queries']:>8} {p['failed']:>7} {p['wrong_answers']:>6} "
            f"{p['p50_ms']:>8.1f} {p['p95_ms']:>8.1f}"
        )
    h = r["health"]
    lines += [
        _counts("found", r["found"]),
        _counts("repaired", r["repaired"]),
        f"restart {r['reopen_seconds']:.2f} s, dream cycle {r['heal_seconds']:.2f} s "
        f"(repairs {r['cycle_phases_s']['heal']:.2f} s); health "
        f"{h['before_damage']:.1%} -> {h['as_found']:.1%} (as found) -> {h['after']:.1%}",
    ]
    return "\n".join(lines)


def _counts(label: str, counts: dict[str, int]) -> str:
    return f"{label}: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "nothing")

"""Scrubs of a million-fragment home, timed: the figures behind "A scrub at a million" in
docs/benchmarks.md (a profile, not a `carma bench`: building the home takes ~20 min).

    python bench-results/scrub-1m.py build HOME      # 1M fragments, as carma bench scale adds them
    python bench-results/scrub-1m.py scrub HOME      # JSON on stdout: each scrub's seconds, RSS
    python bench-results/scrub-1m.py deep HOME       # the same, two deep scrubs of a new process
    python bench-results/scrub-1m.py rebuild HOME    # JSON on stdout: RSS every 25,000 events
    python bench-results/scrub-1m.py query HOME      # JSON on stdout: queries, on one core and two
    python bench-results/scrub-1m.py check-apart HOME  # deep scrubs, the ledger's check on a
                                                     # thread or in a process, in turns
    python bench-results/scrub-1m.py read-ahead HOME # as root: deep scrubs from a dropped page
                                                     # cache, its read-ahead on and off in turns
"""

import json
import os
import sys
import time
from pathlib import Path

from carma.healing import scrubber
from carma.projections import index as index_module
from carma.projections.ledger import HealthLedger

import carma
from carma.bench.common import environment, ms_percentile
from carma.bench.scale import APPROXIMATE_ABOVE, _text, _timed
from carma.demo.corpus import corpus
from carma.embedding import HashingEmbedder

SIZE = 1_000_000


def memory() -> dict[str, int]:
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return {k: int(status[k].split()[0]) // 1024 for k in ("VmRSS", "VmHWM")}


def build(home: Path) -> None:
    embedder, base = HashingEmbedder(), corpus(2_000)
    with carma.open(
        home, dimension=embedder.dimension, database_url="", approximate_above=APPROXIMATE_ABOVE
    ) as mem:
        for start in range(0, SIZE, 1_000):
            texts = [_text(base, i) for i in range(start, start + 1_000)]
            vectors = embedder.embed(texts)
            mem.add_many([{"text": t, "embedding": v} for t, v in zip(texts, vectors)])


ROUTINE = [
    ("first of the process", False),
    ("routine", False),
    ("routine", False),
    ("deep", True),
    ("deep", True),
]
DEEP = [("deep, first of the process", True), ("deep", True)]  # as `carma bench scale` scrubs


def scrub(home: Path, scrubs: list[tuple[str, bool]] = ROUTINE) -> dict:
    runs = []
    with carma.open(
        home, dimension=384, database_url="", approximate_above=APPROXIMATE_ABOVE
    ) as mem:
        for label, deep in scrubs:
            started = time.perf_counter()
            report = mem.scrub(deep=deep)
            runs.append(
                {
                    "scrub": label,
                    "seconds": round(time.perf_counter() - started, 2),
                    "ledger_checked_whole": report["checked"].get("files_whole"),
                    "log_events_checked": report["checked"]["log_events"],
                    "found": report["found"],
                    "rss_mib": memory(),
                }
            )
    return {"fragments": SIZE, "scrubs": runs, "environment": environment()}


def rebuild(home: Path) -> dict:
    """A rebuild from the log, RSS read every 25,000 events: where the peak is reached."""
    samples, started = [], time.perf_counter()
    with carma.open(
        home, dimension=384, database_url="", approximate_above=APPROXIMATE_ABOVE
    ) as mem:
        samples.append({"stage": "opened", **memory()})
        done = 0

        def progress(count: int) -> None:
            nonlocal done
            done += count
            if done % 25_000 < count:
                samples.append({"events": done, "vectors": mem.index.count, **memory()})

        mem.rebuild(progress)
        samples.append({"stage": "rebuilt", **memory()})
    seconds = round(time.perf_counter() - started, 1)
    return {"fragments": SIZE, "seconds": seconds, "rss_mib": samples, "environment": environment()}


def query(home: Path, rounds: int = 2) -> dict:
    """350 held-out query vectors through search_by_vector (k=10) and the index's own search,
    with a query's parts searched on one core and on two, in turns: p50 / p95 in ms."""
    embedder, base = HashingEmbedder(), corpus(2_000)
    queries = embedder.embed([_text(base, i) + " held out" for i in range(400)])
    runs = []
    with carma.open(
        home, dimension=384, database_url="", approximate_above=APPROXIMATE_ABOVE
    ) as mem:
        for vector in queries[:50]:  # the hits' rows and files read once
            mem.search_by_vector(vector, k=10)

        def timed(search) -> list[float]:
            seconds, _ = _timed(search, queries[50:])
            return [round(ms_percentile(seconds, p), 3) for p in (50, 95)]

        default = index_module.SEARCH_BESIDE
        for _ in range(rounds):
            for beside in (False, True):
                index_module.SEARCH_BESIDE = beside
                runs.append(
                    {
                        "cores": 2 if beside else 1,
                        "store_ms": timed(lambda v: mem.search_by_vector(v, k=10)),
                        "index_ms": timed(lambda v: mem.index.search(v, 10)),
                    }
                )
        index_module.SEARCH_BESIDE = default
        vectors, parts = mem.index.count, mem.index.parts
    return {"vectors": vectors, "parts": parts, "queries": runs, "environment": environment()}


def check_apart(home: Path) -> dict:
    """Deep scrubs of one process, the ledger's check in a process of its own (as shipped) or
    on a thread of the store's process as before (HealthLedger.check_pages), in turns after a
    first: each scrub's seconds and its check's."""
    shipped, arm, check_s = HealthLedger.check_pages_apart, {"where": "process"}, []

    def timed_check(ledger: HealthLedger, whole: bool = True) -> str | None:
        started = time.perf_counter()
        try:
            if arm["where"] == "thread":
                return ledger.check_pages(whole)
            return shipped(ledger, whole)
        finally:
            check_s.append(round(time.perf_counter() - started, 2))

    HealthLedger.check_pages_apart = timed_check
    runs = []
    try:
        with carma.open(
            home, dimension=384, database_url="", approximate_above=APPROXIMATE_ABOVE
        ) as mem:
            for where in ("process", "thread", "process", "process", "thread", "thread", "process"):
                arm["where"], check_s[:] = where, []
                started = time.perf_counter()
                report = mem.scrub(deep=True)
                runs.append(
                    {
                        "check_in": where,
                        "seconds": round(time.perf_counter() - started, 2),
                        "check_s": list(check_s),
                        "found": report["found"],
                    }
                )
    finally:
        HealthLedger.check_pages_apart = shipped
    return {"fragments": SIZE, "deep_scrubs": runs, "environment": environment()}


def read_ahead(home: Path) -> dict:
    """Deep scrubs with none of the home in the page cache (dropped before each: root only),
    the cache's read-ahead on (as shipped) and off, in turns after a first, warm one."""
    drop = Path("/proc/sys/vm/drop_caches")
    if not os.access(drop, os.W_OK):
        sys.exit(f"read-ahead drops the page cache: run it as root ({drop} is not writable)")
    shipped, runs = scrubber.COLD_FILE_S, []
    try:
        with carma.open(
            home, dimension=384, database_url="", approximate_above=APPROXIMATE_ABOVE
        ) as mem:
            mem.scrub(deep=True)  # the scrub's arrays kept, as every later one finds them
            for on in (True, False, True, False):
                scrubber.COLD_FILE_S = shipped if on else float("inf")
                os.sync()
                drop.write_text("3\n")
                started = time.perf_counter()
                report = mem.scrub(deep=True)
                runs.append(
                    {
                        "read_ahead": on,
                        "seconds": round(time.perf_counter() - started, 2),
                        "found": report["found"],
                    }
                )
    finally:
        scrubber.COLD_FILE_S = shipped
    return {"fragments": SIZE, "cold_deep_scrubs": runs, "environment": environment()}


if __name__ == "__main__":
    command, home = sys.argv[1], Path(sys.argv[2])
    if command == "build":
        build(home)
    elif command == "rebuild":
        print(json.dumps(rebuild(home), indent=2))
    elif command == "query":
        print(json.dumps(query(home), indent=2))
    elif command == "read-ahead":
        print(json.dumps(read_ahead(home), indent=2))
    elif command == "check-apart":
        print(json.dumps(check_apart(home), indent=2))
    elif command == "deep":
        print(json.dumps(scrub(home, DEEP), indent=2))
    else:
        print(json.dumps(scrub(home), indent=2))

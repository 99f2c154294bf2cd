"""`carma bench audit`: verify and replay throughput against reading the same rows raw.

A store of n fragments (HashingEmbedder: the model plays no part) is built; then, with the raw
read (every row of stored_events and event_chain, in log order, through plain sqlite3) timed
before and after each:
- verify: Memory.verify() replays the HMAC chain and every event's checksum;
- replay: Memory.replay(into=...) copies the log and builds the new store's projections.
Ratios are raw time / CARMA time (1.0 would be as fast as the raw read).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import carma
from carma.bench.common import Progress, environment, peak_rss_mib, rss, say
from carma.demo.corpus import corpus
from carma.embedding import HashingEmbedder

AUDIT_N = 20_000


def _raw_read(db: Path) -> tuple[float, int]:
    started = time.perf_counter()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = 0
        for _ in conn.execute(
            "SELECT e.rowid, e.originator_id, e.originator_version, e.topic, e.state, c.mac"
            " FROM stored_events e LEFT JOIN event_chain c ON c.position = e.rowid"
            " ORDER BY e.rowid"
        ):
            rows += 1
    finally:
        conn.close()
    return time.perf_counter() - started, rows


def bench_audit(*, n: int | None = None, workdir: Path, progress: Progress = None) -> dict:
    n = n or AUDIT_N
    before = peak_rss_mib()
    home = workdir / "store"
    with carma.open(home, embedder=HashingEmbedder(), database_url="") as mem:
        texts = corpus(n)
        for start in range(0, n, 2_000):
            mem.add_many(texts[start : start + 2_000])
            say(progress, f"audit: built {min(start + 2_000, n)}/{n}")
        db = home / "events.sqlite"
        raw_1, events = _raw_read(db)
        started = time.perf_counter()
        verified = mem.verify()
        verify_s = time.perf_counter() - started
        raw_2, _ = _raw_read(db)
        started = time.perf_counter()
        with mem.replay(into=workdir / "replica") as replica:
            replay_s = time.perf_counter() - started
            replica_live = replica.stats()["live"]
        raw_3, _ = _raw_read(db)
    raw_verify = (raw_1 + raw_2) / 2
    raw_replay = (raw_2 + raw_3) / 2
    say(progress, f"audit: verify {verify_s:.2f} s, replay {replay_s:.2f} s")
    return {
        "benchmark": "audit",
        "n": n,
        "events": events,
        "method": __doc__,
        "verify": {
            "ok": verified["ok"],
            "seconds": round(verify_s, 4),
            "events_per_s": round(events / verify_s, 1),
            "raw_read_events_per_s": round(events / raw_verify, 1),
            "ratio": round(raw_verify / verify_s, 4),
        },
        "replay": {
            "live": replica_live,
            "seconds": round(replay_s, 4),
            "events_per_s": round(events / replay_s, 1),
            "raw_read_events_per_s": round(events / raw_replay, 1),
            "ratio": round(raw_replay / replay_s, 4),
        },
        "target": {"description": "none set: reported as ratios", "met": None},
        "rss": rss(before),
        "environment": environment(),
    }

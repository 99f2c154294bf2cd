"""`carma bench overhead` (HashingEmbedder, n=100000): add_many in batches of 1000 against raw
batched SQLite inserts of the same rows; Memory.rebuild() against a raw read and JSON decode of
the log; peak RSS."""

from __future__ import annotations

import gc
import json
import sqlite3
import time
from pathlib import Path

import numpy as np

import carma
from carma.bench.common import (
    EVENT_HEADER,
    Progress,
    environment,
    in_batches,
    peak_rss_mib,
    ratio,
    rounded,
    rss,
    say,
    tree_bytes,
)
from carma.demo.corpus import corpus
from carma.embedding import HashingEmbedder

OVERHEAD_N = 100_000
OVERHEAD_BATCH = 1_000
OVERHEAD_EMBED_CHUNK = 64  # what Memory._embed hands the embedder at a time
REBUILD_READ_CHUNK = 500
# No target was set for the store's own overhead; these bounds are provisional.


# -- overhead --------------------------------------------------------------------------------------


def _raw_read(events_db: Path) -> tuple[float, int]:
    """The floor under a rebuild: every stored event read in log order, 500 at a time, and its
    payload decoded from JSON after CARMA's 18-byte checksum header."""
    conn = sqlite3.connect(f"file:{events_db}?mode=ro", uri=True, isolation_level=None)
    try:
        start = time.perf_counter()
        after, count = 0, 0
        while True:
            rows = conn.execute(
                "SELECT rowid, * FROM stored_events WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (after, REBUILD_READ_CHUNK),
            ).fetchall()
            if not rows:
                break
            for row in rows:
                json.loads(row[4][EVENT_HEADER:])
            count += len(rows)
            after = rows[-1][0]
        return time.perf_counter() - start, count
    finally:
        conn.close()


def bench_overhead(*, n: int | None = None, workdir: Path, progress: Progress = None) -> dict:
    """The store's own cost, without the model (HashingEmbedder).

    (a) Ingest: Memory.add_many in batches of 1000 vs raw SQLite inserts of the very rows CARMA
        stored (same count, same payload bytes) into a plain WAL table, one transaction per
        batch. After each CARMA batch its new rows are read back (untimed) and inserted raw
        (timed), and the HashingEmbedder is timed alone on the batch's texts, so all three share
        the noise of the moment.
    (b) Rebuild: Memory.rebuild() vs a raw read + JSON decode of the same log, the raw read run
        before and after the rebuild and averaged.
    (c) Peak RSS before and after.
    """
    n = OVERHEAD_N if n is None else n
    if n < 1:
        raise ValueError("n must be at least 1")
    workdir = Path(workdir)
    rss_before = peak_rss_mib()
    say(progress, f"overhead: preparing {n} texts")
    texts = corpus(n)
    batches = in_batches(texts, OVERHEAD_BATCH)
    embedder = HashingEmbedder()
    probe = HashingEmbedder()  # a second instance, timed alone on the same texts
    home = workdir / "carma"
    events_db = home / "events.sqlite"
    raw_db = workdir / "raw.sqlite"

    mem = carma.open(home, embedder=embedder, database_url="")
    # The baseline's table, and a reader of CARMA's log to copy its rows from.
    raw = sqlite3.connect(raw_db, isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("CREATE TABLE raw (id TEXT PRIMARY KEY, state BLOB)")
    carma_times: list[float] = []
    raw_times: list[float] = []
    embed_times: list[float] = []
    events = 0
    payload_bytes = 0
    added = 0
    last_rowid = 0
    step = max(1, len(batches) // 20)
    reader: sqlite3.Connection | None = None
    try:
        for b, batch in enumerate(batches):
            t0 = time.perf_counter()
            result = mem.add_many(batch)
            carma_times.append(time.perf_counter() - t0)
            added += result.added
            if reader is None:  # the log's file exists once the first batch is in
                reader = sqlite3.connect(
                    f"file:{events_db}?mode=ro", uri=True, isolation_level=None
                )

            rows = reader.execute(
                "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events"
                " WHERE rowid > ? ORDER BY rowid",
                (last_rowid,),
            ).fetchall()
            if rows:
                last_rowid = rows[-1][0]
            params = [(f"{r[1]}:{r[2]}", r[4]) for r in rows]
            events += len(params)
            payload_bytes += sum(len(r[4]) for r in rows)
            t0 = time.perf_counter()
            raw.execute("BEGIN")
            raw.executemany("INSERT INTO raw (id, state) VALUES (?, ?)", params)
            raw.execute("COMMIT")
            raw_times.append(time.perf_counter() - t0)

            t0 = time.perf_counter()
            for chunk in in_batches(batch, OVERHEAD_EMBED_CHUNK):
                probe.embed(chunk)
            embed_times.append(time.perf_counter() - t0)

            if (b + 1) % step == 0 or b + 1 == len(batches):
                done = min((b + 1) * OVERHEAD_BATCH, n)
                say(
                    progress,
                    f"overhead: ingested {done}/{n} (carma {sum(carma_times):.1f} s, "
                    f"last batch {carma_times[-1]:.2f} s; raw {sum(raw_times):.2f} s)",
                )
        # (A write that took the index past its threshold left the graph to a thread: the
        # store answered meanwhile; the wait for it is given beside the ingest's rate.)
        t0 = time.perf_counter()
        mem.wait_for_graph()
        ingest_graph_s = time.perf_counter() - t0
        for conn in (reader, raw):
            if conn is not None:
                conn.close()
        gc.collect()
        say(progress, "overhead: raw read of the log (1/2)")
        raw_read_1, raw_count = _raw_read(events_db)
        say(progress, f"overhead: Memory.rebuild() of {raw_count} events")
        t0 = time.perf_counter()
        rebuilt = mem.rebuild()
        rebuild_s = time.perf_counter() - t0
        mem.wait_for_graph()  # (built behind the rebuild: the store answered from rebuild_s)
        graph_s = time.perf_counter() - t0
        say(
            progress,
            f"overhead: rebuild took {rebuild_s:.1f} s (the graph whole at {graph_s:.1f} s); "
            "raw read (2/2)",
        )
        raw_read_2, _ = _raw_read(events_db)
        stats = mem.stats()
    finally:
        for conn in (reader, raw):
            if conn is not None:
                conn.close()  # closing twice is harmless
        mem.close()

    carma_s, raw_s, embed_s = sum(carma_times), sum(raw_times), sum(embed_times)
    carma_rate = events / carma_s
    carma_rate_ex = events / (carma_s - embed_s) if carma_s > embed_s else None
    raw_rate = events / raw_s
    raw_read_s = (raw_read_1 + raw_read_2) / 2
    ingest_ratio = carma_rate / raw_rate
    ingest_ratio_ex = ratio(carma_rate_ex, raw_rate) if carma_rate_ex else None
    rebuild_ratio = rebuild_s / raw_read_s
    tenth = max(1, len(carma_times) // 10)
    return {
        "benchmark": "overhead",
        "n": n,
        "batch_size": OVERHEAD_BATCH,
        "embedder": embedder.name,
        "method": (
            "Ingest: per batch of 1000 texts, Memory.add_many (timed), then the log rows it "
            "wrote are read back (untimed) and inserted into a plain WAL table (id TEXT PRIMARY "
            "KEY, state BLOB) in one transaction (timed), then the HashingEmbedder alone embeds "
            "the batch in chunks of 64 (timed); after the last batch, the wait until the index's "
            "graph is whole (built behind the write that crossed its threshold) is given "
            "beside. Rebuild: Memory.rebuild() vs SELECT rowid, * "
            "FROM stored_events in chunks of 500 with json.loads of each payload after its "
            "18-byte checksum header, run before and after the rebuild and averaged (the rebuild "
            "returns once the store answers; the index's graph, past the threshold, is built "
            "behind it, and the time until it is whole is given beside). Ratios of "
            "throughput are carma/raw (higher is better); the rebuild ratio is a time ratio "
            "carma/raw (lower is better)."
        ),
        "ingest": {
            "fragments_added": added,
            "events": events,
            "payload_bytes": payload_bytes,
            "carma_s": rounded(carma_s),
            "carma_events_per_s": rounded(carma_rate, 1),
            "carma_events_per_s_excluding_embedder": rounded(carma_rate_ex, 1),
            "embedder_alone_s": rounded(embed_s),
            "raw_sqlite_s": rounded(raw_s),
            "raw_sqlite_events_per_s": rounded(raw_rate, 1),
            "graph_whole_after_s": rounded(ingest_graph_s),
            "carma_events_per_s_graph_whole": rounded(events / (carma_s + ingest_graph_s), 1),
            "carma_batch_s_first_tenth_mean": rounded(float(np.mean(carma_times[:tenth]))),
            "carma_batch_s_last_tenth_mean": rounded(float(np.mean(carma_times[-tenth:]))),
        },
        "rebuild": {
            "events_replayed": rebuilt,
            "carma_s": rounded(rebuild_s),
            "carma_events_per_s": rounded(rebuilt / rebuild_s, 1),
            "graph_whole_s": rounded(graph_s),
            "raw_read_s": [rounded(raw_read_1), rounded(raw_read_2)],
            "raw_read_s_mean": rounded(raw_read_s),
            "raw_events_read": raw_count,
            "live_after": stats["live"],
            "index_vectors_after": stats["index_vectors"],
        },
        "bytes_on_disk": {
            "carma_home": stats["bytes_on_disk"],
            "events_sqlite": sum(p.stat().st_size for p in home.glob("events.sqlite*")),
            "cache_files": tree_bytes(home / "cache"),
            "raw_sqlite": sum(p.stat().st_size for p in workdir.glob("raw.sqlite*")),
        },
        "ratios": {
            "ingest_ratio": rounded(ingest_ratio),
            "ingest_ratio_excluding_embedder": rounded(ingest_ratio_ex),
            "ingest_ratio_graph_whole": rounded(events / (carma_s + ingest_graph_s) / raw_rate),
            "rebuild_time_ratio": rounded(rebuild_ratio),
            "rebuild_graph_whole_time_ratio": rounded(graph_s / raw_read_s),
            "ingest_slowdown_last_over_first_tenth": rounded(
                float(np.mean(carma_times[-tenth:]) / np.mean(carma_times[:tenth]))
            ),
        },
        "target": {
            "description": "none set: the store's own overhead is reported, not judged",
            "met": None,
        },
        "rss": rss(rss_before),
        "environment": environment(),
    }

"""`carma bench ingest --database-url URL`: the log on PostgreSQL against the log in SQLite.

Everything runs in a schema of its own (`carma_bench_<random>`) in the given database, which
is dropped at the end: the benchmark never touches a store's own tables.

1. Throughput, in the same run: the same texts written by Memory.add_many in batches of 64
   to a store on SQLite and to one on PostgreSQL, batch by batch in alternating order, so
   that both see the same noise. Once with the real model (what a user sees; the model's
   encode dominates both sides) and once with the hashing embedder at the model's 384
   dimensions (what the log itself costs). Figure: PostgreSQL texts/s over SQLite texts/s.
2. Lag of a follower under a steady load from two writers: two writer processes, each
   writing a batch of 10 fragments every 50 ms (hashing embedder, 384-d, so that two model
   copies do not fight the follower for the CPU) for the given seconds; a third process's
   store, on a home of its own, catches up with the log in a loop, as its reads would. Per
   acknowledged batch: milliseconds from the writer's acknowledgement to the follower's
   first catch-up that covers the log head read right after it (an upper bound: the head
   may be past the batch). Per catch-up: log positions between the head and what the
   follower had applied. p50 and p95 of each.
3. A new process joining a log of 100k events: a fresh home on the PostgreSQL log catches up
   from position 0 (events/s), against rebuilding the projections of the same 100k-event log
   in SQLite (Memory.rebuild) in the same run: the same work of replay, from another store.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

import carma
from carma import config
from carma.bench.common import Progress, environment, peak_rss_mib, rss, say
from carma.demo.corpus import corpus
from carma.embedding import HashingEmbedder, SentenceTransformerEmbedder

N = 2_000
BATCH = 64
DIMENSION = 384  # the model's: the log's events are as large as the real ones
LAG_SECONDS = 20.0
WRITER_BATCH = 10
WRITER_EVERY_S = 0.05
JOIN_EVENTS = 100_000
JOIN_BATCH = 500


def bench_shared(
    *,
    database_url: str,
    n: int | None = None,
    workdir: Path,
    progress: Progress = None,
    join_events: int = JOIN_EVENTS,
    lag_seconds: float = LAG_SECONDS,
) -> dict[str, Any]:
    n = n or N
    before = peak_rss_mib()
    base = config.postgres().PostgresURL.parse(database_url)
    schema = f"carma_bench_{secrets.token_hex(4)}"
    url = _with_schema(database_url, schema)
    try:
        texts = corpus(n)
        model = _throughput(
            texts, workdir / "model", url, SentenceTransformerEmbedder(), progress, "real model"
        )
        storage = _throughput(
            texts,
            workdir / "hashing",
            _with_schema(url, schema + "_h"),
            HashingEmbedder(dimension=DIMENSION),
            progress,
            "hashing",
        )
        lag = _lag(_with_schema(url, schema + "_l"), workdir / "lag", lag_seconds, progress)
        join = _join(_with_schema(url, schema + "_j"), workdir / "join", join_events, progress)
    finally:
        _drop(base, [schema, schema + "_h", schema + "_l", schema + "_j"])
    return {
        "benchmark": "ingest-shared",
        "method": __doc__,
        "database": base.redacted,
        "schemas": [schema, schema + "_h", schema + "_l", schema + "_j"],  # all dropped
        "n": n,
        "throughput": {"real_model": model, "hashing_384d": storage},
        "lag": lag,
        "join": join,
        "ratios": {
            "postgres_over_sqlite_texts_per_s_real_model": model["postgres_over_sqlite"],
            "postgres_over_sqlite_texts_per_s_log_only": storage["postgres_over_sqlite"],
            "join_catch_up_over_sqlite_rebuild": join["postgres_over_sqlite"],
        },
        "rss": rss(before),
        "environment": environment(),
    }


def _with_schema(url: str, schema: str) -> str:
    return urlunsplit(urlsplit(url)._replace(query=f"schema={schema}"))


def _drop(base: Any, schemas: list[str]) -> None:
    from psycopg import sql

    with base.connect() as conn:
        for schema in schemas:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _throughput(
    texts: list[str], workdir: Path, url: str, embedder: Any, progress: Progress, label: str
) -> dict[str, Any]:
    embedder.embed(texts[:BATCH])  # loaded and warm before either side is timed
    lite = carma.open(workdir / "sqlite", embedder=embedder, database_url="")
    shared = carma.open(workdir / "postgres", embedder=embedder, database_url=url)
    times: dict[str, list[float]] = {"sqlite": [], "postgres": []}
    try:
        batches = [
            [{"text": t, "id": f"t{i + j}"} for j, t in enumerate(texts[i : i + BATCH])]
            for i in range(0, len(texts), BATCH)
        ]
        for b, batch in enumerate(batches):
            order = (("sqlite", lite), ("postgres", shared))
            for side, mem in order if b % 2 == 0 else order[::-1]:
                started = time.perf_counter()
                mem.add_many(batch)
                times[side].append(time.perf_counter() - started)
        say(
            progress,
            f"ingest-shared: {label}: sqlite {sum(times['sqlite']):.1f} s, "
            f"postgres {sum(times['postgres']):.1f} s for {len(texts)} texts",
        )
        assert shared.stats()["live"] == lite.stats()["live"] == len(texts)
    finally:
        lite.close()
        shared.close()
    rates = {side: len(texts) / sum(t) for side, t in times.items()}
    return {
        "embedder": embedder.name,
        "texts": len(texts),
        "batch": BATCH,
        "texts_per_s": {k: round(v, 1) for k, v in rates.items()},
        "postgres_over_sqlite": round(rates["postgres"] / rates["sqlite"], 3),
    }


def _lag(url: str, workdir: Path, seconds: float, progress: Progress) -> dict[str, Any]:
    follower = carma.open(
        workdir / "follower", embedder=HashingEmbedder(dimension=DIMENSION), database_url=url
    )
    samples: list[tuple[float, int]] = []  # (time after a catch-up, position it reached)
    behind: list[int] = []
    try:
        writers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "carma.bench.shared",
                    url,
                    str(workdir / f"writer{i}"),
                    str(i),
                    str(seconds),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(2)
        ]
        while any(w.poll() is None for w in writers):
            head = follower.log.position()
            applied = min(p.position for p in follower.runner.projections)
            behind.append(max(head - applied, 0))
            follower.catch_up()
            samples.append((time.time(), min(p.position for p in follower.runner.projections)))
        acks: list[tuple[float, int]] = []
        for w in writers:
            out, err = w.communicate()
            if w.returncode != 0:
                raise RuntimeError(f"a writer failed: {err.strip().splitlines()[-1:]}")
            acks += [(float(t), int(p)) for t, p in (line.split() for line in out.splitlines())]
        follower.catch_up()
        samples.append((time.time(), min(p.position for p in follower.runner.projections)))
        written = follower.stats()["live"]
    finally:
        follower.close()
    lags_ms = []
    times = np.array([t for t, _ in samples])
    reached = np.maximum.accumulate(np.array([p for _, p in samples]))
    for acked_at, head in acks:
        later = np.flatnonzero((times >= acked_at) & (reached >= head))
        if len(later):
            lags_ms.append((times[later[0]] - acked_at) * 1000.0)
    say(
        progress,
        f"ingest-shared: lag over {len(acks)} acknowledged batches: p50 {_pct(lags_ms, 50):.1f} ms",
    )
    return {
        "writers": 2,
        "seconds": seconds,
        "batch": WRITER_BATCH,
        "every_s": WRITER_EVERY_S,
        "fragments_written": written,
        "batches_acknowledged": len(acks),
        "catch_ups": len(behind),
        "lag_ms": {
            "p50": _pct(lags_ms, 50),
            "p95": _pct(lags_ms, 95),
            "max": round(max(lags_ms), 2) if lags_ms else None,
        },
        "positions_behind": {
            "p50": _pct(behind, 50),
            "p95": _pct(behind, 95),
            "max": max(behind) if behind else None,
        },
    }


def _join(url: str, workdir: Path, events: int, progress: Progress) -> dict[str, Any]:
    embedder = HashingEmbedder(dimension=DIMENSION)
    texts = corpus(min(events, 20_000))
    written = {}
    for side, kwargs in (("sqlite", {"database_url": ""}), ("postgres", {"database_url": url})):
        with carma.open(workdir / f"{side}-writer", embedder=embedder, **kwargs) as mem:
            for start in range(0, events - 1, JOIN_BATCH):  # one more: the store's profile
                count = min(JOIN_BATCH, events - 1 - start)
                mem.add_many(
                    [
                        {
                            "text": f"{texts[(start + j) % len(texts)]} ({start + j})",
                            "id": f"j{start + j}",
                        }
                        for j in range(count)
                    ]
                )
            written[side] = mem.log.position()
        say(progress, f"ingest-shared: join: {side} log of {written[side]} events written")
    with carma.open(workdir / "sqlite-writer", embedder=embedder, database_url="") as mem:
        started = time.perf_counter()
        mem.rebuild()
        rebuild_s = time.perf_counter() - started
        sqlite_events = mem.log.position()
    started = time.perf_counter()
    with carma.open(workdir / "joiner", embedder=embedder, database_url=url) as mem:
        mem.catch_up()
        join_s = time.perf_counter() - started
        joined = min(p.position for p in mem.runner.projections)
        live = mem.stats()["live"]
    say(
        progress,
        f"ingest-shared: join: {joined} events in {join_s:.1f} s "
        f"(sqlite rebuild {rebuild_s:.1f} s)",
    )
    rates = {"postgres": joined / join_s, "sqlite": sqlite_events / rebuild_s}
    return {
        "events": joined,
        "live": live,
        "seconds": {"postgres_join": round(join_s, 2), "sqlite_rebuild": round(rebuild_s, 2)},
        "events_per_s": {k: round(v, 1) for k, v in rates.items()},
        "postgres_over_sqlite": round(rates["postgres"] / rates["sqlite"], 3),
    }


def _pct(values: list[float] | list[int], q: float) -> float | None:
    if not values:
        return None
    return round(float(np.percentile(np.asarray(values, dtype=float), q)), 2)


def _writer(url: str, home: str, seed: int, seconds: float) -> None:
    """A steady writer: a batch every WRITER_EVERY_S; prints "<acknowledged at> <head>"."""
    mem = carma.open(home, embedder=HashingEmbedder(dimension=DIMENSION), database_url=url)
    texts = corpus(2_000)
    try:
        deadline, n = time.monotonic() + seconds, 0
        next_at = time.monotonic()
        while time.monotonic() < deadline:
            mem.add_many(
                [
                    {
                        "text": f"{texts[(n + j) % len(texts)]} [{seed}:{n + j}]",
                        "id": f"w{seed}-{n + j}",
                    }
                    for j in range(WRITER_BATCH)
                ]
            )
            print(repr(time.time()), mem.log.position(), flush=True)
            n += WRITER_BATCH
            next_at += WRITER_EVERY_S
            time.sleep(max(0.0, next_at - time.monotonic()))  # the load's pace, not a wait
    finally:
        mem.close()


if __name__ == "__main__":
    _writer(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))

"""Benchmarks: CARMA against a bare baseline measured in the same run, reported as ratios.

    from carma.bench import BENCHMARKS
    report = BENCHMARKS["ingest"](workdir=Path(tmp), progress=print)

Every benchmark is `fn(*, n=None, workdir, progress=None) -> dict` (n None: its default size;
`workdir` an empty folder the caller provides and deletes; `progress` receives one-line status
messages). Its JSON-serialisable report holds the raw figures, the ratios of CARMA to the
baseline, the environment and a target with `met`. The machine may be noisy: the ratios, not
the raw figures, are what to compare across runs, and the two sides of each ratio are
interleaved so that they share the noise. Nothing here asserts on time.

- ingest   (real model, n=2000 texts): Memory.add_many in batches of 64 vs bare model.encode of
           the same batches. The model is loaded and warmed up before either is timed.
- query    (real model, n=10000 fragments, ~200 queries): Memory.search(q, k=10) vs bare
           model.encode([q]) + faiss.IndexFlatIP.search(k=10) over the same vectors.
- overhead (HashingEmbedder, n=100000): add_many in batches of 1000 vs raw batched SQLite
           inserts of the same rows; Memory.rebuild() vs a raw read and JSON decode of the log;
           peak RSS.
"""

from __future__ import annotations

import gc
import json
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import carma
from carma.benchmarking import (
    Progress,
    environment,
    peak_rss_mib,
    ratio,
    rss,
    say,
)
from carma.corpus import corpus
from carma.embedding import HashingEmbedder, SentenceTransformerEmbedder

INGEST_N = 2_000
INGEST_BATCH = 64
INGEST_TARGET = 0.85  # CARMA texts/s over bare model.encode texts/s, at least

QUERY_N = 10_000
QUERY_K = 10
QUERY_BUILD_BATCH = 500
QUERY_WARMUP = 5
QUERY_TARGET = 1.25  # CARMA p50 latency over bare p50 latency, at most

OVERHEAD_N = 100_000
OVERHEAD_BATCH = 1_000
OVERHEAD_EMBED_CHUNK = 64  # what Memory._embed hands the embedder at a time
REBUILD_READ_CHUNK = 500
# No target was set for the store's own overhead; these bounds are provisional.

_HEADER = 18  # CARMA's checksum header on every stored event: b"C1" + a 16-byte blake2b digest


# -- helpers of this module's benchmarks --------------------------------------------------------


def _r(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(float(x), digits)


def _ms(seconds: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(seconds) * 1000.0, q))


def _batches(items: Sequence[str], size: int) -> list[Sequence[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _tree_bytes(root: Path) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                total += os.stat(os.path.join(folder, name)).st_size
            except FileNotFoundError:
                pass
    return total


def _warm_model(embedder: SentenceTransformerEmbedder, texts: list[str],
                progress: Progress) -> tuple[Any, float]:
    """Load the model and run one encode, so that neither side of a ratio pays for either."""
    say(progress, "loading all-MiniLM-L6-v2 and warming it up")
    start = time.perf_counter()
    model = embedder.model
    _encode(model, texts)
    return model, time.perf_counter() - start


def _encode(model: Any, texts: Sequence[str]) -> np.ndarray:
    """The bare baseline: exactly the call SentenceTransformerEmbedder.embed makes."""
    return model.encode(list(texts), batch_size=INGEST_BATCH, normalize_embeddings=True,
                        convert_to_numpy=True, show_progress_bar=False)


# -- ingest ----------------------------------------------------------------------------------------


def bench_ingest(*, n: int | None = None, workdir: Path, progress: Progress = None) -> dict:
    """Memory.add_many (real model, batches of 64) vs bare model.encode of the same batches.

    The two are interleaved batch by batch, in alternating order (bare first on even batches,
    CARMA first on odd ones), so that both see the same noise and the same warm caches; each
    side's time is the sum over its batches.
    """
    n = INGEST_N if n is None else n
    if n < 1:
        raise ValueError("n must be at least 1")
    workdir = Path(workdir)
    rss_before = peak_rss_mib()
    texts_all = corpus(n + INGEST_BATCH)
    texts, warmup = texts_all[:n], texts_all[n:]
    batches = _batches(texts, INGEST_BATCH)

    embedder = SentenceTransformerEmbedder()
    model, warm_s = _warm_model(embedder, warmup, progress)

    start = time.perf_counter()
    mem = carma.open(workdir / "carma", embedder=embedder, database_url="")
    open_s = time.perf_counter() - start

    carma_times: list[float] = []
    bare_times: list[float] = []
    added = 0
    step = max(1, len(batches) // 10)
    try:
        for b, batch in enumerate(batches):
            for side in (("bare", "carma") if b % 2 == 0 else ("carma", "bare")):
                if side == "bare":
                    t0 = time.perf_counter()
                    _encode(model, batch)
                    bare_times.append(time.perf_counter() - t0)
                else:
                    t0 = time.perf_counter()
                    result = mem.add_many(batch)
                    carma_times.append(time.perf_counter() - t0)
                    added += result.added
            if (b + 1) % step == 0 or b + 1 == len(batches):
                say(progress, f"ingest: {min((b + 1) * INGEST_BATCH, n)}/{n} texts "
                               f"(carma {sum(carma_times):.1f} s, bare {sum(bare_times):.1f} s)")
        live = mem.stats()["live"]
    finally:
        start = time.perf_counter()
        mem.close()
        close_s = time.perf_counter() - start

    carma_s, bare_s = sum(carma_times), sum(bare_times)
    carma_rate, bare_rate = n / carma_s, n / bare_s
    throughput_ratio = carma_rate / bare_rate
    per_batch = [c / b for c, b in zip(carma_times, bare_times)]
    return {
        "benchmark": "ingest",
        "n": n,
        "batch_size": INGEST_BATCH,
        "batches": len(batches),
        "embedder": embedder.name,
        "method": (
            "Model loaded and warmed up (one encode of 64 other texts) before timing. Per batch "
            "of 64 texts, CARMA (Memory.add_many on a fresh store) and bare "
            "model.encode(batch, batch_size=64, normalize_embeddings=True) run back to back, "
            "bare first on even batches and CARMA first on odd ones; each side's time is the "
            "sum over its batches. Store open and close are timed separately, not included."
        ),
        "carma": {"seconds": _r(carma_s), "texts_per_s": _r(carma_rate, 2), "added": added,
                  "live_after": live, "open_s": _r(open_s), "close_s": _r(close_s)},
        "bare": {"seconds": _r(bare_s), "texts_per_s": _r(bare_rate, 2)},
        "model_load_and_warmup_s": _r(warm_s),
        "ratios": {
            "carma_over_bare_throughput": _r(throughput_ratio),
            "per_batch_time_ratio_median": _r(float(np.median(per_batch))),
            "carma_overhead_ms_per_text": _r((carma_s - bare_s) / n * 1000.0),
        },
        "target": {"description": f"carma_over_bare_throughput >= {INGEST_TARGET}",
                   "value": INGEST_TARGET, "met": bool(throughput_ratio >= INGEST_TARGET)},
        "rss": rss(rss_before),
        "environment": environment(),
    }


# -- query -----------------------------------------------------------------------------------------


def _perturb(sentence: str) -> str:
    """A stored sentence as a user might half-remember it: every fourth word dropped."""
    words = sentence.rstrip(".").split()
    kept = [w for i, w in enumerate(words) if i % 4 != 1] or words
    return " ".join(kept).lower() + "?"


def make_queries(texts: Sequence[str], count: int) -> list[str]:
    """Deterministic queries: even ones are stored texts with every fourth word dropped; odd ones
    are the corpus sentences that follow the stored ones (past the corpus's size those are
    numbered variants of stored sentences, i.e. near-duplicates)."""
    n = len(texts)
    following = corpus(n + (count + 1) // 2)[n:]
    out: list[str] = []
    for i in range(count):
        if i % 2 == 1:
            out.append(following[i // 2])
        else:
            out.append(_perturb(texts[(i * 7_919 + 13) % n]))
    return out


def _default_queries(n: int) -> int:
    return min(200, max(10, n // 10))


def bench_query(*, n: int | None = None, workdir: Path, progress: Progress = None,
                queries: int | None = None) -> dict:
    """Memory.search(q, k=10) vs bare model.encode([q]) + faiss.IndexFlatIP search, per query.

    The store is built honestly (add_many with the real model). The baseline index holds the
    store's own vectors, read back from its FAISS index. Per query, the two run back to back in
    alternating order (CARMA first on even queries), after a few warm-up queries on each.
    """
    import faiss

    n = QUERY_N if n is None else n
    if n < 1:
        raise ValueError("n must be at least 1")
    q_count = _default_queries(n) if queries is None else queries
    if q_count < 1:
        raise ValueError("queries must be at least 1")
    workdir = Path(workdir)
    rss_before = peak_rss_mib()
    texts = corpus(n)
    all_queries = make_queries(texts, QUERY_WARMUP + q_count)
    warm_queries, measured = all_queries[:QUERY_WARMUP], all_queries[QUERY_WARMUP:]

    embedder = SentenceTransformerEmbedder()
    model, warm_s = _warm_model(embedder, corpus(INGEST_BATCH), progress)

    mem = carma.open(workdir / "carma", embedder=embedder, database_url="")
    try:
        say(progress, f"query: building a store of {n} fragments with the real model")
        start = time.perf_counter()
        for i, batch in enumerate(_batches(texts, QUERY_BUILD_BATCH)):
            mem.add_many(batch)
            done = min((i + 1) * QUERY_BUILD_BATCH, n)
            say(progress, f"query: stored {done}/{n} ({time.perf_counter() - start:.1f} s)")
        build_s = time.perf_counter() - start
        live = mem.stats()["live"]

        ids = mem.index.ids()
        vectors = np.stack([mem.index.vector(int(i)) for i in ids]).astype(np.float32)
        bare_index = faiss.IndexFlatIP(vectors.shape[1])
        bare_index.add(np.ascontiguousarray(vectors))

        def run_carma(q: str) -> tuple[float, list[str]]:
            t0 = time.perf_counter()
            hits = mem.search(q, k=QUERY_K)
            return time.perf_counter() - t0, [h.id for h in hits]

        def run_bare(q: str) -> tuple[float, list[int]]:
            t0 = time.perf_counter()
            v = model.encode([q], normalize_embeddings=True, convert_to_numpy=True,
                             show_progress_bar=False)
            _, found = bare_index.search(np.ascontiguousarray(v, dtype=np.float32), QUERY_K)
            return time.perf_counter() - t0, [int(ids[j]) for j in found[0] if j != -1]

        for q in warm_queries:
            run_carma(q)
            run_bare(q)

        say(progress, f"query: timing {q_count} queries, interleaved")
        carma_s: list[float] = []
        bare_s: list[float] = []
        overlap: list[float] = []
        faiss_of_key = _faiss_ids_by_key(mem)
        for i, q in enumerate(measured):
            if i % 2 == 0:
                (tc, hc), (tb, hb) = run_carma(q), run_bare(q)
            else:
                (tb, hb), (tc, hc) = run_bare(q), run_carma(q)
            carma_s.append(tc)
            bare_s.append(tb)
            got = {faiss_of_key[k] for k in hc}
            overlap.append(len(got & set(hb)) / max(1, min(QUERY_K, len(hb))))
            if (i + 1) % max(1, q_count // 4) == 0:
                say(progress, f"query: {i + 1}/{q_count} queries")
    finally:
        mem.close()

    c50, c95 = _ms(carma_s, 50), _ms(carma_s, 95)
    b50, b95 = _ms(bare_s, 50), _ms(bare_s, 95)
    p50_ratio = c50 / b50
    paired = np.asarray(carma_s) / np.asarray(bare_s)
    return {
        "benchmark": "query",
        "n": n,
        "queries": q_count,
        "k": QUERY_K,
        "embedder": embedder.name,
        "method": (
            "Store built with Memory.add_many (real model, batches of 500). Baseline: bare "
            "model.encode([q], normalize_embeddings=True) + faiss.IndexFlatIP(d).search(k=10) "
            "over the store's own vectors. After 5 warm-up queries on each side, every query "
            "runs on both back to back, CARMA first on even queries and bare first on odd ones. "
            "Queries: stored sentences with every fourth word dropped, alternating with the "
            "corpus sentences that follow the stored ones."
        ),
        "build": {"seconds": _r(build_s), "fragments_per_s": _r(n / build_s, 2),
                  "live": live, "index_vectors": len(ids)},
        "model_load_and_warmup_s": _r(warm_s),
        "carma_ms": {"p50": _r(c50), "p95": _r(c95), "mean": _r(float(np.mean(carma_s)) * 1e3)},
        "bare_ms": {"p50": _r(b50), "p95": _r(b95), "mean": _r(float(np.mean(bare_s)) * 1e3)},
        "ratios": {
            "p50": _r(p50_ratio),
            "p95": _r(c95 / b95),
            "paired_median": _r(float(np.median(paired))),
            "carma_overhead_ms_p50": _r(float(np.median(np.asarray(carma_s) - bare_s)) * 1e3),
        },
        "top_k_agreement": _r(float(np.mean(overlap))),
        "target": {"description": f"p50 ratio <= {QUERY_TARGET}", "value": QUERY_TARGET,
                   "met": bool(p50_ratio <= QUERY_TARGET)},
        "rss": rss(rss_before),
        "environment": environment(),
    }


def _faiss_ids_by_key(mem: Any) -> dict[str, int]:
    """Fragment id -> FAISS id, from the store's ledger file (read with plain sqlite3)."""
    conn = sqlite3.connect(f"file:{mem.home / 'ledger.sqlite'}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT id, faiss_id FROM fragments").fetchall())
    finally:
        conn.close()


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
                json.loads(row[4][_HEADER:])
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
    batches = _batches(texts, OVERHEAD_BATCH)
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
                reader = sqlite3.connect(f"file:{events_db}?mode=ro", uri=True,
                                         isolation_level=None)

            rows = reader.execute(
                "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events"
                " WHERE rowid > ? ORDER BY rowid", (last_rowid,),
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
            for chunk in _batches(batch, OVERHEAD_EMBED_CHUNK):
                probe.embed(chunk)
            embed_times.append(time.perf_counter() - t0)

            if (b + 1) % step == 0 or b + 1 == len(batches):
                done = min((b + 1) * OVERHEAD_BATCH, n)
                say(progress, f"overhead: ingested {done}/{n} (carma {sum(carma_times):.1f} s, "
                               f"last batch {carma_times[-1]:.2f} s; raw {sum(raw_times):.2f} s)")
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
        say(progress, f"overhead: rebuild took {rebuild_s:.1f} s; raw read (2/2)")
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
            "the batch in chunks of 64 (timed). Rebuild: Memory.rebuild() vs SELECT rowid, * "
            "FROM stored_events in chunks of 500 with json.loads of each payload after its "
            "18-byte checksum header, run before and after the rebuild and averaged. Ratios of "
            "throughput are carma/raw (higher is better); the rebuild ratio is a time ratio "
            "carma/raw (lower is better)."
        ),
        "ingest": {
            "fragments_added": added,
            "events": events,
            "payload_bytes": payload_bytes,
            "carma_s": _r(carma_s),
            "carma_events_per_s": _r(carma_rate, 1),
            "carma_events_per_s_excluding_embedder": _r(carma_rate_ex, 1),
            "embedder_alone_s": _r(embed_s),
            "raw_sqlite_s": _r(raw_s),
            "raw_sqlite_events_per_s": _r(raw_rate, 1),
            "carma_batch_s_first_tenth_mean": _r(float(np.mean(carma_times[:tenth]))),
            "carma_batch_s_last_tenth_mean": _r(float(np.mean(carma_times[-tenth:]))),
        },
        "rebuild": {
            "events_replayed": rebuilt,
            "carma_s": _r(rebuild_s),
            "carma_events_per_s": _r(rebuilt / rebuild_s, 1),
            "raw_read_s": [_r(raw_read_1), _r(raw_read_2)],
            "raw_read_s_mean": _r(raw_read_s),
            "raw_events_read": raw_count,
            "live_after": stats["live"],
            "index_vectors_after": stats["index_vectors"],
        },
        "bytes_on_disk": {
            "carma_home": stats["bytes_on_disk"],
            "events_sqlite": sum(p.stat().st_size for p in home.glob("events.sqlite*")),
            "cache_files": _tree_bytes(home / "cache"),
            "raw_sqlite": sum(p.stat().st_size for p in workdir.glob("raw.sqlite*")),
        },
        "ratios": {
            "ingest_ratio": _r(ingest_ratio),
            "ingest_ratio_excluding_embedder": _r(ingest_ratio_ex),
            "rebuild_time_ratio": _r(rebuild_ratio),
            "ingest_slowdown_last_over_first_tenth": _r(
                float(np.mean(carma_times[-tenth:]) / np.mean(carma_times[:tenth]))),
        },
        "target": {
            "description": "none set: the store's own overhead is reported, not judged",
            "met": None,
        },
        "rss": rss(rss_before),
        "environment": environment(),
    }


BENCHMARKS: dict[str, Callable[..., dict]] = {
    "ingest": bench_ingest,
    "query": bench_query,
    "overhead": bench_overhead,
}

# The other benchmarks live in modules of their own (their shared helpers: carma.benchmarking).
from carma.bench_heal import bench_heal  # noqa: E402

BENCHMARKS["heal"] = bench_heal

from carma.bench_audit import bench_audit  # noqa: E402

BENCHMARKS["audit"] = bench_audit

from carma.bench_reconstruct import bench_reconstruct  # noqa: E402

BENCHMARKS["reconstruct"] = bench_reconstruct

"""`carma bench ingest` (real model, n=2000 texts): Memory.add_many in batches of 64 against a
bare model.encode of the same batches, the model loaded and warmed up before either is timed."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import carma
from carma.bench.common import (
    Progress,
    encode,
    environment,
    in_batches,
    peak_rss_mib,
    rounded,
    rss,
    say,
    warm_model,
)
from carma.demo.corpus import corpus
from carma.embedding import SentenceTransformerEmbedder

INGEST_N = 2_000
INGEST_BATCH = 64
INGEST_TARGET = 0.85  # CARMA texts/s over bare model.encode texts/s, at least


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
    batches = in_batches(texts, INGEST_BATCH)

    embedder = SentenceTransformerEmbedder()
    model, warm_s = warm_model(embedder, warmup, progress)

    start = time.perf_counter()
    mem = carma.open(workdir / "carma", embedder=embedder, database_url="")
    open_s = time.perf_counter() - start

    carma_times: list[float] = []
    bare_times: list[float] = []
    added = 0
    step = max(1, len(batches) // 10)
    try:
        for b, batch in enumerate(batches):
            for side in ("bare", "carma") if b % 2 == 0 else ("carma", "bare"):
                if side == "bare":
                    t0 = time.perf_counter()
                    encode(model, batch)
                    bare_times.append(time.perf_counter() - t0)
                else:
                    t0 = time.perf_counter()
                    result = mem.add_many(batch)
                    carma_times.append(time.perf_counter() - t0)
                    added += result.added
            if (b + 1) % step == 0 or b + 1 == len(batches):
                say(
                    progress,
                    f"ingest: {min((b + 1) * INGEST_BATCH, n)}/{n} texts "
                    f"(carma {sum(carma_times):.1f} s, bare {sum(bare_times):.1f} s)",
                )
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
        "carma": {
            "seconds": rounded(carma_s),
            "texts_per_s": rounded(carma_rate, 2),
            "added": added,
            "live_after": live,
            "open_s": rounded(open_s),
            "close_s": rounded(close_s),
        },
        "bare": {"seconds": rounded(bare_s), "texts_per_s": rounded(bare_rate, 2)},
        "model_load_and_warmup_s": rounded(warm_s),
        "ratios": {
            "carma_over_bare_throughput": rounded(throughput_ratio),
            "per_batch_time_ratio_median": rounded(float(np.median(per_batch))),
            "carma_overhead_ms_per_text": rounded((carma_s - bare_s) / n * 1000.0),
        },
        "target": {
            "description": f"carma_over_bare_throughput >= {INGEST_TARGET}",
            "value": INGEST_TARGET,
            "met": bool(throughput_ratio >= INGEST_TARGET),
        },
        "rss": rss(rss_before),
        "environment": environment(),
    }

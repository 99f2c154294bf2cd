"""`carma bench ingest` (real model, n=2000 texts of varied length): one Memory.add_many of
all of them, as `carma import` writes them, against one bare model.encode of the same texts,
the model loaded and warmed up before either is timed."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import carma
from carma.bench.common import (
    Progress,
    encode,
    environment,
    peak_rss_mib,
    rounded,
    rss,
    say,
    warm_model,
)
from carma.demo.corpus import varied
from carma.embedding import SentenceTransformerEmbedder

INGEST_N = 2_000
INGEST_BATCH = 64
INGEST_ROUNDS = 3
INGEST_TARGET = 0.85  # CARMA texts/s over bare model.encode texts/s, at least


def bench_ingest(*, n: int | None = None, workdir: Path, progress: Progress = None) -> dict:
    """One write of n texts of varied length (40-300 characters, as users' notes are), as
    `carma import` makes it, against one bare model.encode of the same texts (which sorts
    them by length across the whole call), in ROUNDS rounds of alternating order, each CARMA
    round on a fresh store."""
    n = INGEST_N if n is None else n
    if n < 1:
        raise ValueError("n must be at least 1")
    workdir = Path(workdir)
    rss_before = peak_rss_mib()
    texts_all = varied(n + INGEST_BATCH)
    texts, warmup = texts_all[:n], texts_all[n:]
    lengths = [len(t) for t in texts]

    embedder = SentenceTransformerEmbedder()
    model, warm_s = warm_model(embedder, warmup, progress)

    carma_times: list[float] = []
    bare_times: list[float] = []
    added = live = 0
    for r in range(INGEST_ROUNDS):
        for side in ("bare", "carma") if r % 2 == 0 else ("carma", "bare"):
            if side == "bare":
                t0 = time.perf_counter()
                encode(model, texts)
                bare_times.append(time.perf_counter() - t0)
            else:
                with carma.open(workdir / f"carma-{r}", embedder=embedder, database_url="") as mem:
                    t0 = time.perf_counter()
                    result = mem.add_many(texts)
                    carma_times.append(time.perf_counter() - t0)
                    added, live = result.added, mem.stats()["live"]
        say(
            progress,
            f"ingest: round {r + 1}/{INGEST_ROUNDS} (carma {carma_times[-1]:.1f} s, "
            f"bare {bare_times[-1]:.1f} s)",
        )
    carma_s, bare_s = float(np.median(carma_times)), float(np.median(bare_times))
    carma_rate, bare_rate = n / carma_s, n / bare_s
    throughput_ratio = carma_rate / bare_rate
    return {
        "benchmark": "ingest",
        "n": n,
        "rounds": INGEST_ROUNDS,
        "text_chars": {
            "min": min(lengths),
            "median": float(np.median(lengths)),
            "max": max(lengths),
        },
        "embedder": embedder.name,
        "method": (
            "Model loaded and warmed up (one encode of 64 other texts) before timing. Texts of "
            "varied length (corpus.varied). Per round, CARMA (one Memory.add_many of all n "
            "texts on a fresh store, as `carma import` writes them) and bare "
            "model.encode(all n texts, batch_size=64, normalize_embeddings=True) run back to "
            "back, bare first on even rounds; each side's figure is its median round. Store "
            "open and close are not timed."
        ),
        "carma": {
            "seconds": rounded(carma_s),
            "rounds_s": [rounded(t) for t in carma_times],
            "texts_per_s": rounded(carma_rate, 2),
            "added": added,
            "live_after": live,
        },
        "bare": {
            "seconds": rounded(bare_s),
            "rounds_s": [rounded(t) for t in bare_times],
            "texts_per_s": rounded(bare_rate, 2),
        },
        "model_load_and_warmup_s": rounded(warm_s),
        "ratios": {
            "carma_over_bare_throughput": rounded(throughput_ratio),
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

"""`carma bench query` (real model, n=10000 fragments, ~200 queries): Memory.search(q, k=10)
against a bare model.encode([q]) + faiss.IndexFlatIP.search(k=10) over the same vectors."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import carma
from carma.bench.common import (
    ENCODE_BATCH,
    Progress,
    environment,
    faiss_ids_by_key,
    in_batches,
    ms_percentile,
    peak_rss_mib,
    rounded,
    rss,
    say,
    warm_model,
)
from carma.demo.corpus import corpus
from carma.embedding import SentenceTransformerEmbedder

QUERY_N = 10_000
QUERY_K = 10
QUERY_BUILD_BATCH = 500
QUERY_WARMUP = 5
QUERY_TARGET = 1.25  # CARMA p50 latency over bare p50 latency, at most


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


def bench_query(
    *, n: int | None = None, workdir: Path, progress: Progress = None, queries: int | None = None
) -> dict:
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
    model, warm_s = warm_model(embedder, corpus(ENCODE_BATCH), progress)

    mem = carma.open(workdir / "carma", embedder=embedder, database_url="")
    try:
        say(progress, f"query: building a store of {n} fragments with the real model")
        start = time.perf_counter()
        for i, batch in enumerate(in_batches(texts, QUERY_BUILD_BATCH)):
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
            v = model.encode(
                [q], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
            _, found = bare_index.search(np.ascontiguousarray(v, dtype=np.float32), QUERY_K)
            return time.perf_counter() - t0, [int(ids[j]) for j in found[0] if j != -1]

        for q in warm_queries:
            run_carma(q)
            run_bare(q)

        say(progress, f"query: timing {q_count} queries, interleaved")
        carma_s: list[float] = []
        bare_s: list[float] = []
        overlap: list[float] = []
        faiss_of_key = faiss_ids_by_key(mem)
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

    c50, c95 = ms_percentile(carma_s, 50), ms_percentile(carma_s, 95)
    b50, b95 = ms_percentile(bare_s, 50), ms_percentile(bare_s, 95)
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
        "build": {
            "seconds": rounded(build_s),
            "fragments_per_s": rounded(n / build_s, 2),
            "live": live,
            "index_vectors": len(ids),
        },
        "model_load_and_warmup_s": rounded(warm_s),
        "carma_ms": {
            "p50": rounded(c50),
            "p95": rounded(c95),
            "mean": rounded(float(np.mean(carma_s)) * 1e3),
        },
        "bare_ms": {
            "p50": rounded(b50),
            "p95": rounded(b95),
            "mean": rounded(float(np.mean(bare_s)) * 1e3),
        },
        "ratios": {
            "p50": rounded(p50_ratio),
            "p95": rounded(c95 / b95),
            "paired_median": rounded(float(np.median(paired))),
            "carma_overhead_ms_p50": rounded(float(np.median(np.asarray(carma_s) - bare_s)) * 1e3),
        },
        "top_k_agreement": rounded(float(np.mean(overlap))),
        "target": {
            "description": f"p50 ratio <= {QUERY_TARGET}",
            "value": QUERY_TARGET,
            "met": bool(p50_ratio <= QUERY_TARGET),
        },
        "rss": rss(rss_before),
        "environment": environment(),
    }

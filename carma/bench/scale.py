"""`carma bench scale`: one store grown to each size in turn (10k, 100k, 1M by default), its
own costs measured at each, and the approximate index's recall on the real model's vectors."""

from __future__ import annotations

import functools
import gc
import multiprocessing
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import carma
from carma.allocator import heap_free_mib
from carma.bench.common import (
    PhasePeaks,
    Progress,
    current_rss_mib,
    environment,
    ms_percentile,
    peak_rss_mib,
    ratio,
    rounded,
    say,
    tree_bytes,
)
from carma.bench.overhead import _raw_read
from carma.demo.corpus import corpus, installed
from carma.embedding import HashingEmbedder, SentenceTransformerEmbedder
from carma.projections import VectorIndex
from carma.projections.files import flush_file_system
from carma.projections.index import (
    APPROXIMATE_ABOVE,
    GRAPH_EF_CONSTRUCTION,
    GRAPH_EF_SEARCH,
    GRAPH_NEIGHBOURS,
)

SCALE_SIZES = (10_000, 100_000, 1_000_000)
RECALL_SIZES = (10_000, 100_000)  # with the real model's vectors (encoding 1M would take hours)
SCALE_BATCH = 1_000
QUERIES = 200
K = 10
HEAL_SAMPLE = 1_000
TARGETS = {
    "recall_at_10": 0.95,
    "search_vs_exact_at_1m": 0.1,
    "query_at_1m_vs_10k": 1.25,
    # The "2.5 GB", read as the stricter decimal gigabytes: 2,384 MiB.
    "peak_rss_mib_at_1m": 2.5e9 / 2**20,
    "full_scrub_s_at_1m": 60.0,
}


def _encode_texts(conn: Any) -> None:
    """The query encoder's process: a text in, its all-MiniLM-L6-v2 vector out, until None."""
    model = SentenceTransformerEmbedder()
    model.embed(["warm up"])
    conn.send(model.dimension)
    while (text := conn.recv()) is not None:
        conn.send_bytes(model.embed([text])[0].tobytes())


class QueryEncoder:
    """The real model in a process of its own, so that a whole query (a text encoded, then
    the store's search) is timed without the model's ~0.5 GB in the store's peak RSS."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_encode_texts, args=(child,), daemon=True)
        self._process.start()
        child.close()
        self.dimension = self._conn.recv()

    def encode(self, text: str) -> np.ndarray:
        self._conn.send(text)
        return np.frombuffer(self._conn.recv_bytes(), dtype=np.float32)

    def close(self) -> None:
        try:
            self._conn.send(None)
        except OSError:
            pass
        self._process.join(timeout=30)
        if self._process.is_alive():
            self._process.kill()


def _sizes(top: int) -> list[int]:
    return [s for s in SCALE_SIZES if s < top] + [top]


def _text(base: list[str], i: int) -> str:
    # Unique texts without holding a million of them: a base sentence and the fragment's number.
    return f"{base[i % len(base)][:-1]} (note {i})."


def _timed(fn, items) -> tuple[list[float], list[Any]]:
    seconds, results = [], []
    for item in items:
        start = time.perf_counter()
        results.append(fn(item))
        seconds.append(time.perf_counter() - start)
    return seconds, results


def _recall(found: list[list[int]], exact: list[list[int]]) -> float:
    return float(np.mean([len(set(f) & set(e)) / max(1, len(e)) for f, e in zip(found, exact)]))


def _some_cache_files(root: Path, count: int, seed: int) -> list[Path]:
    """`count` distinct cache files at random, without listing a million of them at once
    (which would count in the peak memory measured): a random folder, then a file in it."""
    rng = np.random.default_rng(seed)
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    chosen: set[Path] = set()
    while len(chosen) < count:
        folder = folders[int(rng.integers(len(folders)))]
        names = sorted(os.listdir(folder))
        if names:
            chosen.add(folder / names[int(rng.integers(len(names)))])
    return sorted(chosen)


def _checkpoint(
    mem: carma.Memory,
    home: Path,
    size: int,
    queries: np.ndarray,
    texts: list[str],
    encoder: QueryEncoder,
    peaks: PhasePeaks,
    progress: Progress,
    smallest: Path | None = None,
):
    """What the store costs at this size: queries (the store's search path, model excluded,
    against a scan of the same stored vectors; and whole queries, a text encoded by the real
    model then searched, also in turns with the store as it was at the smallest size, kept at
    `smallest`), a full scrub, a heal of HEAL_SAMPLE deleted cache files, a rebuild against a
    raw read of the log, memory and disk."""
    index = mem.index
    # What the ingest left for the kernel to write back (GBs at 1M) is written first: queries
    # timed meanwhile measured that write-back (the model's encode, in another process, took
    # 2 ms longer at 1M than at 10k), not the store at this size.
    flush_file_system(home)
    say(progress, f"scale {size}: {QUERIES} queries, the store's and a scan's")
    for v in queries[:5]:  # warm both paths
        mem.search_by_vector(v, k=K)
        index.scan(v, K)
    # Whole queries first: the first read of each hit's rows and file is part of a query.
    whole_s, _ = _timed(lambda text: mem.search_by_vector(encoder.encode(text), k=K), texts)
    encode_s, _ = _timed(encoder.encode, texts)  # the model's part of a whole query alone
    store_s, hits = _timed(lambda v: mem.search_by_vector(v, k=K), queries)
    scan_s, exact = _timed(lambda v: index.scan(v, K), queries)
    index_s, approx = _timed(lambda v: index.search(v, K), queries)
    exact_ids = [[fid for fid, _ in found] for found in exact]
    recall = _recall([[fid for fid, _ in found] for found in approx], exact_ids)
    paired = (
        None if smallest is None else _in_turns(mem, smallest, queries.shape[1], texts, encoder)
    )
    by_phase = {"queries": peaks.mark()}
    after = {"queries": _phase_end()}

    say(progress, f"scale {size}: a full scrub")
    start = time.perf_counter()
    scrubbed = mem.scrub(deep=True)
    scrub_s = time.perf_counter() - start
    by_phase["full_scrub"] = peaks.mark()
    after["full_scrub"] = _phase_end()

    say(progress, f"scale {size}: {HEAL_SAMPLE} cache files deleted, found and healed")
    victims = _some_cache_files(home / "cache", min(HEAL_SAMPLE, size), size)
    for path in victims:
        path.unlink()
    start = time.perf_counter()
    found = mem.scrub()
    find_s = time.perf_counter() - start
    start = time.perf_counter()
    healed = mem.heal()
    heal_s = time.perf_counter() - start
    by_phase["heal"] = peaks.mark()
    after["heal"] = _phase_end()

    say(progress, f"scale {size}: a rebuild from the log, and a raw read of it")
    gc.collect()
    raw_1, events = _raw_read(home / "events.sqlite")
    start = time.perf_counter()
    mem.rebuild()
    rebuild_s = time.perf_counter() - start
    mem.wait_for_graph()  # (built behind the rebuild: the store answered from rebuild_s on)
    graph_s = time.perf_counter() - start
    by_phase["rebuild"] = peaks.mark()
    after["rebuild"] = _phase_end()
    raw_2, _ = _raw_read(home / "events.sqlite")
    raw_s = (raw_1 + raw_2) / 2

    parts = {
        "log": (home / "events.sqlite").stat().st_size,
        "cache": tree_bytes(home / "cache"),
        "index": tree_bytes(home / "index"),
        "ledger": (home / "ledger.sqlite").stat().st_size,
    }
    parts["other"] = tree_bytes(home) - sum(parts.values())
    return {
        "fragments": size,
        "index": "approximate (HNSW)" if index.approximate else "exact",
        "query_ms": {
            "whole_p50": rounded(ms_percentile(whole_s, 50)),
            "whole_p95": rounded(ms_percentile(whole_s, 95)),
            "encode_p50": rounded(ms_percentile(encode_s, 50)),
            "store_p50": rounded(ms_percentile(store_s, 50)),
            "store_p95": rounded(ms_percentile(store_s, 95)),
            "index_p50": rounded(ms_percentile(index_s, 50)),
            "scan_p50": rounded(ms_percentile(scan_s, 50)),
            "scan_p95": rounded(ms_percentile(scan_s, 95)),
            "index_vs_scan_p50": rounded(
                ratio(ms_percentile(index_s, 50), ms_percentile(scan_s, 50))
            ),
            "whole_in_turns_with_smallest": paired,
        },
        "recall_at_10_deterministic_vectors": rounded(recall),
        "full_scrub": {
            "seconds": rounded(scrub_s),
            "fragments_per_s": rounded(size / scrub_s, 1),
            "checked": scrubbed.get("checked"),
        },
        "heal": {
            "deleted": len(victims),
            "found": sum(found.get("found", {}).values()),
            # (by copy: the index's file is found stale too when this size's ingest changed
            # more vectors than a scrub lets it lack: it is not written until close or a heal)
            "found_by_copy": found.get("found", {}),
            "scrub_s": rounded(find_s),
            "heal_s": rounded(heal_s),
            "healed": sum(healed.values()),
            "heals_per_s": rounded(sum(healed.values()) / heal_s, 1) if heal_s else None,
        },
        "rebuild": {
            "seconds": rounded(rebuild_s),
            "events": events,
            "raw_read_s": rounded(raw_s),
            "vs_raw_read": rounded(ratio(rebuild_s, raw_s)),
            "graph_whole_s": rounded(graph_s),
            "graph_whole_vs_raw_read": rounded(ratio(graph_s, raw_s)),
        },
        "rss_mib": {
            "peak": max(peaks.overall, peaks.mark()),
            "current": current_rss_mib(),
            "peak_by_phase": by_phase,
            "after_phase": after,
        },
        "disk_bytes_per_fragment": {k: round(v / size, 1) for k, v in parts.items()}
        | {"all": round(sum(parts.values()) / size, 1)},
    }


def _phase_end() -> dict[str, float | None]:
    """RSS as a phase ends, and how much of it the C heap holds free (kept for reuse, not in
    use): what a phase left behind for the next one's peak to start from."""
    return {"current": current_rss_mib(), "heap_free": heap_free_mib()}


def _in_turns(
    mem: carma.Memory, smallest: Path, dimension: int, texts: list[str], encoder: QueryEncoder
) -> dict:
    """Whole queries against this store and against its copy at the smallest size, in turns
    (which goes first alternating), so that both share each moment's noise: the encoder's
    process and the store's handing over to each other on two cores swings a whole query by
    more than the store's own part (the sizes' whole queries apart: 0.85-1.36x in six runs)."""
    with carma.open(
        smallest,
        dimension=dimension,
        database_url="",
        approximate_above=APPROXIMATE_ABOVE,
    ) as copy:
        for text in texts[:5]:  # warm both
            copy.search_by_vector(encoder.encode(text), k=K)
            mem.search_by_vector(encoder.encode(text), k=K)
        here_s, there_s = [], []
        for i, text in enumerate(texts):
            order = [(mem, here_s), (copy, there_s)]
            for store, seconds in order if i % 2 == 0 else order[::-1]:
                start = time.perf_counter()
                store.search_by_vector(encoder.encode(text), k=K)
                seconds.append(time.perf_counter() - start)
    here, there = ms_percentile(here_s, 50), ms_percentile(there_s, 50)
    return {
        "this_size_p50": rounded(here),
        "smallest_copy_p50": rounded(there),
        "this_size_p95": rounded(ms_percentile(here_s, 95)),
        "smallest_copy_p95": rounded(ms_percentile(there_s, 95)),
        "ratio_p50": rounded(ratio(here, there)),
    }


def _store_at_sizes(sizes: list[int], workdir: Path, progress: Progress) -> list[dict]:
    embedder = HashingEmbedder()
    base = corpus(2_000)
    home = workdir / "store"
    # A store with no text model: vectors are given, as a program with its own model gives them.
    mem = carma.open(
        home, dimension=embedder.dimension, database_url="", approximate_above=APPROXIMATE_ABOVE
    )
    held_out = [f"{s[:-1]} (a question)." for s in corpus(2_000 + QUERIES)[2_000:]]
    queries = embedder.embed(held_out)
    # Whole queries: other held-out sentences, as text (their vectors searched against the
    # hashing embedder's time the store's search path, not its answers' quality).
    questions = [f"{s[:-1]}?" for s in corpus(2_000 + 2 * QUERIES)[2_000 + QUERIES :]]
    smallest: Path | None = None  # the store as it was at the first size, copied from its log
    say(progress, "scale: starting the query encoder (all-MiniLM-L6-v2, its own process)")
    encoder = QueryEncoder()
    peaks = PhasePeaks()
    checkpoints, added = [], 0
    try:
        for size in sizes:
            seconds = 0.0
            start_count = added
            while added < size:
                count = min(SCALE_BATCH, size - added)
                texts = [_text(base, i) for i in range(added, added + count)]
                vectors = embedder.embed(texts)  # untimed: the model is not the store's cost
                items = [{"text": t, "embedding": v} for t, v in zip(texts, vectors)]
                start = time.perf_counter()
                mem.add_many(items)
                seconds += time.perf_counter() - start
                added += count
                if added % (size // 10 or 1) < SCALE_BATCH:
                    say(progress, f"scale: {added}/{size} fragments ({seconds:.0f} s this stage)")
            # (A write that took the index past its threshold left the graph to a thread:
            # the store answered meanwhile, scanning what it had not built yet.)
            start = time.perf_counter()
            mem.wait_for_graph()
            graph_wait = time.perf_counter() - start
            ingest_peak, ingest_end = peaks.mark(), _phase_end()
            point = {
                "ingest": {
                    "fragments": added - start_count,
                    "seconds": rounded(seconds),
                    "fragments_per_s": rounded((added - start_count) / seconds, 1),
                    "graph_whole_after_s": rounded(graph_wait),
                    "fragments_per_s_graph_whole": rounded(
                        (added - start_count) / (seconds + graph_wait), 1
                    ),
                }
            }
            point.update(
                _checkpoint(mem, home, size, queries, questions, encoder, peaks, progress, smallest)
            )
            point["rss_mib"]["peak_by_phase"] = {
                "ingest": ingest_peak,
                **point["rss_mib"]["peak_by_phase"],
            }
            point["rss_mib"]["after_phase"] = {
                "ingest": ingest_end,
                **point["rss_mib"]["after_phase"],
            }
            checkpoints.append(point)
            if smallest is None and size != sizes[-1]:
                say(progress, f"scale {size}: the store kept as it is, for queries in turns")
                smallest = workdir / "store-at-smallest"
                mem.replay(into=smallest).close()
    finally:
        encoder.close()
        mem.close()
    return checkpoints


def _recall_on_real_vectors(sizes: list[int], progress: Progress) -> dict:
    """The graph against a scan over the real model's vectors of real text (HNSW's recall
    on random-like vectors says nothing about it on embeddings)."""
    top = max(sizes)
    say(progress, f"scale: reading up to {top + QUERIES} sentences of installed docstrings")
    texts = installed(top + QUERIES)
    if len(texts) < top + QUERIES:
        sizes = sorted({min(s, len(texts) - QUERIES) for s in sizes})
        top = max(sizes)
    model = SentenceTransformerEmbedder()
    say(progress, f"scale: encoding {top + QUERIES} sentences with {model.name}")
    start = time.perf_counter()
    parts = []
    for i in range(0, top + QUERIES, 2_000):
        parts.append(np.asarray(model.embed(texts[i : i + 2_000]), dtype=np.float32))
        say(progress, f"scale: encoded {min(i + 2_000, top + QUERIES)}/{top + QUERIES}")
    vectors = np.concatenate(parts)
    encode_s = time.perf_counter() - start
    queries, stored = vectors[top : top + QUERIES], vectors[:top]
    results = {}
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="carma-scale-") as root:
            index = VectorIndex(Path(root), model.dimension, approximate_above=0)
            index.put({i + 1: stored[i].tobytes() for i in range(size)})
            for q in queries[:5]:
                index.search(q, K)
                index.scan(q, K)
            graph_s, found = _timed(functools.partial(index.search, k=K), queries)
            scan_s, exact = _timed(functools.partial(index.scan, k=K), queries)
        recall = _recall(
            [[f for f, _ in hits] for hits in found], [[f for f, _ in hits] for hits in exact]
        )
        results[str(size)] = {
            "recall_at_10": rounded(recall),
            "graph_ms_p50": rounded(ms_percentile(graph_s, 50)),
            "scan_ms_p50": rounded(ms_percentile(scan_s, 50)),
            "graph_vs_scan_p50": rounded(
                ratio(ms_percentile(graph_s, 50), ms_percentile(scan_s, 50))
            ),
        }
        say(progress, f"scale: real vectors at {size}: recall@10 {recall:.3f}")
    return {"sentences": len(texts), "encode_s": rounded(encode_s), "by_size": results}


def _growth(points: list[dict]) -> dict:
    first = points[0]

    def of(point: dict, path: tuple[str, ...]) -> float | None:
        value: Any = point
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    metrics = {
        "ingest_fragments_per_s": ("ingest", "fragments_per_s"),
        "query_whole_p50": ("query_ms", "whole_p50"),
        "query_store_p50": ("query_ms", "store_p50"),
        "scan_p50": ("query_ms", "scan_p50"),
        "full_scrub_s": ("full_scrub", "seconds"),
        "rebuild_s": ("rebuild", "seconds"),
        "peak_rss_mib": ("rss_mib", "peak"),
        "disk_bytes_per_fragment": ("disk_bytes_per_fragment", "all"),
    }
    out: dict[str, Any] = {}
    for name, path in metrics.items():
        base = of(first, path)
        out[name] = {
            str(p["fragments"]): rounded(ratio(of(p, path), base)) if base else None for p in points
        }
    return out


def bench_scale(*, n: int | None = None, workdir: Path, progress: Progress = None) -> dict:
    """One store grown to 10k, 100k and 1M fragments (n: the largest), vectors given."""
    top = SCALE_SIZES[-1] if n is None else n
    if top < 1:
        raise ValueError("n must be at least 1")
    rss_before = peak_rss_mib()
    sizes = _sizes(top)
    points = _store_at_sizes(sizes, Path(workdir), progress)
    recall_sizes = [s for s in RECALL_SIZES if s < top] + ([top] if top < RECALL_SIZES[-1] else [])
    real = _recall_on_real_vectors(recall_sizes or [min(top, RECALL_SIZES[0])], progress)
    largest = points[-1]
    smallest = points[0]
    real_recalls = [v["recall_at_10"] for v in real["by_size"].values()]
    whole_growth = ratio(largest["query_ms"]["whole_p50"], smallest["query_ms"]["whole_p50"])
    # Judged in turns with the smallest size's copy where there is one (two sizes or more):
    # the two sizes' whole queries apart, minutes between them, swing with the machine.
    in_turns = largest["query_ms"].get("whole_in_turns_with_smallest")
    whole_judged = in_turns["ratio_p50"] if in_turns else whole_growth
    store_growth = ratio(largest["query_ms"]["store_p50"], smallest["query_ms"]["store_p50"])
    return {
        "benchmark": "scale",
        "sizes": sizes,
        "method": (
            "One store with no text model (carma.open(path, dimension=384)) grown to each size "
            f"in batches of {SCALE_BATCH} through add_many with vectors given (the "
            "HashingEmbedder's, computed outside the timing). At each size: "
            "the file system flushed (the ingest's write-back done), then "
            f"{QUERIES} whole queries (a held-out sentence encoded by all-MiniLM-L6-v2 in a "
            "process of its own, then search_by_vector; and the encode alone; then the same "
            "in turns with a copy of the store at the smallest size, made by replaying its "
            "log when that size was measured), "
            f"{QUERIES} held-out query vectors through search_by_vector (k={K}), the index's own "
            "search and a scan of every stored vector (the exact answer); a full scrub "
            f"(scrub(deep=True)); {HEAL_SAMPLE} cache files deleted, then scrub() and heal(); "
            "rebuild() against a raw read and JSON decode of the log (and the time until "
            "the index's graph, built behind it, was whole); peak RSS; disk per "
            "fragment. Recall on real vectors: all-MiniLM-L6-v2 embeddings of sentences from "
            "the docstrings of the standard library and the installed packages, an index "
            "always on the graph against a scan of the same vectors."
        ),
        "settings": {
            "approximate_above": APPROXIMATE_ABOVE,
            "graph_neighbours": GRAPH_NEIGHBOURS,
            "ef_construction": GRAPH_EF_CONSTRUCTION,
            "ef_search": GRAPH_EF_SEARCH,
        },
        "by_size": points,
        "growth_vs_smallest": _growth(points),
        "real_vectors": real,
        "target": {
            "recall_at_10_real_vectors_at_least_0_95": all(r >= 0.95 for r in real_recalls),
            "search_vs_scan_at_largest_at_most_0_1": bool(
                (largest["query_ms"]["index_vs_scan_p50"] or 1) <= TARGETS["search_vs_exact_at_1m"]
            ),
            "whole_query_at_largest_vs_smallest_at_most_1_25": bool(
                whole_judged is not None and whole_judged <= TARGETS["query_at_1m_vs_10k"]
            ),
            "whole_query_at_largest_vs_smallest": {
                "in_turns_p50": whole_judged if in_turns else None,
                "apart_p50": rounded(whole_growth),
            },
            "store_search_at_largest_vs_smallest_at_most_1_25": bool(
                store_growth is not None and store_growth <= TARGETS["query_at_1m_vs_10k"]
            ),
            "peak_rss_at_most_2_5_gb": bool(
                largest["rss_mib"]["peak"] <= TARGETS["peak_rss_mib_at_1m"]
            ),
            "full_scrub_at_most_60_s": bool(
                largest["full_scrub"]["seconds"] <= TARGETS["full_scrub_s_at_1m"]
            ),
            "note": "a whole query is a text encoded by all-MiniLM-L6-v2 (in a process of "
            "its own, so the model is not in the store's RSS) then search_by_vector; the "
            "store's search is the same path without the model; the whole query's target is "
            "judged on queries in turns with a copy of the store at the smallest size (its "
            "log replayed), the same texts at the same moments",
        },
        "rss": {
            "peak_before_mib": rss_before,
            "peak_mib": max(p["rss_mib"]["peak"] for p in points),
        },
        "environment": environment(),
    }


def plot_scale(report: dict, path: Path) -> Path | None:
    """The curves as a PNG beside the JSON (matplotlib: the `plot` extra); None without it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    points = report["by_size"]
    sizes = [p["fragments"] for p in points]
    panels = [
        ("ingest (fragments/s)", [("store", [p["ingest"]["fragments_per_s"] for p in points])]),
        (
            "query (ms, p50)",
            [
                ("whole query, model included", [p["query_ms"]["whole_p50"] for p in points]),
                ("store's search", [p["query_ms"]["store_p50"] for p in points]),
                ("scan of every vector", [p["query_ms"]["scan_p50"] for p in points]),
            ],
        ),
        (
            "seconds",
            [
                ("rebuild (the store answers)", [p["rebuild"]["seconds"] for p in points]),
                ("rebuild, its graph whole", [p["rebuild"]["graph_whole_s"] for p in points]),
                ("full scrub", [p["full_scrub"]["seconds"] for p in points]),
            ],
        ),
        (
            "memory and disk",
            [
                ("peak RSS (MiB)", [p["rss_mib"]["peak"] for p in points]),
                ("disk per fragment (B)", [p["disk_bytes_per_fragment"]["all"] for p in points]),
            ],
        ),
    ]
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    for axis, (title, series) in zip(axes, panels):
        for label, values in series:
            axis.plot(sizes, values, marker="o", label=label)
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("fragments")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle("carma bench scale: one store grown, vectors given", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path

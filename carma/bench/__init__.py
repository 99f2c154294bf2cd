"""`carma bench`: CARMA against a bare baseline measured in the same run, reported as ratios.

    from carma.bench import BENCHMARKS
    report = BENCHMARKS["ingest"](workdir=Path(tmp), progress=print)

Every benchmark is `fn(*, n=None, workdir, progress=None) -> dict` (n None: its default size;
`workdir` an empty folder the caller provides and deletes; `progress` receives one-line status
messages). Its JSON-serialisable report holds the raw figures, the ratios of CARMA to the
baseline, the environment and a target with `met`. The machine may be noisy: the ratios, not
the raw figures, are what to compare across runs, and the two sides of each ratio are
interleaved so that they share the noise. Nothing here asserts on time.

One module per benchmark, each named by `carma bench NAME`:
- ingest       (real model, n=2000 texts of varied length): one Memory.add_many of them all
               against one bare model.encode of the same texts.
- query        (real model, n=10000 fragments, ~200 queries): Memory.search(q, k=10) against
               bare model.encode([q]) + faiss.IndexFlatIP.search(k=10) over the same vectors.
- overhead     (HashingEmbedder, n=100000): add_many in batches of 1000 against raw batched
               SQLite inserts of the same rows; Memory.rebuild() against a raw read and JSON
               decode of the log; peak RSS.
- heal         scrub and exact heal against raw file I/O of the same files.
- audit        verify against a raw read of the log.
- reconstruct  semantic reconstruction on real text with the real model, against the
               nearest neighbour's text copied.
- search       recall@5 of the semantic, keyword and hybrid modes on exact-token queries
               and on paraphrases (real model).
- serve        (HashingEmbedder, n=2000 fragments): 8 concurrent HTTP clients mixing writes
               and searches against one `carma serve` for a fixed time, with damage midway,
               against the same clients on the in-process API (the server extra).
- scale        (vectors given, n=1000000: one store grown to 10k, 100k, 1M): ingest, query
               against a scan of the same vectors, full scrub, heal, rebuild, memory and disk
               at each size; the approximate index's recall@10 on the real model's vectors
               at 10k and 100k. A PNG of the curves beside the JSON (the `plot` extra).
- peers        (real model's vectors given, n=100000: 10k and 100k): CARMA, Chroma, LanceDB
               and Qdrant's local mode, each in a process of its own (the `peers` extra; a
               peer not installed is skipped): ingest, query p50/p95, recall@10, disk, RSS.
- `bench ingest --database-url URL`: the same ingest on a PostgreSQL log beside SQLite.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from carma.bench.audit import bench_audit
from carma.bench.heal import bench_heal
from carma.bench.ingest import bench_ingest
from carma.bench.overhead import bench_overhead
from carma.bench.peers import bench_peers
from carma.bench.query import bench_query
from carma.bench.reconstruct import bench_reconstruct
from carma.bench.scale import bench_scale, plot_scale
from carma.bench.search import bench_search
from carma.bench.serve import bench_serve
from carma.bench.shared import bench_shared

#: Every benchmark by the name `carma bench NAME` gives it.
BENCHMARKS: dict[str, Callable[..., dict]] = {
    "ingest": bench_ingest,
    "query": bench_query,
    "overhead": bench_overhead,
    "heal": bench_heal,
    "audit": bench_audit,
    "reconstruct": bench_reconstruct,
    "search": bench_search,
    "serve": bench_serve,
    "scale": bench_scale,
    "peers": bench_peers,
}

#: Benchmarks that also draw their report: fn(report, png_path) -> the path, or None without
#: matplotlib.
FIGURES: dict[str, Callable[[dict, Path], Path | None]] = {"scale": plot_scale}

# `carma bench ingest --database-url URL`: the same figures on a PostgreSQL log beside SQLite.
SHARED_LOG_BENCHMARK = ("ingest-shared", bench_shared)

__all__ = ["BENCHMARKS", "FIGURES", "SHARED_LOG_BENCHMARK"]

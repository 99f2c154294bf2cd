"""Two floors under issue 29's write and rebuild targets, measured against their baselines in
the same run (the figures behind "Floors under the targets" in docs/benchmarks.md; a
diagnostic, not a `carma bench`):

    python bench-results/floors.py --out bench-results/floors.json
    python bench-results/floors.py log 100000      (or graph: one of the two)
    python bench-results/floors.py rebuild 100000 --out bench-results/floors-rebuild.json
    python bench-results/floors.py replay 20000 --out bench-results/floors-replay.json

`log N`: N writes of text (`add_many` in batches of 1,000, the HashingEmbedder: the model out
of the loop), with the time in the log's own write (`MemoryLog.write_many`: the events, their
sealed bodies, their insert and chain) and in the embedder taken apart; then raw batched
inserts of the very rows the log holds, 1,000 to a transaction, as `carma bench overhead`'s
baseline makes them, and a raw read of the log (`carma bench overhead`'s rebuild baseline).

`graph`: the all-MiniLM-L6-v2 vectors of 100,000 sentences of installed docstrings (and 200
held-out queries) added to HNSW graphs of several M (efConstruction 40, as the index builds
them, in adds of 500 as a rebuild's batches), the build timed and recall@10 taken against an
exact scan; the vectors are kept in /tmp/carma-floors-vectors.npy for a second run.

`rebuild N`: N writes (as `log`), then four rebuilds in turns, the graph built (the index's
threshold as it is) and left out (the threshold past N: the index stays flat), each between two
raw reads of the log: what the graph's share of a rebuild is, and what is left without it.

`replay N`: N writes (as `log`), then, three times in turns, each part of a replay that no
replay of this log can leave out, timed alone against `carma bench audit`'s baseline (every row
of the log read through plain sqlite3) in the same turn: each event's checksum checked and its
body unsealed (its key fetched, a batch at a time; the two sealed fields opened with AES-GCM;
nothing else decoded), and each live fragment's cache file made (a new file, written and
renamed into place, one file-system flush at the end, as the cache's writer makes them); then
the whole `Memory.replay`. What the target of 0.1 allows is the raw read's time times ten.

Both (the default): the graph's build is also given against the log's raw read of the same
run, as a rebuild's target is (100,000 writes make the 100,000 rows the graph's vectors are).
"""

import argparse
import json
import shutil
import sqlite3
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import faiss
import numpy as np
from carma.projections.index import GRAPH_EF_CONSTRUCTION

import carma
from carma.bench.common import environment, in_batches
from carma.bench.overhead import _raw_read
from carma.bench.scale import _recall
from carma.demo.corpus import corpus, installed
from carma.embedding import HashingEmbedder, SentenceTransformerEmbedder

VECTORS = Path("/tmp/carma-floors-vectors.npy")
STORED, QUERIES, K = 100_000, 200, 10


@contextmanager
def _store():
    """A new store in a folder of its own (removed after), the model out of the loop."""
    root = Path(tempfile.mkdtemp(prefix="carma-floors-"))
    try:
        yield root, carma.open(root / "home", embedder=HashingEmbedder(), database_url="")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _write(mem: carma.Memory, n: int) -> float:
    """n writes of text, `add_many` in batches of 1,000; their seconds."""
    started = time.perf_counter()
    for batch in in_batches(corpus(n), 1_000):
        mem.add_many(batch)
    return time.perf_counter() - started


def log_floor(n: int) -> dict:
    with _store() as (root, mem):
        spent = {"log": 0.0, "embed": 0.0}

        def timed(name, work):
            def run(*args, **kwargs):
                started = time.perf_counter()
                try:
                    return work(*args, **kwargs)
                finally:
                    spent[name] += time.perf_counter() - started

            return run

        mem.log.write_many = timed("log", mem.log.write_many)
        mem._embed = timed("embed", mem._embed)
        whole = _write(mem, n)
        mem.close()
        with sqlite3.connect(root / "home" / "events.sqlite") as log:
            rows = log.execute(
                "SELECT originator_id, originator_version, state FROM stored_events ORDER BY rowid"
            ).fetchall()
        raw = sqlite3.connect(root / "raw.sqlite", isolation_level=None)
        raw.execute("PRAGMA journal_mode=WAL")
        raw.execute("CREATE TABLE raw (id TEXT PRIMARY KEY, state BLOB)")
        started = time.perf_counter()
        for at in range(0, len(rows), 1_000):
            raw.execute("BEGIN")
            raw.executemany(
                "INSERT INTO raw (id, state) VALUES (?, ?)",
                [(f"{r[0]}:{r[1]}", r[2]) for r in rows[at : at + 1_000]],
            )
            raw.execute("COMMIT")
        raw_s = time.perf_counter() - started
        raw.close()
        raw_read_s, _ = _raw_read(root / "home" / "events.sqlite")
    return {
        "floor": "log",
        "writes": n,
        "events": len(rows),
        "add_many_s": round(whole, 2),
        "embedder_s": round(spent["embed"], 2),
        "log_write_many_s": round(spent["log"], 2),
        "raw_inserts_s": round(raw_s, 2),
        "ingest_ratio": round(raw_s / whole, 4),
        "ingest_ratio_log_alone": round(raw_s / spent["log"], 4),
        "raw_read_s": round(raw_read_s, 3),
    }


def rebuild_floor(n: int) -> dict:
    with _store() as (root, mem):
        _write(mem, n)
        threshold, runs = mem.index.approximate_above, []
        for graph in (True, False, True, False):
            mem.index.approximate_above = threshold if graph else n + 1
            before, _ = _raw_read(root / "home" / "events.sqlite")
            started = time.perf_counter()
            mem.rebuild()
            mem.wait_for_graph()  # (built behind the rebuild: its whole cost counted here)
            rebuild_s = time.perf_counter() - started
            after, _ = _raw_read(root / "home" / "events.sqlite")
            runs.append(
                {
                    "graph": mem.index.approximate,
                    "rebuild_s": round(rebuild_s, 2),
                    "raw_read_s": round((before + after) / 2, 3),
                    "rebuild_over_raw_read": round(rebuild_s / ((before + after) / 2), 1),
                }
            )
        mem.close()
    return {"floor": "rebuild", "writes": n, "threshold": threshold, "runs": runs}


def _raw_rows(db: Path) -> float:
    """`carma bench audit`'s baseline: every row of the log and its chain, read in log order."""
    from carma.bench.audit import _raw_read as audit_raw_read

    return audit_raw_read(db)[0]


def _unsealed_alone(mem: carma.Memory, db: Path) -> float:
    """Each event's checksum checked and its sealed body opened, nothing else decoded."""
    import base64

    from carma.domain.fragment import dashed_uuid

    from carma.log.mapper import _HEAD, _open_body, digest_holds

    keys = mem.log.mapper.keys
    started = time.perf_counter()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        after = 0
        while rows := conn.execute(
            "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events"
            " WHERE rowid > ? ORDER BY rowid LIMIT 500",
            (after,),
        ).fetchall():
            after = rows[-1][0]
            held = keys.keys_for([dashed_uuid(r[1]) for r in rows])
            for _, originator_id, version, topic, state in rows:
                uuid = dashed_uuid(originator_id)
                assert digest_holds(uuid, version, topic, state)
                payload = json.loads(state[_HEAD:])
                if "sealed" in payload:
                    _open_body(
                        held[uuid],
                        base64.b64decode(payload["sealed"]["_data_"]),
                        base64.b64decode(payload["sealed_embedding"]["_data_"]),
                    )
    finally:
        conn.close()
    return time.perf_counter() - started


def _cache_files_alone(mem: carma.Memory, folder: Path) -> float:
    """Each live fragment's cache file made anew (the bytes the cache holds), timed."""
    from carma.projections.files import write_batch

    cache = mem.home / "cache"
    files = [
        (str(path.relative_to(cache)), path.read_bytes())
        for path in sorted(cache.rglob("*"))
        if path.is_file() and not path.name.startswith(".")
    ]
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    started = time.perf_counter()
    write_batch(folder, [], files)
    return time.perf_counter() - started


def replay_floor(n: int) -> dict:
    with _store() as (root, mem):
        _write(mem, n)
        db = root / "home" / "events.sqlite"
        turns = []
        for turn in range(3):
            parts = {}
            raw = [_raw_rows(db)]
            parts["checksums_and_unsealing_s"] = _unsealed_alone(mem, db)
            raw.append(_raw_rows(db))
            parts["cache_files_s"] = _cache_files_alone(mem, root / "files")
            raw.append(_raw_rows(db))
            replica = root / f"replica-{turn}"
            started = time.perf_counter()
            mem.replay(into=replica).close()
            parts["whole_replay_s"] = time.perf_counter() - started
            raw.append(_raw_rows(db))
            shutil.rmtree(replica)
            raw_s = sum(raw) / len(raw)
            turns.append(
                {
                    "raw_read_s": round(raw_s, 4),
                    "target_allows_s": round(raw_s * 10, 3),
                    **{name: round(seconds, 3) for name, seconds in parts.items()},
                    "ratios_raw_over_part": {
                        name: round(raw_s / seconds, 4) for name, seconds in parts.items()
                    },
                }
            )
        events = mem.log.position()
        mem.close()
    return {"floor": "replay", "writes": n, "events": events, "turns": turns}


def graph_floor(neighbours: list[int]) -> dict:
    if VECTORS.exists():
        vectors = np.load(VECTORS)
    else:
        texts = installed(STORED + QUERIES)
        model = SentenceTransformerEmbedder()
        vectors = np.concatenate(
            [
                np.asarray(model.embed(texts[at : at + 2_000]), dtype=np.float32)
                for at in range(0, len(texts), 2_000)
            ]
        )
        np.save(VECTORS, vectors)
    stored, queries = vectors[:STORED], vectors[STORED : STORED + QUERIES]
    flat = faiss.IndexFlatIP(stored.shape[1])
    flat.add(stored)
    _, exact = flat.search(queries, K)
    by_m = {}
    for m in neighbours:
        graph = faiss.IndexHNSWFlat(stored.shape[1], m, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = GRAPH_EF_CONSTRUCTION
        started = time.perf_counter()
        for at in range(0, len(stored), 500):
            graph.add(stored[at : at + 500])
        build_s = time.perf_counter() - started
        recall = {}
        for ef in (64, 128):
            _, found = graph.search(queries, K, params=faiss.SearchParametersHNSW(efSearch=ef))
            recall[f"ef_search_{ef}"] = round(_recall(found.tolist(), exact.tolist()), 4)
        by_m[str(m)] = {"build_s": round(build_s, 2), "recall_at_10": recall}
    return {
        "floor": "graph",
        "vectors": len(stored),
        "queries": len(queries),
        "ef_construction": GRAPH_EF_CONSTRUCTION,
        "faiss_threads": faiss.omp_get_max_threads(),
        "by_neighbours": by_m,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "floor", nargs="?", choices=["both", "log", "graph", "rebuild", "replay"], default="both"
    )
    parser.add_argument("n", nargs="?", type=int, default=STORED)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report: dict = {}
    if args.floor in ("both", "log"):
        report["log"] = log_floor(args.n)
    if args.floor == "rebuild":
        report["rebuild"] = rebuild_floor(args.n)
    if args.floor == "replay":
        report["replay"] = replay_floor(args.n)
    if args.floor in ("both", "graph"):
        report["graph"] = graph_floor([32, 24, 16])
    if args.floor == "both":
        raw_read = report["log"]["raw_read_s"]
        report["graph_build_over_raw_read"] = {
            m: round(built["build_s"] / raw_read, 2)
            for m, built in report["graph"]["by_neighbours"].items()
        }
    report["environment"] = environment()
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()

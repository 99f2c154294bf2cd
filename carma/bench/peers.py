"""`carma bench peers`: the same vectors into CARMA and its peers (Chroma, LanceDB, Qdrant's
local mode), each store in a process of its own so that its memory is its own, at 10k and 100k:
ingest, query p50/p95, recall@10 against an exact scan of the same vectors, disk and peak RSS.

A peer whose package is not installed (`pip install 'carma[peers]'`) is skipped, and the report
says so. Every store takes its defaults, as a user would meet it; what those are (durability,
index) is in the report beside its figures, since they are not the same: CARMA commits each
batch to its log with an fsync and keeps every copy it heals from, the peers do not.

    python -m carma.bench.peers NAME DATA.npz ROOT   # one store's run, a JSON line on stdout
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from carma.bench.common import (
    Progress,
    environment,
    ms_percentile,
    ratio,
    rounded,
    say,
    tree_bytes,
)

PEER_SIZES = (10_000, 100_000)
BATCH = 1_000
QUERIES = 200
K = 10

#: Each store by its name in the report, with the package it needs and its defaults as used.
PEERS: dict[str, dict[str, str]] = {
    "carma": {
        "package": "carma",
        "defaults": "SQLite log, fsync at each batch's commit (synchronous=FULL); exact index "
        "up to 50,000 fragments, HNSW (M=32, efSearch=128) above",
    },
    "chroma": {
        "package": "chromadb",
        "defaults": "PersistentClient, HNSW (its defaults), cosine space",
    },
    "lancedb": {
        "package": "lancedb",
        "defaults": "a table appended in batches, no vector index made (a flat scan), cosine",
    },
    "qdrant": {
        "package": "qdrant_client",
        "defaults": "QdrantClient(path=...) local mode (an exact scan in NumPy), cosine",
    },
}


class _Carma:
    def __init__(self, root: Path, dimension: int):
        import carma

        self.mem = carma.open(root, dimension=dimension, database_url="")

    def add(self, ids: list[int], vectors: np.ndarray, texts: list[str]) -> None:
        self.mem.add_many(
            {"id": f"v{i}", "text": t, "embedding": v} for i, t, v in zip(ids, texts, vectors)
        )

    def search(self, vector: np.ndarray, k: int) -> list[int]:
        return [int(hit.id[1:]) for hit in self.mem.search_by_vector(vector, k=k)]

    def close(self) -> None:
        self.mem.close()


class _Chroma:
    def __init__(self, root: Path, dimension: int):
        import chromadb

        self.client = chromadb.PersistentClient(path=str(root))
        self.collection = self.client.create_collection(
            "bench", configuration={"hnsw": {"space": "cosine"}}
        )

    def add(self, ids: list[int], vectors: np.ndarray, texts: list[str]) -> None:
        self.collection.add(ids=[str(i) for i in ids], embeddings=vectors, documents=texts)

    def search(self, vector: np.ndarray, k: int) -> list[int]:
        found = self.collection.query(query_embeddings=[vector], n_results=k, include=[])
        return [int(i) for i in found["ids"][0]]

    def close(self) -> None:
        pass


class _Lance:
    def __init__(self, root: Path, dimension: int):
        import lancedb

        self.db = lancedb.connect(str(root))
        self.dimension = dimension
        self.table = None

    def add(self, ids: list[int], vectors: np.ndarray, texts: list[str]) -> None:
        import pyarrow as pa

        batch = pa.table(
            {
                "id": pa.array(ids, type=pa.int64()),
                "vector": pa.FixedSizeListArray.from_arrays(
                    pa.array(vectors.reshape(-1), type=pa.float32()), self.dimension
                ),
                "text": pa.array(texts),
            }
        )
        if self.table is None:
            self.table = self.db.create_table("bench", data=batch)
        else:
            self.table.add(batch)

    def search(self, vector: np.ndarray, k: int) -> list[int]:
        query = self.table.search(vector).distance_type("cosine").limit(k).select(["id"])
        return [int(i) for i in query.to_arrow()["id"].to_pylist()]

    def close(self) -> None:
        pass


class _Qdrant:
    def __init__(self, root: Path, dimension: int):
        from qdrant_client import QdrantClient, models

        self.models = models
        self.client = QdrantClient(path=str(root))
        self.client.create_collection(
            "bench",
            vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE),
        )

    def add(self, ids: list[int], vectors: np.ndarray, texts: list[str]) -> None:
        self.client.upsert(
            "bench",
            points=[
                self.models.PointStruct(id=i, vector=v.tolist(), payload={"text": t})
                for i, v, t in zip(ids, vectors, texts)
            ],
        )

    def search(self, vector: np.ndarray, k: int) -> list[int]:
        found = self.client.query_points("bench", query=vector.tolist(), limit=k)
        return [int(point.id) for point in found.points]

    def close(self) -> None:
        self.client.close()


STORES = {"carma": _Carma, "chroma": _Chroma, "lancedb": _Lance, "qdrant": _Qdrant}


def _peak_rss_mib() -> float:
    """This process's peak resident memory. Not getrusage's ru_maxrss: Linux keeps it across
    exec, so a child would report its parent's peak (the model's, here)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run_one(name: str, data: Path, root: Path) -> dict[str, Any]:
    """One store's run in this process: ingest every stored vector in batches, then the
    queries; the answers are returned for the parent to score against the exact ones."""
    loaded = np.load(data)
    stored, queries = loaded["stored"], loaded["queries"]
    texts = json.loads(Path(str(data) + ".texts.json").read_text())
    rss_loaded = _peak_rss_mib()
    root.mkdir(parents=True, exist_ok=True)
    store = STORES[name](root, stored.shape[1])
    ingest_s = 0.0
    for start in range(0, len(stored), BATCH):
        stop = min(start + BATCH, len(stored))
        began = time.perf_counter()
        store.add(list(range(start, stop)), stored[start:stop], texts[start:stop])
        ingest_s += time.perf_counter() - began
    for vector in queries[:5]:  # warm the search path
        store.search(vector, K)
    seconds, answers = [], []
    for vector in queries:
        began = time.perf_counter()
        answers.append(store.search(vector, K))
        seconds.append(time.perf_counter() - began)
    store.close()
    return {
        "ingest_s": ingest_s,
        "query_seconds": seconds,
        "answers": answers,
        "disk_bytes": tree_bytes(root),
        "rss_mib": {
            "after_loading_the_vectors": rss_loaded,
            "peak": _peak_rss_mib(),
            "store": round(_peak_rss_mib() - rss_loaded, 1),
        },
    }


def _vectors(top: int, progress: Progress) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from carma.demo.corpus import installed
    from carma.embedding import SentenceTransformerEmbedder

    texts = installed(top + QUERIES)
    if len(texts) < top + QUERIES:
        raise ValueError(
            f"the installed docstrings hold {len(texts)} sentences: at most "
            f"{len(texts) - QUERIES} fragments"
        )
    model = SentenceTransformerEmbedder()
    parts = []
    for i in range(0, top + QUERIES, 2_000):
        parts.append(np.asarray(model.embed(texts[i : i + 2_000]), dtype=np.float32))
        say(progress, f"peers: encoded {min(i + 2_000, top + QUERIES)}/{top + QUERIES}")
    vectors = np.concatenate(parts)
    return vectors[:top], vectors[top : top + QUERIES], texts[:top]


def _exact(stored: np.ndarray, queries: np.ndarray) -> list[set[int]]:
    scores = queries @ stored.T
    top = np.argpartition(-scores, K - 1, axis=1)[:, :K]
    return [set(int(i) for i in row) for row in top]


def _one_in_a_process(name: str, data: Path, root: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "carma.bench.peers", name, str(data), str(root)],
        capture_output=True,
        text=True,
        env=os.environ | {"HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"},
    )
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _table(results: dict[str, dict[str, Any]], sizes: list[int]) -> list[str]:
    lines = [
        "| store | size | ingest /s | query p50 / p95 ms | recall@10 | disk B/fragment "
        "| peak RSS MiB (the store's) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, by_size in results.items():
        for size in sizes:
            r = by_size.get(str(size))
            if r is None or "error" in r:
                lines.append(f"| {name} | {size} | {r and r.get('error') or 'skipped'} |||||")
                continue
            lines.append(
                f"| {name} | {size} | {r['ingest_per_s']:,.0f} | {r['query_ms']['p50']:.2f} / "
                f"{r['query_ms']['p95']:.2f} | {r['recall_at_10']:.3f} | "
                f"{r['disk_bytes_per_fragment']:,.0f} | {r['rss_mib']['peak']:,.0f} "
                f"({r['rss_mib']['store']:,.0f}) |"
            )
    return lines


def bench_peers(*, n: int | None = None, workdir: Path, progress: Progress = None) -> dict:
    """CARMA and each installed peer at 10k and 100k (n: the largest), the real model's
    vectors of installed docstrings given to each."""
    top = PEER_SIZES[-1] if n is None else n
    if top < 1:
        raise ValueError("n must be at least 1")
    sizes = [s for s in PEER_SIZES if s < top] + [top]
    installed_peers = [p for p in PEERS if importlib.util.find_spec(PEERS[p]["package"])]
    skipped = [p for p in PEERS if p not in installed_peers]
    for name in skipped:
        say(progress, f"peers: {name} is not installed ({PEERS[name]['package']}): skipped")
    say(progress, f"peers: the real model's vectors of {top + QUERIES} installed sentences")
    stored, queries, texts = _vectors(top, progress)
    results: dict[str, dict[str, Any]] = {name: {} for name in installed_peers}
    for size in sizes:
        data = Path(workdir) / f"vectors-{size}.npz"
        np.savez(data, stored=stored[:size], queries=queries)
        Path(str(data) + ".texts.json").write_text(json.dumps(texts[:size]))
        exact = _exact(stored[:size], queries)
        for name in installed_peers:
            say(progress, f"peers: {name} at {size}")
            run = _one_in_a_process(name, data, Path(workdir) / f"{name}-{size}")
            if "error" in run:
                say(progress, f"peers: {name} at {size} failed: {run['error']}")
                results[name][str(size)] = run
                continue
            recall = np.mean([len(set(a) & e) / K for a, e in zip(run["answers"], exact)])
            results[name][str(size)] = {
                "ingest_s": rounded(run["ingest_s"]),
                "ingest_per_s": rounded(size / run["ingest_s"], 1),
                "query_ms": {
                    "p50": rounded(ms_percentile(run["query_seconds"], 50)),
                    "p95": rounded(ms_percentile(run["query_seconds"], 95)),
                },
                "recall_at_10": rounded(float(recall)),
                "disk_bytes_per_fragment": round(run["disk_bytes"] / size, 1),
                "rss_mib": run["rss_mib"],
            }
    ratios: dict[str, dict[str, Any]] = {}
    for name in installed_peers:
        if name == "carma":
            continue
        ratios[name] = {}
        for size in sizes:
            ours, theirs = results["carma"].get(str(size), {}), results[name].get(str(size), {})
            if "ingest_per_s" in ours and "ingest_per_s" in theirs:
                ratios[name][str(size)] = {
                    "ingest_carma_vs_peer": rounded(
                        ratio(ours["ingest_per_s"], theirs["ingest_per_s"])
                    ),
                    "query_p50_carma_vs_peer": rounded(
                        ratio(ours["query_ms"]["p50"], theirs["query_ms"]["p50"])
                    ),
                    "recall_carma_minus_peer": rounded(
                        ours["recall_at_10"] - theirs["recall_at_10"]
                    ),
                }
    table = _table(results, sizes)
    for line in table:
        say(progress, line)
    return {
        "benchmark": "peers",
        "sizes": sizes,
        "method": (
            "all-MiniLM-L6-v2 embeddings of sentences from the docstrings of the standard "
            "library and the installed packages, the same vectors and texts given to each "
            f"store in batches of {BATCH}, each store in a fresh folder and a process of its "
            f"own; {QUERIES} held-out query vectors, k={K}, recall against an exact scan of "
            "the same vectors; ingest time is the stores' own (the model is out of the loop); "
            "peak RSS is the store's process (VmHWM), which also imports carma and loads the "
            "vectors and texts; the store's share is the peak less the RSS after that loading."
        ),
        "stores": {name: PEERS[name]["defaults"] for name in installed_peers},
        "skipped": {name: f"not installed ({PEERS[name]['package']})" for name in skipped},
        "by_store": results,
        "carma_against_each": ratios,
        "table": table,
        "environment": environment(),
    }


if __name__ == "__main__":
    peer, data_path, root_path = sys.argv[1:4]
    print(json.dumps(run_one(peer, Path(data_path), Path(root_path))))

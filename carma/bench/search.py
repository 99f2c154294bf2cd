"""`carma bench search` (real model, n=1500 fragments): recall@5 of each search mode, on
exact-token queries and on paraphrased questions, in one store.

The corpus is the standard library's API reference (carma.demo.corpus.api_reference): each
fragment is a function's docstring's first sentence with its qualified name after it, as an
order number sits in a note (`Return a random byte string containing *nbytes* bytes.
(secrets.token_bytes)`). Two kinds of query, each with one right answer:
- exact token: the function's bare name (`token_bytes`), as a user types an order number or an
  error code: letters a vector only half captures;
- paraphrase: another sentence of the same docstring, lower case, which the fragment does not
  hold (`if nbytes is none or not supplied, a reasonable default is used.`): the same subject
  in other words, which a keyword search only half captures.
Targets: hybrid above semantic on exact tokens, and no worse than semantic on paraphrases by
more than PARAPHRASE_SLACK (the noise of 300 queries).
"""

from __future__ import annotations

import time
from pathlib import Path

import carma
from carma.bench.common import Progress, environment, peak_rss_mib, rounded, rss, say
from carma.demo.corpus import api_reference
from carma.embedding import SentenceTransformerEmbedder
from carma.search import MODES

N = 1_500
QUERIES = 300  # of each kind
K = 5
PARAPHRASE_SLACK = 0.02


def bench_search(*, n: int | None = None, workdir: Path, progress: Progress = None) -> dict:
    n = N if n is None else n
    if n < 2:
        raise ValueError("n must be at least 2")
    rss_before = peak_rss_mib()
    reference = api_reference(n)
    n = len(reference)
    described = [entry for entry in reference if entry[2] is not None]
    step = max(1, len(described) // min(QUERIES, len(described)))
    asked = described[::step][:QUERIES]
    queries = {
        "exact_token": [(name.rsplit(".", 1)[-1], name) for name, _, _ in asked],
        "paraphrase": [(more.lower(), name) for name, _, more in asked],
    }
    embedder = SentenceTransformerEmbedder()
    started = time.perf_counter()
    with carma.open(workdir / "carma", embedder=embedder, database_url="") as mem:
        say(progress, f"search: storing {n} functions' summaries with the real model")
        mem.add_many(
            [{"text": f"{summary} ({name})", "id": name} for name, summary, _ in reference]
        )
        build_s = time.perf_counter() - started
        recall: dict[str, dict[str, float]] = {}
        seconds: dict[str, dict[str, float]] = {}
        for kind, pairs in queries.items():
            recall[kind], seconds[kind] = {}, {}
            for mode in MODES:
                t0 = time.perf_counter()
                found = sum(
                    answer in {h.id for h in mem.search(query, k=K, mode=mode)}
                    for query, answer in pairs
                )
                seconds[kind][mode] = rounded((time.perf_counter() - t0) / len(pairs) * 1000, 2)
                recall[kind][mode] = rounded(found / len(pairs))
                say(progress, f"search: {kind} {mode}: recall@{K} {recall[kind][mode]}")
    exact, para = recall["exact_token"], recall["paraphrase"]
    met_exact = exact["hybrid"] > exact["semantic"]
    met_para = para["hybrid"] >= para["semantic"] - PARAPHRASE_SLACK
    return {
        "benchmark": "search",
        "n": n,
        "queries_per_kind": len(asked),
        "k": K,
        "embedder": embedder.name,
        "method": (
            "Fragments: stdlib functions' first docstring sentences, each followed by the "
            "function's qualified name. Exact-token queries: the bare function name; "
            "paraphrases: another sentence of the same docstring, lower-cased (not in the "
            "fragment). recall@5: the share of queries whose one right fragment is in the top "
            "5. Hybrid fuses semantic and keyword rankings by reciprocal rank (k=60)."
        ),
        "recall_at_5": recall,
        "ms_per_query": seconds,
        "examples": {kind: pairs[:3] for kind, pairs in queries.items()},
        "build_s": rounded(build_s),
        "target": {
            "hybrid_beats_semantic_on_exact_tokens": {
                "hybrid": exact["hybrid"],
                "semantic": exact["semantic"],
                "met": bool(met_exact),
            },
            "hybrid_loses_nothing_on_paraphrases": {
                "description": f"hybrid >= semantic - {PARAPHRASE_SLACK}",
                "hybrid": para["hybrid"],
                "semantic": para["semantic"],
                "met": bool(met_para),
            },
        },
        "rss": rss(rss_before),
        "environment": environment(),
    }

"""Times three rebuilds of one store of N fragments written with the vectors given (as
`carma bench scale` writes them): the figures of "The rebuild in place" in docs/benchmarks.md
(a quick comparison between two versions of the code, not a `carma bench`: no baseline).

    python bench-results/time-rebuild.py 20000
"""

import sys
import tempfile
import time
from pathlib import Path

import carma
from carma.bench.scale import _text
from carma.demo.corpus import corpus
from carma.embedding import HashingEmbedder


def main(count: int) -> None:
    embedder, base = HashingEmbedder(), corpus(2_000)
    with tempfile.TemporaryDirectory() as root:
        mem = carma.open(
            Path(root) / "home",
            dimension=embedder.dimension,
            database_url="",
            approximate_above=50_000,
        )
        for start in range(0, count, 1_000):
            texts = [_text(base, i) for i in range(start, start + 1_000)]
            vectors = embedder.embed(texts)
            mem.add_many([{"text": t, "embedding": v} for t, v in zip(texts, vectors)])
        seconds = []
        for _ in range(3):
            started = time.perf_counter()
            mem.rebuild()
            seconds.append(round(time.perf_counter() - started, 2))
        print(f"three rebuilds of {count}: {seconds} s")
        mem.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)

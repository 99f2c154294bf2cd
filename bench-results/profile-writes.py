"""cProfile of N writes with the vectors given (`add_many` in batches of 1,000, as
`carma bench scale` writes), then of a rebuild of the same store: the figures behind "Where the
time goes" in docs/benchmarks.md (a profile, not a `carma bench`: cProfile slows both sides).
With --time-rebuilds: no profile, three rebuilds of the store timed instead (a quick comparison
of two versions of the code; no baseline, so not a `carma bench` either).

    python bench-results/profile-writes.py 50000
    python bench-results/profile-writes.py 20000 --time-rebuilds
"""

import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path

import carma
from carma.bench.scale import _text
from carma.demo.corpus import corpus
from carma.embedding import HashingEmbedder


def profiled(label: str, work) -> None:
    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.enable()
    work()
    profile.disable()
    print(f"{label}: {time.perf_counter() - started:.1f} s")
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(25)
    print(out.getvalue())


def main(count: int, time_rebuilds: bool) -> None:
    embedder, base = HashingEmbedder(), corpus(2_000)
    with tempfile.TemporaryDirectory() as root:
        mem = carma.open(
            Path(root) / "home",
            dimension=embedder.dimension,
            database_url="",
            approximate_above=50_000,
        )
        batches = []
        for start in range(0, count, 1_000):
            texts = [_text(base, i) for i in range(start, start + 1_000)]
            vectors = embedder.embed(texts)
            batches.append([{"text": t, "embedding": v} for t, v in zip(texts, vectors)])

        def write() -> None:
            for items in batches:
                mem.add_many(items)

        if time_rebuilds:
            write()
            seconds = []
            for _ in range(3):
                started = time.perf_counter()
                mem.rebuild()
                seconds.append(round(time.perf_counter() - started, 2))
            print(f"three rebuilds of {count}: {seconds} s")
        else:
            profiled(f"{count} writes", write)
            profiled(f"a rebuild of {count}", mem.rebuild)
        mem.close()


if __name__ == "__main__":
    numbers = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(int(numbers[0]) if numbers else 50_000, "--time-rebuilds" in sys.argv[1:])

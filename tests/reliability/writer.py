"""A writer for the crash tests: acknowledges each write on stdout only after it returned.

    python -m tests.reliability.writer HOME MODE SEED [BATCHES]
MODE: write (batches of writes), dream (writes, damage, dream cycles), rebuild (writes, then
rebuilds). Lines: "begin ID..." before a batch, "ack ID..." after it was recorded,
"start dream|rebuild" before one.
"""

import random
import sys

import carma
from carma.embedding import HashingEmbedder

DIMENSION = 32


def text_for(key: str) -> str:
    return f"fragment {key} remembers the tide table of harbour {key[::-1]}"


def main(home: str, mode: str, seed: int, batches: int | None = None) -> None:
    rng = random.Random(seed)
    mem = carma.open(home, embedder=HashingEmbedder(dimension=DIMENSION))
    n = 0
    for _ in iter(int, 1) if batches is None else range(batches):
        batch = [f"s{seed}-{n + i}" for i in range(rng.randint(1, 8))]
        n += len(batch)
        print("begin", *batch, flush=True)
        mem.add_many([{"text": text_for(k), "id": k} for k in batch])
        print("ack", *batch, flush=True)
        if mode == "dream" and n % 3 == 0:
            for path in mem.cache.files()[:: rng.randint(2, 5)]:
                path.unlink(missing_ok=True)
            print("start dream", flush=True)
            mem.dream()
        elif mode == "rebuild" and n > 60:
            print("start rebuild", flush=True)
            mem.rebuild()
    mem.close()


if __name__ == "__main__":
    main(
        sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else None
    )

"""A CARMA process on a shared PostgreSQL log, for the tests of many processes on one log.

    python -m tests.postgres.worker URL HOME write SEED BATCHES
    python -m tests.postgres.worker URL HOME dream CYCLES

write: batches of 1-8 fragments; after each is acknowledged, prints
    "ack <wall clock seconds> <log head after it> <ids...>"
dream: runs dream cycles one after another; prints each cycle's report as a JSON line.
"""

import json
import random
import sys
import time

import carma
from carma.embedding import HashingEmbedder

DIMENSION = 32


def text_for(key: str) -> str:
    return f"fragment {key} remembers the tide table of harbour {key[::-1]}"


def main(url: str, home: str, mode: str, *args: str) -> None:
    mem = carma.open(home, embedder=HashingEmbedder(dimension=DIMENSION), database_url=url)
    try:
        if mode == "write":
            seed, batches = int(args[0]), int(args[1])
            rng = random.Random(seed)
            n = 0
            for _ in range(batches):
                batch = [f"w{seed}-{n + i}" for i in range(rng.randint(1, 8))]
                n += len(batch)
                mem.add_many([{"text": text_for(k), "id": k} for k in batch])
                print("ack", repr(time.time()), mem.log.position(), *batch, flush=True)
        elif mode == "dream":
            for _ in range(int(args[0])):
                print(json.dumps(mem.dream(), default=str), flush=True)
        else:
            raise SystemExit(f"unknown mode {mode}")
    finally:
        mem.close()


if __name__ == "__main__":
    main(*sys.argv[1:])

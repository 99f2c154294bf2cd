"""cProfile of 2,000 writes (the hashing embedder, batches of 64, as `carma bench ingest
--database-url` writes them) on SQLite and on PostgreSQL: the waits on the server behind
"Measured" in docs/scale-out.md (a profile, not a `carma bench`).

    eval "$(.ci/postgres start)"
    python bench-results/profile-postgres-writes.py "$CARMA_TEST_DATABASE_URL"
"""

import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

import carma
from carma.demo.corpus import corpus
from carma.embedding import HashingEmbedder


def main(url: str) -> None:
    embedder = HashingEmbedder(384)
    texts = [f"{text} ({i})" for i, text in enumerate(corpus(2_000))]
    batches = [texts[i : i + 64] for i in range(0, len(texts), 64)]
    schema = f"?schema=profile_{os.getpid()}"  # (left in the database: a throwaway server's)
    for label, database_url in (("sqlite", ""), ("postgres", url + schema)):
        with tempfile.TemporaryDirectory() as root:
            mem = carma.open(Path(root) / "home", embedder=embedder, database_url=database_url)
            profile = cProfile.Profile()
            started = time.perf_counter()
            profile.enable()
            for batch in batches:
                mem.add_many(batch)
            profile.disable()
            print(f"{label}: {len(texts) / (time.perf_counter() - started):.0f} texts/s")
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(15)
            print(out.getvalue())
            mem.close()


if __name__ == "__main__":
    main(sys.argv[1])

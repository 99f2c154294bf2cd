"""`carma bench heal`: scrub and exact heal against raw file I/O of the same files, same run.

- scrub: Scrubber.scrub() over an intact store vs reading and sha256-hashing the same cache
  files raw (target: at least 0.7 of the raw throughput);
- heal: with 30% of the cache deleted, the healer's repairs vs writing the same files raw
  with the same durability (temp file + rename, one syncfs per batch of 256; target: at
  least 0.5 of the raw throughput), the raw writes measured before and after the heal. The
  index file is saved before the damage, so that the heal repairs the cache files alone. The
  whole dream cycle (scan, record, heal) is reported too;
- a dream cycle after deleting 5 cache files, in seconds, next to the prototype's 0.07 s
  (whose rebuilt files were empty stubs).
Sizes: 10,000 and 100,000 fragments by default (HashingEmbedder: the model plays no part).
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

import carma
from carma.benchmarking import Progress, environment, peak_rss_mib, ratio, rss, say
from carma.corpus import corpus
from carma.embedding import HashingEmbedder
from projections.cache import flush_file_system

SIZES = (10_000, 100_000)
DELETE_SHARE = 0.3
WRITE_BATCH = 256  # the healer's batch size (Healer.batch_size)
SCRUB_TARGET = 0.7
HEAL_TARGET = 0.5
PROTOTYPE_5_FILES_S = 0.07


def _raw_read_and_hash(paths: list[Path]) -> float:
    started = time.perf_counter()
    for path in paths:
        hashlib.sha256(path.read_bytes()).hexdigest()
    return time.perf_counter() - started


def _raw_write(files: list[tuple[Path, bytes]]) -> float:
    started = time.perf_counter()
    for start in range(0, len(files), WRITE_BATCH):
        for path, data in files[start : start + WRITE_BATCH]:
            path.parent.mkdir(exist_ok=True)
            tmp = path.parent / f".tmp-{path.name}"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        flush_file_system(files[0][0].parent.parent)
    return time.perf_counter() - started


def _one_size(n: int, workdir: Path, progress: Progress) -> dict[str, Any]:
    home = workdir / f"store-{n}"
    mem = carma.open(home, embedder=HashingEmbedder(), database_url="")
    try:
        texts = corpus(n)
        started = time.perf_counter()
        for start in range(0, n, 2_000):
            mem.add_many(texts[start : start + 2_000])
            say(progress, f"heal[{n}]: built {min(start + 2_000, n)}/{n}")
        build_s = time.perf_counter() - started
        with mem._lock:
            # The index file as a running store keeps it (saved on close and by repairs):
            # the heal measured below then repairs the cache files alone, as the raw
            # baseline writes them alone.
            mem.index.save()
        paths = mem.cache.files()

        # Scrub vs raw read + hash, baseline on both sides of the measured scrub.
        raw_a = _raw_read_and_hash(paths)
        started = time.perf_counter()
        clean = mem.dreamer.scrubber.scrub()
        scrub_s = time.perf_counter() - started
        raw_b = _raw_read_and_hash(paths)
        raw_scrub_s = (raw_a + raw_b) / 2
        assert not clean.findings, "the store must be intact before damage"

        # 30% of the cache deleted: heal vs raw writes of the same bytes.
        rng = random.Random(n)
        victims = rng.sample(paths, round(len(paths) * DELETE_SHARE))
        contents = [(p, p.read_bytes()) for p in victims]
        raw_dir = workdir / f"raw-{n}"
        raw_files = [(raw_dir / p.parent.name / p.name, data) for p, data in contents]
        raw_dir.mkdir()
        raw_write_a = _raw_write(raw_files)  # baseline on both sides of the measured heal
        for path in victims:
            path.unlink()
        started = time.perf_counter()
        scrub = mem.dreamer.scrub()
        found_s = time.perf_counter() - started
        started = time.perf_counter()
        repaired = mem.dreamer.heal()
        heal_s = time.perf_counter() - started
        exact = all(p.read_bytes() == data for p, data in contents)
        shutil.rmtree(raw_dir)
        raw_dir.mkdir()
        raw_write_s = (raw_write_a + _raw_write(raw_files)) / 2

        # The prototype's figure: 5 files rebuilt.
        for path in rng.sample(mem.cache.files(), 5):
            path.unlink()
        cycle = mem.dream()
        count = len(victims)
        return {
            "n": n, "build_s": round(build_s, 2), "cache_files": len(paths),
            "scrub": {"files_per_s": round(len(paths) / scrub_s, 1),
                      "raw_read_hash_files_per_s": round(len(paths) / raw_scrub_s, 1),
                      "ratio": ratio(raw_scrub_s, scrub_s), "target": SCRUB_TARGET,
                      "met": raw_scrub_s / scrub_s >= SCRUB_TARGET},
            "heal": {"deleted": count, "repaired": repaired, "exact": exact,
                     "files_per_s": round(count / heal_s, 1),
                     "raw_write_files_per_s": round(count / raw_write_s, 1),
                     "ratio": ratio(raw_write_s, heal_s), "target": HEAL_TARGET,
                     "met": raw_write_s / heal_s >= HEAL_TARGET,
                     "scrub_and_record_s": round(found_s, 3), "heal_s": round(heal_s, 3),
                     "found": scrub["found"]},
            "five_files": {"dream_cycle_s": cycle["seconds"]["total"],
                           "repaired": cycle["repaired"],
                           "prototype_s": PROTOTYPE_5_FILES_S,
                           "health_after": cycle["health_after"]},
        }
    finally:
        mem.close()


def bench_heal(*, n: int | None = None, workdir: Path, progress: Progress = None) -> dict:
    before = peak_rss_mib()
    sizes = (n,) if n else SIZES
    results = [_one_size(size, workdir, progress) for size in sizes]
    return {
        "benchmark": "heal",
        "method": __doc__,
        "sizes": results,
        "target": {"scrub_ratio_at_least": SCRUB_TARGET, "heal_ratio_at_least": HEAL_TARGET,
                   "met": all(r["scrub"]["met"] and r["heal"]["met"] for r in results)},
        "rss": rss(before),
        "environment": environment(),
    }

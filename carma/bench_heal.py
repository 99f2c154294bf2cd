"""`carma bench heal`: scrub and exact heal against raw file I/O of the same files, same run.

- scrub: a dream cycle's scrub over an intact store (every cache file and index vector, the
  events appended since the last scrub and a rolling slice of the older ones' checksums) vs
  reading and sha256-hashing the same cache files raw, read as the scrub reads them (one
  os.read per file, the fastest way Python has; target: at least 0.7 of the raw
  throughput); a deep scrub, which reads every event's checksum as well, is reported beside
  it against the same baseline;
- heal: with 30% of the cache deleted, the healer's repairs vs writing the same files raw
  with the same durability (temp file + rename, one syncfs per batch of 256; target: at
  least 0.5 of the raw throughput) to the same paths after the same deletion, just before
  and just after the heal. The index file is saved before the damage, so that the heal
  repairs the cache files alone. The whole dream cycle (scan, record, heal) is reported too;
- a dream cycle after deleting 5 cache files, in seconds, next to the prototype's 0.07 s
  (whose rebuilt files were empty stubs).
Sizes: 10,000 and 100,000 fragments by default (HashingEmbedder: the model plays no part).
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from pathlib import Path
from typing import Any

import carma
from carma.benchmarking import Progress, environment, peak_rss_mib, ratio, rss, say
from carma.corpus import corpus
from carma.embedding import HashingEmbedder
from healing.scrubber import read_whole
from projections.cache import flush_file_system

SIZES = (10_000, 100_000)
DELETE_SHARE = 0.3
WRITE_BATCH = 256  # the healer's batch size (Healer.batch_size)
SCRUB_TARGET = 0.7
HEAL_TARGET = 0.5
PROTOTYPE_5_FILES_S = 0.07


def _raw_read_and_hash(paths: list[Path]) -> float:
    names = [str(p) for p in paths]
    started = time.perf_counter()
    for name in names:
        hashlib.sha256(read_whole(name)).hexdigest()
    return time.perf_counter() - started


def _delete(paths: list[Path]) -> None:
    """Delete these files and let the deletion settle (commit it), so that no flush timed
    afterwards pays for it."""
    for path in paths:
        path.unlink()
    flush_file_system(paths[0].parent.parent)


def _raw_restore(files: list[tuple[Path, bytes]]) -> float:
    """Delete these files, then time writing the same bytes back raw."""
    _delete([path for path, _ in files])
    return _raw_write(files)


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

        # Scrub vs raw read + hash, baseline on both sides of each measured scrub. The deep
        # one first: a store never scrubbed reads its whole log, and keeps its place in it.
        scrubber = mem.dreamer.scrubber
        raw_a = _raw_read_and_hash(paths)
        started = time.perf_counter()
        deep = scrubber.scrub(deep=True)
        deep_s = time.perf_counter() - started
        scrubber.done(deep)
        raw_b = _raw_read_and_hash(paths)
        started = time.perf_counter()
        clean = scrubber.scrub()
        scrub_s = time.perf_counter() - started
        scrubber.done(clean)
        raw_c = _raw_read_and_hash(paths)
        raw_deep_s, raw_scrub_s = (raw_a + raw_b) / 2, (raw_b + raw_c) / 2
        assert not clean.findings and not deep.findings, "the store must be intact"

        # 30% of the cache deleted: heal vs raw writes of the same bytes to the same paths,
        # each after the same deletion has settled, just before and just after the heal (the
        # raw writes leave the cache as it was). Where files were just deleted, creating one
        # costs this ext4 ~20x more (~300 µs against ~15 µs) until the directory fills
        # again: raw writes into fresh directories would have measured that, not the heal.
        rng = random.Random(n)
        victims = rng.sample(paths, round(len(paths) * DELETE_SHARE))
        contents = [(p, p.read_bytes()) for p in victims]
        raw_write_a = _raw_restore(contents)  # the store's own files, written back raw
        _delete(victims)
        started = time.perf_counter()
        scrub = mem.dreamer.scrub()
        found_s = time.perf_counter() - started
        started = time.perf_counter()
        repaired = mem.dreamer.heal()
        heal_s = time.perf_counter() - started
        exact = all(p.read_bytes() == data for p, data in contents)
        raw_write_b = _raw_restore(contents)
        raw_write_s = (raw_write_a + raw_write_b) / 2

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
                      "met": raw_scrub_s / scrub_s >= SCRUB_TARGET,
                      "log_positions_read": clean.checked["log_events"]},
            "deep_scrub": {"files_per_s": round(len(paths) / deep_s, 1),
                           "raw_read_hash_files_per_s": round(len(paths) / raw_deep_s, 1),
                           "ratio": ratio(raw_deep_s, deep_s),
                           "log_positions_read": deep.checked["log_events"]},
            "heal": {"deleted": count, "repaired": repaired, "exact": exact,
                     "files_per_s": round(count / heal_s, 1),
                     "raw_write_files_per_s": round(count / raw_write_s, 1),
                     "ratio": ratio(raw_write_s, heal_s), "target": HEAL_TARGET,
                     "met": raw_write_s / heal_s >= HEAL_TARGET,
                     "raw_write_s": [round(raw_write_a, 3), round(raw_write_b, 3)],
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

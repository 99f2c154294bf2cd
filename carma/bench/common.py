"""What every `carma bench` benchmark shares: progress lines, the machine it ran on, and
its memory, so that each report says where its figures come from."""

from __future__ import annotations

import os
import platform
import resource
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

import carma
from carma.embedding import SentenceTransformerEmbedder

Progress = Callable[[str], None] | None
ENCODE_BATCH = 64  # the batch SentenceTransformerEmbedder.embed encodes in
EVENT_HEADER = 18  # CARMA's checksum header on every stored event: b"C1" + a 16-byte blake2b digest


def say(progress: Progress, message: str) -> None:
    if progress is not None:
        progress(message)


def peak_rss_mib() -> float:
    """The process's peak resident set size so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


class PhasePeaks:
    """The process's peak RSS phase by phase: on Linux each phase's own high-water mark
    (VmHWM, reset after each phase through /proc/self/clear_refs), elsewhere the peak so
    far; and the peak over every phase."""

    def __init__(self) -> None:
        self.overall = peak_rss_mib()
        self.resets = self._reset()

    @staticmethod
    def _reset() -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    @staticmethod
    def _high_water() -> float | None:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
        except (OSError, ValueError):
            pass
        return None

    def mark(self) -> float:
        """The peak since the last mark (the phase that just ended)."""
        peak = self._high_water() if self.resets else None
        if peak is None:
            peak = peak_rss_mib()
        self.overall = max(self.overall, peak)
        self.resets = self._reset()
        return peak


def current_rss_mib() -> float | None:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "carma": carma.__version__,
        "numpy": np.__version__,
        "faiss": _version("faiss-cpu"),
        "torch": _version("torch"),
        "sentence_transformers": _version("sentence-transformers"),
        "eventsourcing": _version("eventsourcing"),
        "sqlite": sqlite3.sqlite_version,
    }
    try:
        import faiss

        env["faiss_omp_threads"] = faiss.omp_get_max_threads()
    except (ImportError, AttributeError):
        pass
    if "torch" in sys.modules:  # never import torch just to report on it
        env["torch_threads"] = sys.modules["torch"].get_num_threads()
    return env


def rss(before: float) -> dict[str, Any]:
    return {
        "peak_before_mib": before,
        "peak_after_mib": peak_rss_mib(),
        "current_after_mib": current_rss_mib(),
    }


def ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def rounded(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(float(x), digits)


def ms_percentile(seconds: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(seconds) * 1000.0, q))


def in_batches(items: Sequence[str], size: int) -> list[Sequence[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def tree_bytes(root: Path) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                total += os.stat(os.path.join(folder, name)).st_size
            except FileNotFoundError:
                pass
    return total


def warm_model(
    embedder: SentenceTransformerEmbedder, texts: list[str], progress: Progress
) -> tuple[Any, float]:
    """Load the model and run one encode, so that neither side of a ratio pays for either."""
    say(progress, "loading all-MiniLM-L6-v2 and warming it up")
    start = time.perf_counter()
    model = embedder.model
    encode(model, texts)
    return model, time.perf_counter() - start


def encode(model: Any, texts: Sequence[str]) -> np.ndarray:
    """The bare baseline: exactly the call SentenceTransformerEmbedder.embed makes."""
    return model.encode(
        list(texts),
        batch_size=ENCODE_BATCH,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )


def faiss_ids_by_key(mem: Any) -> dict[str, int]:
    """Fragment id -> FAISS id, from the store's ledger file (read with plain sqlite3)."""
    conn = sqlite3.connect(f"file:{mem.home / 'ledger.sqlite'}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT id, faiss_id FROM fragments").fetchall())
    finally:
        conn.close()

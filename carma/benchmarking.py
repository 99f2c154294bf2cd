"""What every `carma bench` benchmark shares: progress lines, the machine it ran on, and
its memory, so that each report says where its figures come from."""

from __future__ import annotations

import os
import platform
import resource
import sqlite3
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

import carma

Progress = Callable[[str], None] | None


def say(progress: Progress, message: str) -> None:
    if progress is not None:
        progress(message)


def peak_rss_mib() -> float:
    """The process's peak resident set size so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


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
    return {"peak_before_mib": before, "peak_after_mib": peak_rss_mib(),
            "current_after_mib": current_rss_mib()}


def ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None

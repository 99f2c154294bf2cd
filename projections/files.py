"""Durable file writes for the projections kept in files, and a writer process that makes
them while its caller goes on with other work.

This module imports the standard library only: it is also the writer process's program
(`python -I files.py FOLDER`), which must start in milliseconds and import nothing of the
caller's (-I keeps the script's folder, the environment and the user's site off its path).
"""

from __future__ import annotations

import ctypes
import json
import os
import pickle
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

Files = Sequence[tuple[str, bytes]]  # (name relative to the folder, bytes)


def _load_syncfs() -> Any:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syncfs
    except (OSError, AttributeError):
        return None


_SYNCFS = _load_syncfs()


def flush_file_system(folder: Path) -> None:
    """Make every write under `folder` durable: syncfs(2) on its file system (Linux), which
    also reports a write-back error; os.sync() where syncfs is not available."""
    if _SYNCFS is None:
        os.sync()
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        if _SYNCFS(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs failed: {os.strerror(err)}", str(folder))
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Write via a temp file and rename: a reader sees the old file or the new, never half.

    fsync=False leaves durability to a later flush_file_system (see write_batch).
    """
    tmp = path.parent / f".tmp-{os.getpid()}-{threading.get_ident()}-{path.name}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_batch(folder: Path, removals: Sequence[str], files: Files) -> None:
    """Remove and write files under `folder` (names relative to it; a file's own folder is
    made if missing), then make all of it durable with one flush."""
    for name in removals:
        (folder / name).unlink(missing_ok=True)
    made: set[Path] = set()
    for name, data in files:
        path = folder / name
        if path.parent not in made:
            path.parent.mkdir(exist_ok=True)
            made.add(path.parent)
        atomic_write(path, data, fsync=False)
    if removals or files:
        flush_file_system(folder)


class FileWriter:
    """Writes batches of files under a folder from a child process, in the order submitted,
    each made durable (write_batch) before `wait` reports it done.

    Why a process: writing a file is a handful of system calls, and a thread that makes them
    must take the GIL back after each one, which a busy caller holds for up to its switch
    interval (5 ms): here 3,000 small files took 0.1–0.2 s to write alone and 36–60 s
    beside a thread decoding JSON. A process writes while the caller computes, on another core.
    """

    def __init__(self, folder: Path):
        if not sys.executable or getattr(sys, "frozen", False):
            # An embedded or frozen interpreter: no Python program to run this module with.
            raise OSError("no Python interpreter to start a file writer process with")
        self.folder = Path(folder)
        self._process = subprocess.Popen(
            [sys.executable, "-I", __file__, str(self.folder)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._outstanding = 0

    @property
    def outstanding(self) -> int:
        """Batches submitted and not yet waited for."""
        return self._outstanding

    def submit(self, removals: Sequence[str], files: Files) -> None:
        """Queue a batch (blocks while the process is still reading the one before)."""
        pipe = self._process.stdin
        assert pipe is not None
        try:
            pickle.dump((list(removals), list(files)), pipe, protocol=pickle.HIGHEST_PROTOCOL)
            pipe.flush()
        except (BrokenPipeError, ValueError):
            raise self._stopped() from None
        self._outstanding += 1

    def wait(self) -> None:
        """Until the oldest batch not yet waited for is durable; its OSError if it failed."""
        if not self._outstanding:
            return
        self._outstanding -= 1
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise self._stopped()
        failure = json.loads(line)
        if failure:
            raise OSError(failure["errno"], failure["error"], failure["filename"])

    def drain(self) -> None:
        """Wait for every batch submitted; the first failure is raised after all are done."""
        failure: OSError | None = None
        while self._outstanding:
            try:
                self.wait()
            except OSError as exc:
                failure = failure or exc
        if failure is not None:
            raise failure

    def close(self) -> None:
        """Let the process finish what it was given and end."""
        assert self._process.stdin is not None and self._process.stdout is not None
        try:
            self._process.stdin.close()
        except BrokenPipeError:
            pass
        self._process.wait()
        self._process.stdout.close()
        self._outstanding = 0

    def _stopped(self) -> OSError:
        return OSError(f"the file writer process stopped (exit status "
                       f"{self._process.poll()}); nothing after its last report was made durable")


def serve(folder: Path, requests: IO[bytes], replies: IO[bytes]) -> None:
    """The writer process: write each batch read from `requests`, report each on `replies`
    (an empty object, or the OSError that stopped it), until the requests end."""
    while True:
        try:
            removals, files = pickle.load(requests)
        except (EOFError, pickle.UnpicklingError):  # the caller closed, or died mid-request
            return
        try:
            write_batch(folder, removals, files)
            failure: dict[str, Any] = {}
        except OSError as exc:
            failure = {"errno": exc.errno, "error": exc.strerror or str(exc),
                       "filename": None if exc.filename is None else str(exc.filename)}
        replies.write(json.dumps(failure).encode() + b"\n")
        replies.flush()


if __name__ == "__main__":
    # Ctrl-C reaches the whole foreground process group: the caller decides when to stop
    # (closing the pipe), so that nothing it submitted is left half-written.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(Path(sys.argv[1]), sys.stdin.buffer, sys.stdout.buffer)

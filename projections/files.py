"""Durable file writes for the projections kept in files, and a writer process that makes
them while its caller goes on with other work.

This module imports the standard library only: it is also the writer process's program
(`python -I -S files.py FOLDER`), which must start in milliseconds and import nothing of the
caller's (-I keeps the script's folder, the environment and the user's site off its path,
-S every site-packages).
"""

from __future__ import annotations

import abc
import contextlib
import ctypes
import json
import os
import pickle
import select
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, BinaryIO

Files = Sequence[tuple[str, bytes]]  # (name relative to the folder, bytes)
READY = b"ready\n"  # the writer process's first line
STARTUP_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 60.0


def _load_syncfs() -> Any:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syncfs
    except (OSError, AttributeError):
        return None


_SYNCFS = _load_syncfs()


@contextlib.contextmanager
def made_durable(folder: Path) -> Iterator[None]:
    """Writes made under `folder` in the block are durable when it ends: syncfs(2) on a
    descriptor opened before them (Linux; os.sync() where syncfs is not available). Since
    Linux 5.8 syncfs reports a write-back error that happened after its descriptor was
    opened, even one another process's sync met first: opened after the writes, it could
    miss theirs. Older kernels report none."""
    if _SYNCFS is None:
        yield
        os.sync()
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        yield
        if _SYNCFS(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs failed: {os.strerror(err)}", str(folder))
    finally:
        os.close(fd)


def flush_file_system(folder: Path) -> None:
    """Make every write under `folder` made so far durable (see made_durable)."""
    with made_durable(folder):
        pass


def atomic_write(
    path: Path, data: bytes | Callable[[BinaryIO], None], *, fsync: bool = True
) -> None:
    """Write via a temp file and rename: a reader sees the old file or the new, never half.

    `data`: the bytes, or a function that writes them to the open file (a file too large to
    hold twice in memory, such as the vector index at a million fragments, is streamed).
    fsync=False leaves durability to a later flush_file_system (see write_batch).
    """
    tmp = path.parent / f".tmp-{os.getpid()}-{threading.get_ident()}-{path.name}"
    try:
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_batch(
    folder: Path, removals: Sequence[str], files: Files, *, keep_identical: bool = False
) -> None:
    """Remove and write files under `folder` (names relative to it; a file's own folder is
    made if missing), then make all of it durable with one flush. keep_identical: a file that
    already holds its bytes is left as it is (reading one costs a few microseconds; writing
    it again, a file creation and its share of the flush)."""
    if not removals and not files:
        return
    with made_durable(folder):
        for name in removals:
            (folder / name).unlink(missing_ok=True)
        made: set[Path] = set()
        for name, data in files:
            path = folder / name
            if keep_identical and _holds(path, data):
                continue
            if path.parent not in made:
                path.parent.mkdir(exist_ok=True)
                made.add(path.parent)
            atomic_write(path, data, fsync=False)


def _holds(path: Path, data: bytes) -> bool:
    """Whether the file at `path` holds exactly `data` (no file, or one unreadable: no)."""
    try:
        with open(path, "rb") as f:
            return f.read(len(data) + 1) == data
    except OSError:
        return False


class BatchWriter(abc.ABC):
    """Batches of files written in the order given, and waited for in that order."""

    @property
    @abc.abstractmethod
    def outstanding(self) -> int:
        """Batches given and not yet waited for."""

    @abc.abstractmethod
    def wait(self) -> None:
        """Until the oldest batch not yet waited for is durable; its OSError if it failed."""

    def drain(self) -> None:
        """Wait for every batch given; the first failure is raised after all are done."""
        failure: OSError | None = None
        while self.outstanding:
            try:
                self.wait()
            except OSError as exc:
                failure = failure or exc
        if failure is not None:
            raise failure


class FileWriter(BatchWriter):
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
        self._outstanding = 0
        # A process group of its own: Ctrl-C at a terminal reaches the caller only, which
        # decides when the writer stops (by closing the pipe), never in the middle of a batch.
        self._process = subprocess.Popen(
            [sys.executable, "-I", "-S", __file__, str(self.folder)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            process_group=0,
        )
        # sys.executable may be a program that embeds Python and cannot run this one: the
        # caller is told (OSError) and writes its files itself.
        assert self._process.stdout is not None
        started, _, _ = select.select([self._process.stdout], [], [], STARTUP_TIMEOUT_S)
        if not started or self._process.stdout.readline() != READY:
            self._end(kill=True)
            raise OSError(f"{sys.executable} did not start a file writer process")

    @property
    def outstanding(self) -> int:
        return self._outstanding

    def submit(
        self, removals: Sequence[str], files: Files, *, keep_identical: bool = False
    ) -> None:
        """Queue a batch (blocks while the process is still reading the one before);
        keep_identical as in write_batch."""
        pipe = self._process.stdin
        assert pipe is not None
        request = (list(removals), list(files), keep_identical)
        try:
            pickle.dump(request, pipe, protocol=pickle.HIGHEST_PROTOCOL)
            pipe.flush()
        except (BrokenPipeError, ValueError):
            raise self._stopped() from None
        self._outstanding += 1

    @property
    def stopped(self) -> bool:
        """Whether the process has ended (killed, say): it writes nothing more."""
        return self._process.poll() is not None

    def wait(self) -> None:
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

    def close(self) -> None:
        """Let the process finish what it was given and end; killed if it has not within
        CLOSE_TIMEOUT_S (a file system that hangs): what it had not reported is not
        recorded as written by anyone."""
        self._end(kill=False)

    def _end(self, kill: bool) -> None:
        assert self._process.stdin is not None and self._process.stdout is not None
        try:
            self._process.stdin.close()
        except BrokenPipeError:
            pass
        try:
            self._process.wait(timeout=0 if kill else CLOSE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process.stdout.close()
        self._outstanding = 0

    def _stopped(self) -> OSError:
        return OSError(
            f"the file writer process stopped (exit status "
            f"{self._process.poll()}); nothing after its last report was made durable"
        )


def serve(folder: Path, requests: IO[bytes], replies: IO[bytes]) -> None:
    """The writer process: say it is ready, then write each batch read from `requests` and
    report each on `replies` (an empty object, or the OSError that stopped it), until the
    requests end."""
    replies.write(READY)
    replies.flush()
    while True:
        try:
            removals, files, keep_identical = pickle.load(requests)
        except (EOFError, pickle.UnpicklingError):  # the caller closed, or died mid-request
            return
        try:
            write_batch(folder, removals, files, keep_identical=keep_identical)
            failure: dict[str, Any] = {}
        except OSError as exc:
            failure = {
                "errno": exc.errno,
                "error": exc.strerror or str(exc),
                "filename": None if exc.filename is None else str(exc.filename),
            }
        replies.write(json.dumps(failure).encode() + b"\n")
        replies.flush()


if __name__ == "__main__":
    serve(Path(sys.argv[1]), sys.stdin.buffer, sys.stdout.buffer)

"""FragmentCache: one self-describing JSON file per live fragment, the fast path of `get`."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np
from carma.domain import Fragment
from carma.projections.files import BatchWriter, Files, FileWriter, atomic_write, write_batch
from carma.projections.runner import Batch, unreadable_body

FORMAT = 1
BACKGROUND_FILES = 64  # a batch of this many files or more goes to the writer process
IN_FLIGHT = 4  # batches the writer process may hold before apply waits for the oldest


@dataclass(frozen=True)
class CachedFragment:
    uuid: str
    key: str
    namespace: str
    text: str
    metadata: dict[str, Any]
    content_hash: str
    version: int

    @classmethod
    def of(cls, uuid: Any, key: str, namespace: str, content: Any, version: int) -> CachedFragment:
        """From anything with text, metadata and content_hash: an event or an aggregate."""
        return cls(
            uuid=str(uuid),
            key=key,
            namespace=namespace,
            text=content.text,
            # (None: a reconstruction whose metadata is unknown; the ledger says so)
            metadata=content.metadata or {},
            content_hash=content.content_hash,
            version=version,
        )


class FragmentCache:
    """Files under <home>/cache/, sharded by the first two hex digits of the fragment's uuid.

    File names derive from aggregate uuids only, never from caller input, so no id can
    name a path outside the cache.
    """

    name = "cache"

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._position_file = self.root / "POSITION"
        # Applied (written, or given to the writer process), durable, and in the POSITION file.
        self._position = self._durable = self._recorded = self._read_position()
        self._batches: CacheWriter | None = None  # the catch-up's (a heal has its own)
        # The batches given and not yet durable: (position, whether it changes a file).
        self._pending: deque[tuple[int, bool]] = deque()
        # Since a reset: the uuids (hex) of the files the replay filed or found in place;
        # sweep() removes the others. None: no reset to finish.
        self._claimed: bytearray | None = None

    def _read_position(self) -> int:
        try:
            return int(json.loads(self._position_file.read_text())["position"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            # Unknown position: replay from zero. Applying an event is idempotent.
            return 0

    @property
    def position(self) -> int:
        return self._position

    def path_of(self, uuid: UUID | str) -> Path:
        return self.root / self.name_of(uuid)

    @staticmethod
    def name_of(uuid: UUID | str) -> str:
        """A fragment's file, relative to the cache's root."""
        hex_ = (uuid if isinstance(uuid, UUID) else UUID(str(uuid))).hex
        return f"{hex_[:2]}/{hex_}.json"

    def apply(self, batch: Batch) -> None:
        # Only each fragment's last state in the batch matters: write it once.
        last: dict[UUID, Any] = {}  # the event that sets its body, or None: no file
        for position, event in batch:
            if position <= self._position:
                continue
            if isinstance(event, (Fragment.FragmentWritten, Fragment.FragmentRevised)):
                # text None: a sealed body whose key was destroyed (forgotten): no file
                last[event.originator_id] = event if event.text is not None else None
            elif isinstance(event, Fragment.FragmentReconstructed) and event.copy == "log-body":
                if event.text is not None:  # a body restated after its events were damaged
                    last[event.originator_id] = event
            elif isinstance(event, (Fragment.FragmentDeleted, Fragment.FragmentForgotten)):
                last[event.originator_id] = None
            elif (uuid := unreadable_body(event)) is not None:
                last[uuid] = None  # its body is unknown until a repair restates it
        removals: list[str] = []
        files: list[tuple[str, bytes]] = []
        for uuid, event in last.items():
            if event is None:
                removals.append(self.name_of(uuid))
                continue
            if event.key is None:
                continue  # a restatement of a fragment no record could name: nothing to file
            # Every event that sets a body also names its fragment (id, namespace).
            name = self.name_of(uuid)
            data = rendered.file(uuid, event.key, event.namespace, event)
            if self._claimed is not None:
                self._claimed += name[3:35].encode()
            files.append((name, data))
        self._write(batch[-1][0], removals, files)

    def _write(self, position: int, removals: list[str], files: list[tuple[str, bytes]]) -> None:
        """Write a batch's files; its position is recorded once they are durable (flush).

        A batch of BACKGROUND_FILES or more starts the cache's writer process (a CacheWriter's,
        as a heal's), which takes every later batch: creating files is system calls, which run
        there on the other core while this one goes on with the log and the other
        projections. The position moves here at once (so the runner does not feed the batch
        again) and reaches the POSITION file only once every batch before it is reported
        durable, at the end of each catch-up."""
        # Only a replay from zero (a rebuild, a lost POSITION file) expects most of its files
        # in place: elsewhere the look costs an open of a file that is not there (a replay of
        # a crashed catch-up writes its few files again instead).
        keep_identical = self._claimed is not None or self._recorded == 0
        if self._batches is None:
            self._batches = CacheWriter(self)
        try:
            self._batches.submit_files(
                removals,
                files,
                background=len(files) >= BACKGROUND_FILES,
                keep_identical=keep_identical,
            )
        except OSError:  # the process stopped
            self._given_up()
            raise
        self._pending.append((position, bool(removals or files)))
        self._position = max(self._position, position)
        if len(self._pending) > IN_FLIGHT:  # (bounds the bytes held in the pipe)
            self._settle(1)

    def flush(self) -> None:
        """Wait until every batch given is durable, then record the last one's position (with
        an fsync only if a batch changed a file: a lost position of batches that changed
        none only replays events that change nothing). On a failure, the position goes back
        to the last batch durable in order and the failure is raised."""
        if self._pending:
            changed = self._settle(len(self._pending))
            self._record_position(self._durable, durable=changed)

    def _settle(self, count: int) -> bool:
        """Wait for the oldest `count` batches; whether any of them changed a file."""
        assert self._batches is not None
        changed = False
        for _ in range(count):
            position, changes = self._pending.popleft()
            try:
                self._batches.wait()
            except OSError:
                self._given_up()
                raise
            self._durable = max(self._durable, position)
            changed = changed or changes
        return changed

    def _given_up(self) -> None:
        """After a batch that could not be written (or a writer process that stopped): what
        is written after that batch claims nothing. The position goes back to the last batch
        durable in order, and the next catch-up applies the rest again."""
        assert self._batches is not None
        self._position = self._durable
        self._pending.clear()
        try:
            self._batches.drain()
        except OSError:
            pass  # (the first failure is the one raised)
        self._batches.forget_stopped()

    def _record_position(self, position: int, durable: bool = True) -> None:
        if position > self._recorded:
            atomic_write(
                self._position_file, json.dumps({"position": position}).encode(), fsync=durable
            )
            self._recorded = self._durable = position
        self._position = max(self._position, position)

    def writer(self) -> CacheWriter:
        """A writer of batches of repairs (see CacheWriter); close it when done."""
        return CacheWriter(self)

    def read(self, uuid: UUID | str) -> CachedFragment | None:
        """The cached copy, or None when it is missing or unreadable (callers fall back to
        the log)."""
        return self.inspect(uuid)[0]

    def inspect(self, uuid: UUID | str) -> tuple[CachedFragment | None, str | None]:
        """The cached copy and None, or None and why not: 'missing' or 'unreadable'."""
        try:
            raw = self.path_of(uuid).read_bytes()
        except FileNotFoundError:
            return None, "missing"
        except OSError:
            return None, "unreadable"
        try:
            body = json.loads(raw)
            if body.pop("format") != FORMAT:
                return None, "unreadable"
            return CachedFragment(**body), None
        except (ValueError, TypeError, KeyError, AttributeError):
            return None, "unreadable"

    def reset(self) -> None:
        """Position zero, on disk: the next catch-up replays every event. The files stay
        until then: the replay keeps each one whose bytes it would write, writes the others,
        and sweep() then removes those it did not file. (Unlinking every file and writing
        it again was 60% of a rebuild.) A crash before the sweep leaves only files of no
        fragment, which a scrub finds and removes."""
        self.flush()
        atomic_write(self._position_file, json.dumps({"position": 0}).encode())
        self._position = self._durable = self._recorded = 0
        self._claimed = bytearray()

    def sweep(self) -> int:
        """After a reset and the replay that follows it: remove every file the replay did not
        file (a fragment of no event, a temp file of a write that crashed, anything else);
        returns how many. Nothing to do without a reset since the last sweep."""
        if self._claimed is None:
            return 0
        claimed = np.sort(np.frombuffer(self._claimed, dtype="S32"))  # (32 MB at 1M)
        self._claimed = None
        removed: list[str] = []
        with os.scandir(self.root) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
        for entry in entries:
            if entry.name == self._position_file.name:
                continue
            if not (entry.is_dir(follow_symlinks=False) and is_shard(entry.name)):
                removed.append(entry.name)
                continue
            with os.scandir(entry.path) as listing:
                names = sorted(e.name for e in listing)
            stems = np.array([fragment_stem(n, entry.name) or "" for n in names], dtype="S32")
            filed = np.zeros(len(names), dtype=bool)
            if len(claimed) and len(names):
                at = np.searchsorted(claimed, stems).clip(max=len(claimed) - 1)
                filed = (claimed[at] == stems) & (stems != b"")
            removed += [f"{entry.name}/{n}" for n, f in zip(names, filed.tolist()) if not f]
        for name in removed:
            path = self.root / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        return len(removed)

    def skip_sweep(self) -> None:
        """A replay after a reset that did not finish: no sweep (it would remove files the
        replay has not reached yet); the next catch-up goes on from where it stopped."""
        self._claimed = None

    def files(self) -> list[Path]:
        return sorted(self.root.glob("??/*.json"))

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._batches is not None:
                self._batches.close()
                self._batches = None


class CacheWriter(BatchWriter):
    """Removes and writes cache files batch by batch, in the order submitted; `wait` returns
    when the oldest batch not yet waited for is durable, or raises what stopped it.

    Batches are written at once until one comes with background=True (a caller with many
    to write); from then on a FileWriter process writes them while the caller prepares the
    next (see Healer.heal). Where no process can be started, they are written at once.
    """

    def __init__(self, cache: FragmentCache):
        self._cache = cache
        self._done: deque[OSError | None] = deque()  # batches written at once, not waited for
        self._process: FileWriter | None = None

    def submit(
        self,
        removals: Iterable[UUID],
        fragments: Iterable[CachedFragment],
        *,
        background: bool = False,
    ) -> None:
        name_of = self._cache.name_of
        self.submit_files(
            [name_of(uuid) for uuid in removals],
            [(name_of(fragment.uuid), render(fragment)) for fragment in fragments],
            background=background,
        )

    def submit_files(
        self,
        removals: Sequence[str],
        files: Files,
        *,
        background: bool = False,
        keep_identical: bool = False,
    ) -> None:
        """A batch by file names (relative to the cache's root) and bytes; keep_identical as
        in write_batch. OSError when the process has stopped."""
        if background and self._process is None and (removals or files):
            try:
                self._process = FileWriter(self._cache.root)
            except OSError:
                pass  # no process to be had here: the batches are written at once
        if self._process is not None:
            self._process.submit(removals, files, keep_identical=keep_identical)
            return
        try:
            write_batch(self._cache.root, removals, files, keep_identical=keep_identical)
            self._done.append(None)
        except OSError as exc:
            self._done.append(exc)

    def forget_stopped(self) -> None:
        """Let go of a process that stopped: the next background batch starts another."""
        if self._process is not None and self._process.stopped:
            self._process.close()
            self._process = None

    @property
    def outstanding(self) -> int:
        return len(self._done) + (self._process.outstanding if self._process else 0)

    def wait(self) -> None:
        if self._done:  # written before any batch went to the process
            failure = self._done.popleft()
            if failure is not None:
                raise failure
        elif self._process is not None:
            self._process.wait()

    def close(self) -> None:
        if self._process is not None:
            self._process.close()
            self._process = None

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def fragment_stem(name: str, shard: str) -> str | None:
    """The uuid (32 hex digits) whose cache file `name` is, in the folder `shard`; None for a
    name the cache does not give there (a temp file, anything else, or a fragment's file in a
    folder not its own)."""
    stem = name[:-5]
    if name.endswith(".json") and len(stem) == 32 and stem[:2] == shard and _HEX.issuperset(stem):
        return stem
    return None


def is_shard(name: str) -> bool:
    """A name the cache gives a folder: the first two hex digits of its files' uuids."""
    return len(name) == 2 and _HEX.issuperset(name)


_HEX = frozenset("0123456789abcdef")


def render(fragment: CachedFragment) -> bytes:
    """The exact bytes of a fragment's cache file (the ledger keeps their digest)."""
    body = {"format": FORMAT, **fragment.__dict__}
    return json.dumps(body, ensure_ascii=False, sort_keys=True).encode("utf-8")


class _Rendered:
    """The cache files rendered last, by the event they were rendered from: a catch-up's
    ledger (for the file's digest) and cache (to write it) each render the file of every
    body the batch sets, from the same event object, one after the other (two renders
    were a tenth of a rebuild's time). An entry holds its event, so that no other object
    takes its identity while it is kept."""

    def __init__(self, size: int):
        self.size = size
        self._files: dict[int, tuple[Any, tuple[Any, ...], bytes]] = {}
        self._lock = threading.Lock()

    def file(self, uuid: Any, key: str, namespace: str, event: Any) -> bytes:
        """render() of the event's body as the file of this fragment, at the event's version."""
        named = (str(uuid), key, namespace, event.originator_version)
        with self._lock:
            kept = self._files.get(id(event))
        if kept is not None and kept[0] is event and kept[1] == named:
            return kept[2]
        data = render(CachedFragment.of(*named[:3], event, named[3]))
        with self._lock:
            self._files.pop(id(event), None)
            self._files[id(event)] = (event, named, data)
            while len(self._files) > self.size:
                del self._files[next(iter(self._files))]  # (the oldest: dicts keep order)
        return data


RENDERED_KEPT = 1_024  # two batches of a catch-up: the ledger renders a batch, then the cache
rendered = _Rendered(RENDERED_KEPT)


def file_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

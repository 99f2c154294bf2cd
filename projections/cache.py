"""FragmentCache: one self-describing JSON file per live fragment, the fast path of `get`."""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from domain import Fragment
from projections.runner import Batch, unreadable_body

FORMAT = 1


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
    def of(cls, uuid: Any, key: str, namespace: str, content: Any, version: int
           ) -> CachedFragment:
        """From anything with text, metadata and content_hash: an event or an aggregate."""
        return cls(uuid=str(uuid), key=key, namespace=namespace, text=content.text,
                   metadata=content.metadata, content_hash=content.content_hash,
                   version=version)


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

    fsync=False leaves durability to a later flush_file_system (see FragmentCache.apply).
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
        self._position = self._read_position()

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
        hex_ = UUID(str(uuid)).hex
        return self.root / hex_[:2] / f"{hex_}.json"

    def apply(self, batch: Batch) -> None:
        # Only each fragment's last state in the batch matters: write it once.
        last: dict[UUID, tuple[int, Any] | None] = {}
        for position, event in batch:
            if position <= self._position:
                continue
            if isinstance(event, (Fragment.FragmentWritten, Fragment.FragmentRevised)):
                # text None: a sealed body whose key was destroyed (forgotten): no file
                last[event.originator_id] = (position, event) if event.text is not None else None
            elif isinstance(event, Fragment.FragmentReconstructed) and event.copy == "log-body":
                if event.text is not None:  # a body restated after its events were damaged
                    last[event.originator_id] = (position, event)
            elif isinstance(event, (Fragment.FragmentDeleted, Fragment.FragmentForgotten)):
                last[event.originator_id] = None
            elif (uuid := unreadable_body(event)) is not None:
                last[uuid] = None  # its body is unknown until a repair restates it
        for uuid, entry in last.items():
            path = self.path_of(uuid)
            if entry is None:
                path.unlink(missing_ok=True)
                continue
            _, event = entry
            if event.key is None:
                continue  # a restatement of a fragment no record could name: nothing to file
            # Every event that sets a body also names its fragment (id, namespace).
            self.write(CachedFragment.of(uuid, event.key, event.namespace, event,
                                         event.originator_version), fsync=False)
        if last:
            # One flush of the whole batch instead of an fsync per file (4x faster here),
            # before the position that claims it: a crash never records a batch that is not
            # on disk.
            flush_file_system(self.root)
        # A batch that changed no file (the healer's own reports, say) moves the position
        # without an fsync of its own: lost in a crash, it only makes the cache replay
        # events that change nothing.
        self._record_position(batch[-1][0], durable=bool(last))

    def _record_position(self, position: int, durable: bool = True) -> None:
        if position > self._position:
            atomic_write(self._position_file, json.dumps({"position": position}).encode(),
                         fsync=durable)
            self._position = position

    def write(self, fragment: CachedFragment, *, fsync: bool = True) -> None:
        path = self.path_of(fragment.uuid)
        path.parent.mkdir(exist_ok=True)
        atomic_write(path, render(fragment), fsync=fsync)

    def write_many(self, fragments: list[CachedFragment]) -> None:
        """Write several files, then make them durable with one flush."""
        for fragment in fragments:
            self.write(fragment, fsync=False)
        if fragments:
            flush_file_system(self.root)

    def read(self, uuid: UUID | str) -> CachedFragment | None:
        """The cached copy, or None when it is missing or unreadable (callers fall back to the log)."""
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

    def remove(self, uuid: UUID | str) -> None:
        self.path_of(uuid).unlink(missing_ok=True)

    def reset(self) -> None:
        # Position zero is on disk before any file goes: a crash in the middle of a rebuild
        # then replays from zero instead of trusting files that are already gone.
        atomic_write(self._position_file, json.dumps({"position": 0}).encode())
        self._position = 0
        for child in self.root.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            elif child != self._position_file:
                child.unlink()

    def files(self) -> list[Path]:
        return sorted(self.root.glob("??/*.json"))

    def close(self) -> None:
        pass


def render(fragment: CachedFragment) -> bytes:
    """The exact bytes of a fragment's cache file (the ledger keeps their digest)."""
    body = {"format": FORMAT, **fragment.__dict__}
    return json.dumps(body, ensure_ascii=False, sort_keys=True).encode("utf-8")


def file_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

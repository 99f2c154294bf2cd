"""VectorIndex: FAISS over live fragments' embeddings, persisted with the position it reflects."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from uuid import UUID

import faiss
import numpy as np
from carma.domain import DIMENSION_MAX, Fragment
from carma.projections.files import atomic_write
from carma.projections.runner import Batch, unreadable_body

FORMAT = 1


def faiss_id(uuid: UUID | str) -> int:
    """A fragment's id in FAISS: the top 63 bits of its uuid (int64, non-negative)."""
    return UUID(str(uuid)).int >> 65


_WEIGHTS = np.random.default_rng(0x5EED).integers(
    1, 2**63, size=DIMENSION_MAX, dtype=np.uint64
) | np.uint64(1)  # odd: one flip always shows


def vector_fingerprints(vectors: np.ndarray) -> np.ndarray:
    """A 64-bit fingerprint per row of float32 vectors, computed in bulk: a weighted sum of
    the raw bits modulo 2**64, taken 64 bits (two values) at a time. Any change to one value
    changes it (the weights are odd, so each product is a bijection of its word); lets a
    scrub compare 100k vectors with the log's in milliseconds."""
    vectors = np.ascontiguousarray(vectors, dtype="<f4")
    if vectors.ndim != 2:
        return np.zeros(len(vectors), dtype=np.int64)
    if vectors.shape[1] % 2:  # an odd dimension: one zero pads the last word
        vectors = np.concatenate([vectors, np.zeros((len(vectors), 1), "<f4")], axis=1)
    words = vectors.view("<u8")
    with np.errstate(over="ignore"):  # unsigned integers wrap: the sum is modulo 2**64
        return (words @ _WEIGHTS[: words.shape[1]]).view(np.int64)


def embedding_fingerprint(embedding: bytes) -> int:
    return int(vector_fingerprints(np.frombuffer(embedding, dtype="<f4")[None, :])[0])


def _signature(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns


class IndexFileError(Exception):
    """The persisted index is missing, unreadable or fails its checksum."""

    def __init__(self, fault: str, message: str):
        super().__init__(message)
        self.fault = fault  # "missing" | "unreadable" | "corrupt"


class VectorIndex:
    """Exact inner-product search (vectors are normalised, so this is cosine) over live fragments.

    The file `<home>/index/vectors.faiss` holds one JSON header line (format, position,
    dimension, count, sha256 of the body) followed by the serialised FAISS index, written
    atomically: a torn or edited file fails its checksum and is rebuilt from the log.
    """

    name = "index"

    def __init__(self, root: Path, dimension: int):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / "vectors.faiss"
        self.dimension = dimension
        self.load_error: IndexFileError | None = None
        self._verified: tuple[int, int, int] | None = None  # stat of the file last verified
        self._verified_position = 0
        # The file this index was last loaded from or saved to (its position), and how many
        # vectors the index has changed since: what that file lacks (see check_file).
        self._file_position: int | None = None
        self._changed_since_file = 0
        try:
            self._index, self._position = self._load()
            self._file_position = self._position
        except IndexFileError as exc:
            # Start empty at position zero: catching up with the log rebuilds it.
            self.load_error = exc
            self._index, self._position = self._empty(), 0
        self._dirty = False

    def _empty(self) -> faiss.IndexIDMap2:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dimension))

    def _load(self) -> tuple[faiss.IndexIDMap2, int]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raise IndexFileError("missing", "index file is missing") from None
        except OSError as exc:
            raise IndexFileError(
                "unreadable", f"index file is unreadable: {exc.strerror}"
            ) from None
        head, sep, body = raw.partition(b"\n")
        try:
            header = json.loads(head)
            if not sep or header["format"] != FORMAT:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise IndexFileError("unreadable", "index file header is unreadable") from None
        if hashlib.sha256(body).hexdigest() != header.get("sha256"):
            raise IndexFileError("corrupt", "index file fails its checksum")
        if header.get("dimension") != self.dimension:
            raise IndexFileError("corrupt", "index file has another dimension")
        index = faiss.deserialize_index(np.frombuffer(body, dtype=np.uint8))
        if not isinstance(index, faiss.IndexIDMap2):
            raise IndexFileError("corrupt", "index file holds another kind of index")
        if index.ntotal != header.get("count"):
            raise IndexFileError(
                "corrupt", "index file holds another number of vectors than its header"
            )
        self._verified, self._verified_position = _signature(self.path), int(header["position"])
        return index, int(header["position"])

    @property
    def position(self) -> int:
        return self._position

    @property
    def count(self) -> int:
        return self._index.ntotal

    def apply(self, batch: Batch) -> None:
        removed: set[int] = set()
        added: dict[int, bytes] = {}
        for position, event in batch:
            if position <= self._position:
                continue
            if isinstance(event, Fragment.FragmentWritten) and event.embedding is not None:
                added[faiss_id(event.originator_id)] = event.embedding
            elif (
                isinstance(
                    event,
                    (
                        Fragment.FragmentRevised,
                        Fragment.FragmentReconstructed,
                        Fragment.EmbeddingKept,
                    ),
                )
                and getattr(event, "embedding", None) is not None
            ):
                fid = faiss_id(event.originator_id)
                removed.add(fid)
                added[fid] = event.embedding
            elif (
                isinstance(event, (Fragment.FragmentDeleted, Fragment.FragmentForgotten))
                or unreadable_body(event) is not None
            ):
                # (an unreadable body's vector is unknown until a repair restates it)
                fid = faiss_id(event.originator_id)
                removed.add(fid)
                added.pop(fid, None)
        self._changed_since_file += len(removed | added.keys())
        # remove_ids rewrites the whole array whatever it removes: one call per batch.
        if removed:
            self._index.remove_ids(np.fromiter(removed, dtype=np.int64))
        if added:
            ids = np.fromiter(added.keys(), dtype=np.int64, count=len(added))
            vectors = np.frombuffer(b"".join(added.values()), dtype="<f4").reshape(
                len(added), self.dimension
            )
            self._index.add_with_ids(vectors, ids)
        self._position = max(self._position, batch[-1][0])
        self._dirty = True

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """Top-k (faiss id, inner product); `allowed` restricts the search to those ids."""
        if k <= 0 or self._index.ntotal == 0:
            return []
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, self.dimension)
        params = None
        if allowed is not None:
            if len(allowed) == 0:
                return []
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed.astype(np.int64)))
            k = min(k, len(allowed))
        k = min(k, self._index.ntotal)
        scores, ids = self._index.search(q, k, params=params)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i != -1]

    def vector(self, fid: int) -> np.ndarray | None:
        try:
            return self._index.reconstruct(int(fid))
        except RuntimeError:
            return None

    def ids(self) -> np.ndarray:
        return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def check_file(self, head: int, stale_after: int) -> str | None:
        """Why the persisted file cannot stand in for this index, or None if it can:
        'missing', 'unreadable', 'corrupt' (fails its checksum) or 'stale' (it lacks more than
        `stale_after` of the index's changes, or claims a position beyond the log's head).
        Changes are counted in vectors for the file this index last loaded or saved (the
        findings and repairs of cache files move the log on, not the index), in log
        positions for any other file."""
        try:
            signature = _signature(self.path)
            if signature == self._verified:
                # Unchanged since it was written or last verified: skip re-reading a file as
                # large as all the cache files together. Opening the store always verifies.
                return self._check_position(self._verified_position, head, stale_after)
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return "missing"
        except OSError:
            return "unreadable"
        head_line, sep, body = raw.partition(b"\n")
        try:
            header = json.loads(head_line)
            position = int(header["position"])
        except (ValueError, KeyError, TypeError):
            return "unreadable"
        if not sep or hashlib.sha256(body).hexdigest() != header.get("sha256"):
            return "corrupt"
        self._verified, self._verified_position = signature, position
        return self._check_position(position, head, stale_after)

    def _check_position(self, position: int, head: int, stale_after: int) -> str | None:
        if position > head:
            return "stale"
        behind = (
            self._changed_since_file
            if position == self._file_position
            else self._position - position
        )
        return "stale" if behind > stale_after else None

    def fingerprints(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, fingerprints of their vectors) of every entry, for a scrub to compare with
        the ledger: read where FAISS keeps them, in chunks, so a scrub of 100k vectors needs
        no copy of them (callers hold the store's lock: nothing moves them meanwhile)."""
        ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        flat = faiss.downcast_index(self._index.index)
        count, dim = flat.ntotal, flat.d
        stored = (
            faiss.rev_swig_ptr(flat.get_xb(), count * dim).reshape(count, dim)
            if count
            else np.zeros((0, dim), dtype=np.float32)
        )
        parts = [
            vector_fingerprints(stored[start : start + 8192]) for start in range(0, count, 8192)
        ]
        return ids, np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def put(self, entries: dict[int, bytes]) -> None:
        """Set the vectors of these ids (a repair): whatever was there is replaced."""
        if not entries:
            return
        ids = np.fromiter(entries.keys(), dtype=np.int64, count=len(entries))
        self._index.remove_ids(ids)
        vectors = np.frombuffer(b"".join(entries.values()), dtype="<f4").reshape(
            len(entries), self.dimension
        )
        self._index.add_with_ids(vectors, ids)
        self._changed_since_file += len(entries)
        self._dirty = True

    def remove(self, ids: list[int]) -> None:
        if ids:
            self._index.remove_ids(np.asarray(ids, dtype=np.int64))
            self._changed_since_file += len(ids)
            self._dirty = True

    def save(self) -> None:
        """Persist the index with the position it reflects (on close and after a rebuild)."""
        body = faiss.serialize_index(self._index).tobytes()
        header = {
            "format": FORMAT,
            "position": self._position,
            "dimension": self.dimension,
            "count": int(self._index.ntotal),
            "sha256": hashlib.sha256(body).hexdigest(),
        }
        atomic_write(self.path, json.dumps(header).encode() + b"\n" + body)
        self._dirty = False
        self._verified, self._verified_position = _signature(self.path), self._position
        self._file_position, self._changed_since_file = self._position, 0

    def reset(self) -> None:
        self._index, self._position = self._empty(), 0
        self._file_position = None  # the file on disk is no state of this index any more
        self.load_error = None
        self._dirty = True

    def close(self) -> None:
        if self._dirty:
            self.save()

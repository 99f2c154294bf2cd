"""VectorIndex: FAISS over live fragments' embeddings, persisted with the position it reflects.

Vectors are stored by label, in the order they came: a removal marks its label dead (at once:
every search filters by the live labels) instead of rewriting the array, and the dead are
compacted away in bulk. Up to `approximate_above` live vectors a query scans them all (exact
inner product); past it, an HNSW graph over the same stored vectors answers instead, and any
search it cannot answer in full (a narrow filter) is answered exactly.

The labels are kept in parts of at most `part_size` vectors, each a FAISS index of its own,
searched (half of them on a second core) and their hits merged. FAISS grows an index's
storage by doubling a `std::vector`: grown whole, a million vectors (1.5 GB) would be copied
at 800,000, old and new held at once (+1.2 GB at the peak); grown in parts, a copy costs at
most half a part."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO
from uuid import UUID

import faiss
import numpy as np
from carma.domain import DIMENSION_MAX, Fragment
from carma.projections.files import atomic_write
from carma.projections.runner import Batch, unreadable_body

FORMAT = 3  # 1: one IndexIDMap2; 2: one index, no parts (both read, and written again as 3)
HEADER_BYTES = 512  # the header line's room, so the body can be streamed before its checksum
READ_CHUNK = 8 << 20

APPROXIMATE_ABOVE = 50_000  # live vectors past which the graph answers (below half: exact again)
GRAPH_NEIGHBOURS = 32  # HNSW's M
GRAPH_EF_CONSTRUCTION = 40
GRAPH_EF_SEARCH = 128  # recall@10 about 0.95 on MiniLM embeddings (docs/benchmarks.md)
EXACT_SUBSET = 20_000  # a filter allowing at most this many is searched exactly
COMPACT_SHARE = 0.25  # dead labels, as a share of all, that set off a compaction
COMPACT_MIN = 4096
# Ids labelled since the sorted (id, label) arrays were made, kept in a dict until this many.
LABELS_SORTED_AFTER = 65_536
PART_SIZE = 131_072  # vectors in a part (192 MiB of MiniLM's): the most a growth copies
# Whether a query searches its parts on two cores (see VectorIndex._search_parts).
SEARCH_BESIDE = (
    len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
) > 1


def faiss_id(uuid: UUID | str) -> int:
    """A fragment's id in FAISS: the top 63 bits of its uuid (int64, non-negative)."""
    return (uuid if isinstance(uuid, UUID) else UUID(str(uuid))).int >> 65


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


def embedding_fingerprints(embeddings: Sequence[bytes]) -> np.ndarray:
    """embedding_fingerprint of each, in one call when they are all of one size."""
    size = len(embeddings[0]) if embeddings else 0
    if not size or any(len(e) != size for e in embeddings):
        return np.array([embedding_fingerprint(e) for e in embeddings], dtype=np.int64)
    vectors = np.frombuffer(b"".join(embeddings), dtype="<f4").reshape(len(embeddings), -1)
    return vector_fingerprints(vectors)


def _signature(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns


def _digest(file: BinaryIO) -> str:
    """sha256 of the rest of an open file, read in chunks (the file may hold gigabytes)."""
    digest = hashlib.sha256()
    while chunk := file.read(READ_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def _read_header(file: BinaryIO) -> dict:
    line = file.readline(HEADER_BYTES)
    try:
        header = json.loads(line)
        if not line.endswith(b"\n") or header["format"] not in (1, 2, FORMAT):
            raise ValueError
        int(header["position"])
    except (ValueError, KeyError, TypeError):
        raise IndexFileError("unreadable", "index file header is unreadable") from None
    return header


def looked_up(sorted_keys: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each of `keys` is in `sorted_keys`, and whether it is there at all (where not,
    its position is any valid one, or 0 when `sorted_keys` is empty)."""
    if not len(sorted_keys):
        return np.zeros(len(keys), dtype=np.int64), np.zeros(len(keys), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return at, sorted_keys[at] == keys


def _flat_of(part: faiss.Index) -> faiss.IndexFlat:
    """The flat index that holds a part's vectors (a graph's storage, or the part itself)."""
    return faiss.downcast_index(part.storage) if isinstance(part, faiss.IndexHNSWFlat) else part


def _stored_in(part: faiss.Index) -> np.ndarray:
    """A part's vectors, a view into FAISS' own array (valid until the part's next add)."""
    flat = _flat_of(part)
    if flat.ntotal == 0:
        return np.zeros((0, flat.d), dtype=np.float32)
    return faiss.rev_swig_ptr(flat.get_xb(), flat.ntotal * flat.d).reshape(flat.ntotal, flat.d)


class IndexFileError(Exception):
    """The persisted index is missing, unreadable or fails its checksum."""

    def __init__(self, fault: str, message: str):
        super().__init__(message)
        self.fault = fault  # "missing" | "unreadable" | "corrupt"


GRAPH_JOB_CHUNK = 4_096  # vectors a graph job adds between two looks at its stop (a close waits)


class GraphJob:
    """One flat part's graph, built from its vectors as they were when the job began: a new
    graph, or (`base`: the graph part just before it, with room for them) a copy of that
    graph with them added, which takes the place of both."""

    def __init__(
        self,
        layout: int,
        number: int,
        part: faiss.Index,
        vectors: np.ndarray,
        graph: faiss.Index | None,
        base: faiss.Index | None = None,
    ):
        self.layout, self.number, self.part = layout, number, part
        self.vectors, self.base, self.graph = vectors, base, graph

    def build(self, stop: threading.Event | None = None) -> bool:
        """Add the vectors to the graph, a chunk at a time; False if `stop` was set first."""
        if self.graph is None:
            # (copied here, outside the store's lock: FAISS lets go of the GIL meanwhile)
            self.graph = faiss.clone_index(self.base)
            self.graph.hnsw.efConstruction = GRAPH_EF_CONSTRUCTION
        for start in range(0, len(self.vectors), GRAPH_JOB_CHUNK):
            if stop is not None and stop.is_set():
                return False
            self.graph.add(np.ascontiguousarray(self.vectors[start : start + GRAPH_JOB_CHUNK]))
        return True

    def discard(self) -> None:
        """Zero the graph's copy of the vectors before it is let go: one may be a forgotten
        fragment's (install zeroes those of a graph it keeps)."""
        if self.graph is not None:
            _stored_in(self.graph)[:] = 0.0


class VectorIndex:
    """Inner-product search (vectors are normalised, so this is cosine) over live fragments:
    exact up to `approximate_above` live vectors, an HNSW graph past it.

    The file `<home>/index/vectors.faiss` holds one JSON header line (format, position,
    dimension, count, labels, parts, kind, sha256 of the body) followed by the body: each
    label's fragment id, each label's liveness, each part's count, then each part's serialised
    FAISS index. It is written atomically: a torn or edited file fails its checksum and is rebuilt
    from the log.
    """

    name = "index"

    def __init__(
        self,
        root: Path,
        dimension: int,
        *,
        approximate_above: int = APPROXIMATE_ABOVE,
        ef_search: int = GRAPH_EF_SEARCH,
        part_size: int | None = None,
    ):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / "vectors.faiss"
        self.dimension = dimension
        self.approximate_above = approximate_above
        self.ef_search = ef_search
        self.part_size = part_size or PART_SIZE
        self.load_error: IndexFileError | None = None
        # While set, the index stays flat past the threshold: a rebuild fills it so, and its
        # graph is built after, part by part, while queries are answered (graph_behind).
        self.graph_deferred = False
        # Whether the write that takes the live vectors past the threshold leaves the
        # graph to a builder (graph_behind; a store runs one) instead of building it itself:
        # at the threshold of 50,000 that one write took 7 s.
        self.graph_left_behind = False
        self._verified: tuple[int, int, int] | None = None  # stat of the file last verified
        self._verified_position = 0
        # The file this index was last loaded from or saved to (its position), and how many
        # vectors the index has changed since: what that file lacks (see check_file).
        self._file_position: int | None = None
        self._changed_since_file = 0
        self._dirty = False
        self._searcher: ThreadPoolExecutor | None = None
        self._searcher_pid = 0
        try:
            self._load()
            self._file_position = self._position
            self._reshape()  # (a threshold other than the file's: that index is built now)
        except IndexFileError as exc:
            # Start empty at position zero: catching up with the log rebuilds it.
            self.load_error = exc
            self._empty()
            self._position = 0

    # -- the stored vectors, by label

    def _new_part(self) -> faiss.Index:
        if not self._graph or self._writes_flat:
            return faiss.IndexFlatIP(self.dimension)
        return self._new_graph()

    def _new_graph(self) -> faiss.Index:
        part = faiss.IndexHNSWFlat(self.dimension, GRAPH_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
        part.hnsw.efConstruction = GRAPH_EF_CONSTRUCTION
        return part

    def _start(
        self, graph: bool, parts: list[faiss.Index], fids: np.ndarray, alive: np.ndarray
    ) -> None:
        self._graph = graph
        self._parts = parts
        self._layout = getattr(self, "_layout", 0) + 1  # parts made anew: a graph job ends
        self._sealed: faiss.Index | None = None  # the part a graph job reads (next_graph_job)
        # Each part's first label (and, last, the labels' count): label -> part by bisection.
        self._starts = np.cumsum([0] + [part.ntotal for part in parts], dtype=np.int64)
        self._size = len(fids)
        self._fids = np.array(fids, dtype=np.int64)
        self._alive = np.array(alive, dtype=bool)
        self._live = int(np.count_nonzero(self._alive))
        self._sort_labels()
        self._live_bitmaps: list[np.ndarray] | None = None

    def _sort_labels(self) -> None:
        """Each live id's label, as two arrays sorted by id: 16 bytes an id, where a dict of
        a million Python ints took about 100 MB. Ids labelled since wait in `_recent`."""
        live = np.flatnonzero(self._alive[: self._size])
        fids = self._fids[live]
        order = np.argsort(fids, kind="stable")
        self._sorted_fids, self._sorted_labels = fids[order], live[order]
        self._recent: dict[int, int] = {}

    def _labels_of(self, fids: np.ndarray) -> np.ndarray:
        """Each id's live label, -1 for none. A sorted label counts only while it still holds
        its id: a removal sets the id at that label to -1, and labels are not used again
        until a compaction, which sorts them anew."""
        fids = np.asarray(fids, dtype=np.int64)
        labels = np.full(len(fids), -1, dtype=np.int64)
        at, found = looked_up(self._sorted_fids, fids)
        if found.any():
            sorted_labels = self._sorted_labels[at]
            holds = found & (self._fids[sorted_labels] == fids)
            labels[holds] = sorted_labels[holds]
        if len(self._recent) and len(fids) <= len(self._recent):
            for i, fid in enumerate(fids.tolist()):
                if (label := self._recent.get(fid)) is not None:
                    labels[i] = label
        elif self._recent:  # (many ids asked for: the recent ones looked up among them)
            recent = np.fromiter(self._recent.keys(), np.int64, len(self._recent))
            order = np.argsort(fids, kind="stable")
            at, asked = looked_up(fids[order], recent)
            recent_labels = np.fromiter(self._recent.values(), np.int64, len(self._recent))
            labels[order[at[asked]]] = recent_labels[asked]
        return labels

    def _empty(self) -> None:
        self._start(False, [], np.zeros(0, np.int64), np.zeros(0, bool))

    @property
    def approximate(self) -> bool:
        """Whether the graph answers (past `approximate_above` live vectors)."""
        return self._graph

    @property
    def parts(self) -> int:
        return len(self._parts)

    def _view(self, part: int) -> np.ndarray:
        return _stored_in(self._parts[part])

    def _by_part(self, labels: np.ndarray):
        """(part, positions in `labels`, the labels' rows in that part) for each part that
        holds any of `labels`."""
        part_of = np.searchsorted(self._starts, labels, side="right") - 1
        for part in np.unique(part_of).tolist():
            at = np.flatnonzero(part_of == part)
            yield part, at, labels[at] - self._starts[part]

    def _vectors(self, labels: np.ndarray) -> np.ndarray:
        """These labels' vectors, copied out of their parts in the labels' order."""
        labels = np.asarray(labels, dtype=np.int64)
        out = np.empty((len(labels), self.dimension), dtype=np.float32)
        for part, at, rows in self._by_part(labels):
            out[at] = self._view(part)[rows]
        return out

    @property
    def _writes_flat(self) -> bool:
        """Whether new vectors go into flat parts only, whose graphs a builder adds behind
        (graph_left_behind): a write past the threshold then costs a copy of its vectors,
        where adding them to a graph took most of the write (docs/benchmarks.md)."""
        return self.graph_left_behind and self._graph

    def _append(self, vectors: np.ndarray) -> None:
        """Add vectors under the next labels: into the last part until it holds `part_size`,
        then into new ones."""
        done = 0
        while done < len(vectors):
            last = self._parts[-1] if self._parts else None
            if (
                last is None
                or last.ntotal >= self.part_size
                or last is self._sealed
                or (self._writes_flat and isinstance(last, faiss.IndexHNSWFlat))
            ):
                self._parts.append(self._new_part())
                self._starts = np.append(self._starts, self._starts[-1])
            last = self._parts[-1]
            take = min(len(vectors) - done, self.part_size - last.ntotal)
            last.add(np.ascontiguousarray(vectors[done : done + take]))
            self._starts[-1] += take
            done += take

    def _set(self, entries: dict[int, bytes]) -> None:
        """Store these vectors under new labels; any earlier label of the same id dies."""
        if not entries:
            return
        self._unset(entries.keys())
        count, start = len(entries), self._size
        vectors = np.frombuffer(b"".join(entries.values()), dtype="<f4").reshape(
            count, self.dimension
        )
        if start + count > len(self._fids):  # grow by doubling: amortised constant per label
            room = max(start + count, 2 * len(self._fids), 1024)
            self._fids = np.resize(self._fids, room)
            self._alive = np.resize(self._alive, room)
        self._append(vectors)
        self._fids[start : start + count] = np.fromiter(entries.keys(), np.int64, count)
        self._alive[start : start + count] = True
        self._recent.update(zip(entries.keys(), range(start, start + count)))
        self._size += count
        self._live += count
        if len(self._recent) > LABELS_SORTED_AFTER:
            self._sort_labels()
        self._live_bitmaps = None

    def _unset(self, fids: Iterable[int]) -> None:
        """Kill these ids' labels, and zero their vectors: nothing of a removed (above all a
        forgotten) fragment's vector stays in memory or in the next file, compacted or not."""
        fids = np.fromiter(fids, dtype=np.int64)
        labels = self._labels_of(fids)
        dead = np.unique(labels[labels >= 0])
        for fid in fids.tolist():
            self._recent.pop(fid, None)
        if len(dead):
            self._live -= len(dead)
            self._alive[dead] = False
            self._fids[dead] = -1
            for part, _, rows in self._by_part(dead):
                self._view(part)[rows] = 0.0
            self._live_bitmaps = None

    def _reshape(self) -> None:
        """Build the graph once the live vectors pass the threshold (drop it below half of
        it: hysteresis, so a store at the threshold does not rebuild at every write), and
        compact the stored vectors once dead labels pile up."""
        live = self._live
        graph = live > (self.approximate_above // 2 if self.approximate else self.approximate_above)
        if graph and not self.approximate:
            if self.graph_deferred:
                graph = False  # (a rebuild's: settled at its end, settle_deferred)
            elif self.graph_left_behind:
                self._approximate_flat()
                return
        dead = self._size - live
        if graph != self.approximate or dead > max(COMPACT_MIN, COMPACT_SHARE * self._size):
            self._compact(graph)

    def _compact(self, graph: bool) -> None:
        """The live vectors again, from label 0, in parts of this kind: each old part is let
        go once its vectors are copied, so a compaction holds one part more than the index."""
        old, starts, alive = self._parts, self._starts, self._alive[: self._size]
        labels = np.flatnonzero(alive)
        self._start(graph, [], self._fids[labels], np.ones(len(labels), dtype=bool))
        for part in range(len(old)):
            rows = np.flatnonzero(alive[starts[part] : starts[part + 1]])
            stored = _stored_in(old[part])
            for chunk in range(0, len(rows), 65_536):
                self._append(stored[rows[chunk : chunk + 65_536]])
            old[part] = None  # (its memory goes now, not at the end)

    # -- the graph built behind a rebuild

    @property
    def graph_pending(self) -> int:
        """Parts still flat in an index that the graph answers: their graphs are being built
        (graph_behind); meanwhile a search scans them, exactly."""
        if not self._graph:
            return 0
        return sum(not isinstance(part, faiss.IndexHNSWFlat) for part in self._parts)

    def settle_deferred(self) -> bool:
        """End graph_deferred: past the threshold, the index is the graph's from now on (new
        parts are graphs), its flat parts waiting for theirs. Whether any wait."""
        self.graph_deferred = False
        if not self._graph and self._live > self.approximate_above:
            self._approximate_flat()
        return self.graph_pending > 0

    def _approximate_flat(self) -> None:
        """The graph's from now on (new parts are graphs), its parts flat until their graphs
        are built (graph_behind): meanwhile a search scans them, exactly."""
        if self._size > self._live:
            # The dead left out first (a flat copy, part by part): their zeroed vectors
            # would be nodes of the graph.
            self._compact(False)
        self._graph = True
        self._live_bitmaps = None

    def next_graph_job(self) -> GraphJob | None:
        """The first flat part's graph to build, with what it is built from; None when none
        is left. Called under the store's lock; the job is built outside it (GraphJob.build)
        and put in place under it again (install)."""
        if not self._graph:
            return None
        for number, part in enumerate(self._parts):
            if isinstance(part, faiss.IndexHNSWFlat):
                continue
            # The part is sealed until the job ends: new vectors go to a new part meanwhile,
            # so FAISS never moves its storage, which the job reads in place, with no copy
            # (and the job holds the part: a compaction meanwhile lets go of it, not of its
            # memory).
            self._sealed = part
            # A graph part just before it with room for its vectors takes them (a copy of
            # it, with them added, replaces both): the parts a write leaves flat are small,
            # and as many graph parts would each cost a query a graph search of its own.
            # Only a graph of at most half a part takes them: the copy, and its storage
            # doubling as they are added, cost about three times the part at the merge's
            # peak (an ingest of 100,000: peak RSS 527 MB with this bound, 735 MB without).
            before = self._parts[number - 1] if number else None
            if (
                isinstance(before, faiss.IndexHNSWFlat)
                and before.ntotal <= self.part_size // 2
                and before.ntotal + part.ntotal <= self.part_size
            ):
                return GraphJob(self._layout, number, part, _stored_in(part), None, before)
            return GraphJob(self._layout, number, part, _stored_in(part), self._new_graph())
        return None

    def install(self, job: GraphJob) -> bool:
        """Put a built graph in its flat part's place (under the store's lock), the vectors
        of what died meanwhile zeroed in the graph's copy too. False when the parts were made
        anew meanwhile (a compaction, a reset): the job is discarded."""
        number = job.number
        first = number - 1 if job.base is not None else number
        if (
            job.layout != self._layout
            or number >= len(self._parts)
            or self._parts[number] is not job.part
            or (job.base is not None and self._parts[first] is not job.base)
        ):
            job.discard()
            return False
        self._sealed = None
        dead = np.flatnonzero(~self._alive[self._starts[first] : self._starts[number + 1]])
        _stored_in(job.graph)[dead] = 0.0
        self._parts[first : number + 1] = [job.graph]
        self._starts = np.delete(self._starts, number) if first != number else self._starts
        self._live_bitmaps = None
        self._dirty = True
        return True

    def graph_behind(self, lock: Any, stop: threading.Event) -> None:
        """Build every flat part's graph while the store goes on: each part's graph built
        outside `lock` (FAISS lets go of the GIL while it adds), put in place under it; until
        none is left, or `stop` is set (the store closes: the next open goes on)."""
        while not stop.is_set():
            with lock:
                job = self.next_graph_job()
            if job is None:
                return
            built = job.build(stop)
            with lock:
                if not built:
                    if self._sealed is job.part:
                        self._sealed = None
                    job.discard()
                    return
                self.install(job)

    # -- the projection

    @property
    def position(self) -> int:
        return self._position

    @property
    def count(self) -> int:
        return self._live

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
        self._unset(removed)
        self._set(added)
        # (Settled after each batch, not once at the end of a catch-up: a rebuild's graph
        # built in one add was 3% faster at 100k, but its copy of every flat vector into the
        # graph's parts at the end put 227 MiB on the peak, where switching at the threshold
        # copies only that many.)
        self._reshape()
        self._position = max(self._position, batch[-1][0])
        self._dirty = True

    # -- search

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """Top-k (faiss id, inner product); `allowed` restricts the search to those ids.
        k come back whenever k are allowed: what the graph cannot find under a filter is
        searched exactly."""
        live = self._live
        if k <= 0 or live == 0:
            return []
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, self.dimension)
        if allowed is None:
            k = min(k, live)
            bitmaps = self._bitmaps_of_live() if live < self._size else None
            if self.approximate:
                found = self._search_parts(q, k, bitmaps, graph=True)
                if len(found) == k:
                    return found
            return self._search_parts(q, k, bitmaps, graph=False)
        labels = self._labels_of(np.unique(allowed))
        labels = labels[labels >= 0]
        if len(labels) == 0:
            return []
        k = min(k, len(labels))
        if self.approximate and len(labels) > EXACT_SUBSET:
            mask = np.zeros(self._size, dtype=bool)
            mask[labels] = True
            found = self._search_parts(q, k, self._bitmaps(mask), graph=True)
            if len(found) == k:
                return found
        # A narrow filter: its own vectors, scored by FAISS' kernel as a full scan scores them.
        scores, rows = faiss.knn(q, self._vectors(labels), k, metric=faiss.METRIC_INNER_PRODUCT)
        found = rows[0] >= 0
        return self._hits(scores[0][found], labels[rows[0][found]])

    def scan(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """Top-k by a scan of every live vector: the exact answer, which the graph
        approximates (what `carma bench scale` measures it against)."""
        live = self._live
        if k <= 0 or live == 0:
            return []
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, self.dimension)
        bitmaps = self._bitmaps_of_live() if live < self._size else None
        return self._search_parts(q, min(k, live), bitmaps, graph=False)

    def _search_parts(
        self, q: np.ndarray, k: int, bitmaps: list[np.ndarray] | None, graph: bool
    ) -> list[tuple[int, float]]:
        """Each part's top k (by its graph, or by a scan of its vectors), merged: only the
        labels a part's bitmap allows, if given. With more than one part to search, the
        second half of them is searched on the index's search thread meanwhile (FAISS lets
        go of the GIL while it searches; a query searches one part on one core)."""
        searched = [
            part
            for part, stored in enumerate(self._parts)
            if stored.ntotal and (bitmaps is None or bitmaps[part].any())
        ]
        if len(searched) > 1 and SEARCH_BESIDE:
            half = (len(searched) + 1) // 2
            later = self._search_thread().submit(
                self._search_each, searched[half:], q, k, bitmaps, graph
            )
            found = self._search_each(searched[:half], q, k, bitmaps, graph) + later.result()
        else:
            found = self._search_each(searched, q, k, bitmaps, graph)
        if not found:
            return []
        merged_scores = np.concatenate([scores for scores, _ in found])
        merged_labels = np.concatenate([labels for _, labels in found])
        best = np.argsort(-merged_scores, kind="stable")[:k]
        return self._hits(merged_scores[best], merged_labels[best])

    def _search_thread(self) -> ThreadPoolExecutor:
        """The thread that searches half of a query's parts: started with the first query
        that has two parts to search, and again in a child process (a fork has no threads)."""
        if self._searcher is None or self._searcher_pid != os.getpid():
            self._searcher = ThreadPoolExecutor(1, thread_name_prefix="carma-index-search")
            self._searcher_pid = os.getpid()
        return self._searcher

    def _search_each(
        self,
        parts: list[int],
        q: np.ndarray,
        k: int,
        bitmaps: list[np.ndarray] | None,
        graph: bool,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """(scores, labels) of each of these parts' top k."""
        found = []
        for part in parts:
            stored = self._parts[part]
            # (a part still flat while the graph is built behind a rebuild: scanned, exact)
            if graph and isinstance(stored, faiss.IndexHNSWFlat):
                searched = stored
                params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k))
            else:
                searched, params = _flat_of(stored), faiss.SearchParameters()
            if bitmaps is not None:  # (the bitmap stays referenced while FAISS reads it)
                bitmap = bitmaps[part]
                params.sel = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
            scores, labels = searched.search(q, min(k, stored.ntotal), params=params)
            kept = labels[0] >= 0
            found.append((scores[0][kept], labels[0][kept] + self._starts[part]))
        return found

    def _hits(self, scores: np.ndarray, labels: np.ndarray) -> list[tuple[int, float]]:
        return [(int(fid), float(score)) for fid, score in zip(self._fids[labels], scores)]

    def _bitmaps_of_live(self) -> list[np.ndarray]:
        if self._live_bitmaps is None:
            self._live_bitmaps = self._bitmaps(self._alive[: self._size])
        return self._live_bitmaps

    def _bitmaps(self, mask: np.ndarray) -> list[np.ndarray]:
        """Each part's share of a mask over all labels, as the bitmap FAISS reads (bit i of a
        part's: its label i)."""
        return [
            np.packbits(mask[self._starts[part] : self._starts[part + 1]], bitorder="little")
            for part in range(len(self._parts))
        ]

    # -- reading and repairing single vectors

    def vector(self, fid: int) -> np.ndarray | None:
        labels = self._labels_of(np.array([int(fid)]))
        return None if labels[0] < 0 else self._vectors(labels)[0]

    def ids(self) -> np.ndarray:
        return self._fids[: self._size][self._alive[: self._size]]

    def fingerprints(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, fingerprints of their vectors) of every entry, for a scrub to compare with
        the ledger: read where FAISS keeps them, in chunks, so a scrub of a million vectors
        needs no copy of them (callers hold the store's lock: nothing moves them meanwhile)."""
        labels = np.flatnonzero(self._alive[: self._size])
        parts = [
            vector_fingerprints(self._vectors(labels[start : start + 8192]))
            for start in range(0, len(labels), 8192)
        ]
        return self._fids[labels], np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def put(self, entries: dict[int, bytes]) -> None:
        """Set the vectors of these ids (a repair): whatever was there is replaced."""
        if not entries:
            return
        self._set(entries)
        self._reshape()
        self._changed_since_file += len(entries)
        self._dirty = True

    def remove(self, ids: list[int]) -> None:
        if ids:
            self._unset(int(i) for i in ids)
            self._reshape()
            self._changed_since_file += len(ids)
            self._dirty = True

    # -- the file

    def _load(self) -> None:
        try:
            file = self.path.open("rb")
        except FileNotFoundError:
            raise IndexFileError("missing", "index file is missing") from None
        except OSError as exc:
            raise IndexFileError(
                "unreadable", f"index file is unreadable: {exc.strerror}"
            ) from None
        with file:
            header = _read_header(file)
            start = file.tell()
            try:
                digest = _digest(file)
            except OSError as exc:
                raise IndexFileError(
                    "unreadable", f"index file is unreadable: {exc.strerror}"
                ) from None
            if digest != header.get("sha256"):
                raise IndexFileError("corrupt", "index file fails its checksum")
            if header.get("dimension") != self.dimension:
                raise IndexFileError("corrupt", "index file has another dimension")
            file.seek(start)
            try:
                if header["format"] == 1:
                    self._load_identity_map(file)
                else:
                    self._load_labels(file, header)
            except (RuntimeError, ValueError, KeyError, TypeError):
                raise IndexFileError("corrupt", "index file holds no index of this kind") from None
        if self.count != header.get("count"):
            raise IndexFileError(
                "corrupt", "index file holds another number of vectors than its header"
            )
        self._position = int(header["position"])
        self._verified, self._verified_position = _signature(self.path), self._position

    def _load_labels(self, file: BinaryIO, header: dict) -> None:
        size = int(header["labels"])
        fids = np.frombuffer(file.read(8 * size), dtype="<i8")
        alive = np.frombuffer(file.read(size), dtype=np.uint8)
        graph = header.get("kind") == "approximate"
        # (an approximate index saved while its graph was built behind a rebuild holds flat
        # parts too: graph_behind builds theirs once the store is open)
        kind = (faiss.IndexHNSWFlat, faiss.IndexFlatIP) if graph else faiss.IndexFlatIP
        parts = []
        if header["format"] >= 3:  # each part's count, in the body (the header's room is fixed)
            counts = np.frombuffer(file.read(8 * int(header["parts"])), dtype="<i8").tolist()
        else:  # format 2 kept one index: one part, however large
            counts = [size]
        for count in counts:
            part = faiss.read_index(faiss.PyCallbackIOReader(file.read))
            if (
                not isinstance(part, kind)
                or part.metric_type != faiss.METRIC_INNER_PRODUCT
                or part.d != self.dimension
                or part.ntotal != int(count)
            ):
                raise ValueError
            if isinstance(part, faiss.IndexHNSWFlat):
                part.hnsw.efConstruction = GRAPH_EF_CONSTRUCTION
            parts.append(part)
        if sum(part.ntotal for part in parts) != size or len(fids) != size or len(alive) != size:
            raise ValueError
        self._start(graph, parts, fids, alive.astype(bool))

    def _load_identity_map(self, file: BinaryIO) -> None:
        """A file of format 1 (one IndexIDMap2 over a flat index): its vectors, by label."""
        index = faiss.deserialize_index(np.frombuffer(file.read(), dtype=np.uint8))
        if not isinstance(index, faiss.IndexIDMap2):
            raise ValueError
        fids = faiss.vector_to_array(index.id_map).astype(np.int64)
        flat = faiss.downcast_index(index.index)
        vectors = faiss.rev_swig_ptr(flat.get_xb(), flat.ntotal * flat.d).reshape(
            flat.ntotal, flat.d
        )
        converted = faiss.IndexFlatIP(self.dimension)
        converted.add(np.ascontiguousarray(vectors))
        self._start(False, [converted], fids, np.ones(len(fids), dtype=bool))
        self._dirty = True  # written again in today's format when next saved
        self._reshape()

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
            with self.path.open("rb") as file:
                try:
                    header = _read_header(file)
                except IndexFileError:
                    return "unreadable"
                digest = _digest(file)
        except FileNotFoundError:
            return "missing"
        except OSError:
            return "unreadable"
        if digest != header.get("sha256"):
            return "corrupt"
        position = int(header["position"])
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

    def save(self) -> None:
        """Persist the index with the position it reflects (on close and after a rebuild),
        streamed: the body is written and hashed in pieces, then its header put before it."""

        def write(file: BinaryIO) -> None:
            file.write(b" " * HEADER_BYTES)
            digest = hashlib.sha256()

            def put(chunk: bytes) -> int:
                digest.update(chunk)
                return file.write(chunk)

            put(self._fids[: self._size].astype("<i8").tobytes())
            put(self._alive[: self._size].astype(np.uint8).tobytes())
            put(np.array([part.ntotal for part in self._parts], dtype="<i8").tobytes())
            for part in self._parts:
                faiss.write_index(part, faiss.PyCallbackIOWriter(put))
            header = {
                "format": FORMAT,
                "position": self._position,
                "dimension": self.dimension,
                "count": self.count,
                "labels": self._size,
                "parts": len(self._parts),
                "kind": "approximate" if self.approximate else "exact",
                "sha256": digest.hexdigest(),
            }
            line = json.dumps(header).encode()
            if len(line) >= HEADER_BYTES:  # (never: every field is a number but the digest)
                raise ValueError("the index file's header does not fit its room")
            file.seek(0)
            file.write(line.ljust(HEADER_BYTES - 1) + b"\n")

        atomic_write(self.path, write)
        self._dirty = False
        self._verified, self._verified_position = _signature(self.path), self._position
        self._file_position, self._changed_since_file = self._position, 0

    def reset(self) -> None:
        self._empty()
        self._position = 0
        self._file_position = None  # the file on disk is no state of this index any more
        self.load_error = None
        self._dirty = True

    def close(self) -> None:
        if self._searcher is not None:
            self._searcher.shutdown()
            self._searcher = None
        if self._dirty:
            self.save()

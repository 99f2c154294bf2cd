"""Memory: CARMA's public API. Each method is one use case; results are pydantic models."""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import os
import sqlite3
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from eventsourcing.persistence import StoredEvent

from carma.domain import (
    CarmaError,
    ConflictError,
    CorruptEvent,
    Draft,
    Fragment,
    FragmentGone,
    FragmentNotFound,
    InvalidInput,
    StorageError,
    content_hash,
    fragment_uuid,
    validate_embedding,
    validate_key,
    validate_namespace,
    validate_text,
)
from carma.domain.filters import EVERYTHING, Filter, matches, parse_filter
from carma.embedding import Embedder
from carma.healing import Dreamer, DreamScheduler
from carma.healing.scrubber import cache_fault, is_exact_copy, recorded_identity
from carma.home import Home
from carma.lines import InvalidLines, draft_from_line, export_line
from carma.log import (
    EVENT_KINDS,
    EVENT_TOPICS,
    MemoryLog,
    Write,
    checksum_holds,
    storage_errors,
)
from carma.log.chain import verify_chain
from carma.log.sqlite import copy_log, copy_shared_log
from carma.projections import FragmentCache, HealthLedger, ProjectionRunner, VectorIndex
from carma.projections.ledger import canonical_json
from carma.records import (
    BatchResult,
    FragmentEvent,
    FragmentRecord,
    HistoryEntry,
    Hit,
    ImportResult,
)
from carma.search import (
    HYBRID_DEPTH,
    SCORE_DIGITS,
    TIED_MARGIN,
    bm25,
    check_mode,
    cosine_ranking,
    fuse,
    query_words,
    ranking_key,
)
from carma.search import words as search_words

if TYPE_CHECKING:
    from carma.log.postgres import PostgresURL

K_MAX = 1_000
logger = logging.getLogger("carma")


def _guarded(doing: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with storage_errors(doing):
                return method(*args, **kwargs)

        return wrapper

    return decorate


EMBED_BATCH = 64
GRAPH_PROGRESS_S = 0.5  # how often wait_for_graph tells its progress


class Memory:
    """A CARMA store. Open it with `carma.open(...)`; use it as a context manager."""

    def __init__(
        self,
        *,
        home: Path,
        log: MemoryLog,
        embedder: Embedder,
        cache: FragmentCache,
        index: VectorIndex,
        ledger: HealthLedger,
        runner: ProjectionRunner,
        dreamer: Dreamer,
        lock: threading.RLock,
        chain_key: bytes | None = None,
        new_projections: bool = False,
        database: PostgresURL | None = None,
        open_replay: Callable[[Path], Memory],
    ):
        self.home = home
        self.log = log
        self.embedder = embedder
        self.cache = cache
        self.index = index
        self.ledger = ledger
        self.runner = runner
        self.dreamer = dreamer
        self._chain_key = chain_key
        self.database = database  # None: the log is the home's own SQLite file
        self._open_replay = open_replay  # opens a replay's copy as this store is opened
        self.scheduler: DreamScheduler | None = None
        self._lock = lock
        self._write_lock = threading.RLock()
        self._closed = False
        # The thread building the index's graph behind a rebuild, or behind writes past the
        # index's threshold, which go into flat parts (VectorIndex.graph_behind).
        self._graph_builder: threading.Thread | None = None
        self._graph_stop = threading.Event()
        # Under the store's lock: whether a builder runs (it says it ends under the lock, as
        # a write that leaves a part flat looks), and whether the last one failed (a write
        # then starts none: a rebuild or the next open tries again).
        self._graph_running = self._graph_failed = False
        # A write that takes the index past its threshold leaves the graph to that thread.
        self.index.graph_left_behind = True
        self.catch_up()
        self._note_index_file(new_projections)
        self._build_graph_behind()  # (an index saved before its graph was whole: built now)

    def _note_index_file(self, new_projections: bool) -> None:
        """The index file could not be loaded, so the index was rebuilt from the log on open:
        record that finding (the next heal rewrites the file). A new store, or one whose
        projections are being built for the first time (a replay), just writes one."""
        error = self.index.load_error
        if error is None:
            return
        if new_projections or self.log.position() == 0:
            self.index.save()
        else:
            self.dreamer.record([], error.fault, None)
            by_status = self.ledger.counts()["by_status"]
            if self.index.count < by_status.get("healthy", 0) + by_status.get("approximate", 0):
                # A vector the file held and the log no longer can (its event damaged since):
                # without a heal now, no query would find its fragment until the next dream
                # cycle. (Rare: the file and an event lost between two opens.)
                self.dreamer.scrub()
                self.dreamer.heal()
        self.index.load_error = None

    # -- writes ----------------------------------------------------------------------------------

    def add(
        self,
        text: str,
        metadata: dict[str, Any] | None = None,
        namespace: str = "default",
        id: str | None = None,
        *,
        embedding: Any = None,
    ) -> str:
        """Store a fragment; returns its id. Identical content already stored records nothing.
        `embedding`: its vector (a list of floats or a 1-d float array of the store's
        dimension, normalised on the way in), in which case the model does not run."""
        return self._write([Draft.of(text, metadata, namespace, id, embedding)]).ids[0]

    def add_many(
        self, items: Iterable[Any], *, progress: Callable[[int], None] | None = None
    ) -> BatchResult:
        """Store many fragments in one transaction: every item is recorded, or none is.

        Items are strings or mappings {"text", "metadata"?, "namespace"?, "id"?,
        "embedding"?}: an item with its embedding is not given to the model.
        """
        drafts = [Draft.from_mapping(item) for item in items]
        return self._write(drafts, progress=progress)

    def import_lines(
        self,
        lines: Iterable[str | bytes | Mapping[str, Any]],
        *,
        skip_invalid: bool = False,
        batch_size: int = 256,
        progress: Callable[[int], None] | None = None,
    ) -> ImportResult:
        """Import JSON lines (see carma.lines; a line of `export_lines` re-imports as is).

        Every line is checked before anything is written. Without `skip_invalid` one bad line
        refuses them all (InvalidLines lists them) and the import is one transaction; with
        it, the valid lines are written `batch_size` at a time, and a line the store refuses
        (a deleted id, say) is counted rejected, with why, in `problems`."""
        if (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, int)
            or not 1 <= batch_size <= 10_000
        ):
            raise InvalidInput("batch_size must be a whole number from 1 to 10000")
        drafts: list[Draft] = []
        problems: list[str] = []
        for number, line in enumerate(lines, 1):
            if isinstance(line, (str, bytes)) and not line.strip():
                continue
            try:
                drafts.append(draft_from_line(line))
            except InvalidInput as exc:
                problems.append(f"line {number}: {exc}")
        if problems and not skip_invalid:
            raise InvalidLines(problems)
        result = ImportResult(rejected=len(problems), problems=problems)
        if not skip_invalid:  # all or nothing: one transaction
            batches = [self._write(drafts, progress=progress)] if drafts else []
        else:
            batches = []
            for start in range(0, len(drafts), batch_size):
                chunk = drafts[start : start + batch_size]
                try:
                    batches.append(self._write(chunk))
                except CarmaError:
                    for draft in chunk:  # isolate the item the log refuses
                        try:
                            batches.append(self._write([draft]))
                        except CarmaError as exc:
                            result.rejected += 1
                            result.problems.append(
                                f"rejected {draft.id or draft.text[:40]!r}: {exc}"
                            )
                if progress:
                    progress(len(chunk))
        for batch in batches:
            for outcome in ("added", "revised", "unchanged", "restored"):
                setattr(result, outcome, getattr(result, outcome) + getattr(batch, outcome))
        return result

    @_guarded("the revision was not recorded")
    def revise(
        self,
        id: str,
        text: str | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        embedding: Any = None,
    ) -> FragmentRecord:
        """Replace a fragment's text, metadata and/or vector (`embedding`: given, the model
        does not run). The same content again records nothing."""
        key = validate_key(id)
        if text is None and metadata is None and embedding is None:
            raise InvalidInput("revise needs a new text, new metadata, a new embedding, or some")
        with self._write_lock:
            fragment = self._identified(self.log.fragment(key))
            if fragment.deleted:
                raise FragmentGone(key)
            if text is None and (fragment.text is None or fragment.approximate):
                raise InvalidInput(
                    f"the text of fragment {key!r} is "
                    + ("an approximate reconstruction" if fragment.text else "lost")
                    + ": give the text to revise it (the original's text restores it exactly)"
                )
            draft = Draft.of(
                fragment.text if text is None else text,
                fragment.metadata if metadata is None else metadata,
                fragment.namespace,
                key,
                embedding,
            )
            self._write([draft])
        return self.get(key)

    @_guarded("the deletion was not recorded")
    def delete(self, id: str, reason: str = "") -> bool:
        """Delete a fragment (its events stay in the log for audit). False if already deleted."""
        key = validate_key(id)
        if not isinstance(reason, str) or len(reason) > 1_000 or "\x00" in reason:
            raise InvalidInput("reason must be a string of at most 1000 characters")
        with self._write_lock:
            deleted = self.log.delete(key, reason)
        self.catch_up()
        return deleted

    @_guarded("the fragment was not forgotten")
    def forget(self, id: str, reason: str) -> bool:
        """Forget a fragment for good (crypto-shredding): its key is destroyed, so no copy of
        its text, metadata or embedding can be read again, in the log or in any backup of it;
        its cache file, index entry and ledger metadata go too. Its history keeps that it
        existed and was forgotten, when and why. False if it was forgotten already."""
        key = validate_key(id)
        if not isinstance(reason, str) or not reason.strip() or len(reason) > 1_000:
            raise InvalidInput("forgetting needs a reason (at most 1000 characters)")
        with self._write_lock:
            forgotten = self.log.forget(key, reason)
        with self._lock:
            self.catch_up()
            # No copy may survive in a file: rewrite the index file without the vector, and
            # leave no old ledger page in the WAL.
            self.index.save()
            self.ledger.forget_words()
        return forgotten

    @_guarded("the write was not recorded")
    def _write(
        self, drafts: list[Draft], progress: Callable[[int], None] | None = None
    ) -> BatchResult:
        # Writers take turns (so that two writes of one new text cannot both add it); readers
        # do not wait for them: the store's lock is held only to read the ledger and to catch
        # up, never while the model runs.
        with self._write_lock:
            with self._lock:
                self.catch_up()
                try:
                    if self.ledger.name in self.runner.errors:
                        # It could not catch up: it would not know the latest writes.
                        raise sqlite3.DatabaseError(self.runner.errors[self.ledger.name])
                    stored = self.ledger.live_keys_with_content(
                        [(d.namespace, d.content_hash) for d in drafts if d.id is None]
                    )
                    keys, known = self._assign_keys(drafts, stored)
                    damaged = self.ledger.damaged_content(k for k in keys if k in known)
                except sqlite3.DatabaseError as exc:
                    # The ledger is damaged, or behind the log: the log answers instead, and
                    # the write stands (the ledger catches up once a dream cycle has rebuilt
                    # it).
                    self._ledger_failed(exc)
                    stored, damaged_all = self._content_from_log()
                    keys, known = self._assign_keys(drafts, stored)
                    damaged = {k: v for k, v in damaged_all.items() if k in known}
            # A text already live in its namespace, offered without an id, is that fragment:
            # nothing is recorded, whatever metadata came with it. The text with the recorded
            # content hash of a fragment whose body is lost or approximate is its exact copy:
            # it restores the body exactly.
            matched, seen, exact = set(), set(), {}
            for i, (draft, key) in enumerate(zip(drafts, keys)):
                digest, recorded_metadata = damaged.get(key, (None, None))
                if digest == draft.content_hash and (
                    draft.id is None
                    or recorded_metadata is None
                    or canonical_json(draft.metadata) == recorded_metadata
                ):
                    exact.setdefault(key, draft)
                    matched.add(i)
                elif draft.id is None and (key in known or key in seen):
                    matched.add(i)
                seen.add(key)
            restored = self._restore_exact(exact)
            todo = [(d, k) for i, (d, k) in enumerate(zip(drafts, keys)) if i not in matched]
            existing = self.log.fragments(
                k for k in dict.fromkeys(k for _, k in todo) if k in known
            )
            existing.update(
                {
                    k: self._identified(f)
                    for k, f in existing.items()
                    if f is not None and f.namespace is None
                }
            )
            # Check every item against the log before the model runs: a batch is all or nothing.
            new_texts: dict[str, None] = {}  # ordered set: each new text is embedded once
            given: dict[int, bytes] = {}  # by item: the vector its caller gave, normalised
            for i, (draft, key) in enumerate(todo):
                fragment = existing.get(key)
                if fragment is not None:
                    fragment.ensure_writable(draft.namespace)
                if draft.embedding is not None:
                    given[i] = self._given_vector(draft.embedding)
                elif fragment is None or fragment.text != draft.text:
                    new_texts[draft.text] = None
            vectors = self._embed(list(new_texts), progress)
            if given and progress:
                progress(len(given))
            model = {"name": self.embedder.name, "dimension": self.embedder.dimension}
            writes = []
            for i, (draft, key) in enumerate(todo):
                fragment = existing.get(key)
                new_text = fragment is None or fragment.text != draft.text
                embedding = given.get(i) or (vectors[draft.text] if new_text else None)
                writes.append(Write(draft, key, embedding, fresh=key not in known))
            changes = self.log.write_many(writes, model) if writes else []
        self.catch_up()  # a failing projection waits (see ProjectionRunner): the write stands
        result = BatchResult(ids=keys, unchanged=len(matched) - restored, restored=restored)
        for change in changes:
            setattr(result, change.outcome, getattr(result, change.outcome) + 1)
        return result

    def _ledger_failed(self, exc: Exception) -> None:
        """The ledger's file refused a read: said in `health` and `stats` (projection_errors),
        confirmed and repaired by the next dream cycle (carma.copies)."""
        self.runner.errors[self.ledger.name] = f"{type(exc).__name__}: {exc}"
        if self.scheduler is not None:
            self.scheduler.wake()

    def _content_from_log(
        self,
    ) -> tuple[dict[tuple[str, str], str], dict[str, tuple[str, str | None]]]:
        """What the ledger answers a write with, read from the log instead (a pass over it):
        (namespace, content hash) -> the oldest live fragment holding that text, and the
        recorded content of each fragment whose body is lost or approximate."""
        live: dict[tuple[str, str], str] = {}
        damaged: dict[str, tuple[str, str | None]] = {}
        for f in self.log.fragments_at(self.log.position()).values():
            if f.deleted or f.key is None or f.namespace is None or f.content_hash is None:
                continue
            live.setdefault((f.namespace, f.content_hash), f.key)
            if f.text is None or f.approximate:
                meta = None if f.metadata is None else canonical_json(f.metadata)
                damaged[f.key] = (f.content_hash, meta)
        return live, damaged

    def _identified(self, fragment: Fragment) -> Fragment:
        """A fragment whose first event is unreadable, and not yet found so by a scrub,
        knows neither its id nor its namespace: record the damage now, with what the ledger
        knows of it, so that a write to it keeps its namespace (see Fragment.mark_unreadable)."""
        if fragment.namespace is not None or fragment.deleted:
            return fragment
        with self._lock:
            try:
                row = self.ledger.row_by_uuid(str(fragment.id))
            except sqlite3.DatabaseError as exc:
                self._ledger_failed(exc)
                row = None
        if row is not None and fragment.mark_unreadable(
            fragment.unreadable, recorded_identity(row), None
        ):
            self.log.record(fragment)
        return fragment

    def _restore_exact(
        self, copies: dict[str, Draft], embeddings: dict[str, bytes] | None = None
    ) -> int:
        """Restate the bodies of lost or approximate fragments from exact copies of their
        text (a re-add, an import), under the writers' lock; returns how many."""
        restored = 0
        for key, draft in copies.items():
            fragment = self._identified(self.log.fragment(key))
            if fragment.content_hash != draft.content_hash:
                continue  # the log records another text for it: no exact copy after all
            embedding = (embeddings or {}).get(key) or fragment.embedding
            if embedding is None and draft.embedding is not None:
                embedding = self._given_vector(draft.embedding)
            if embedding is None:  # the body's embedding is lost too: the model remakes it
                embedding = self._embed([draft.text], None)[draft.text]
            if fragment.restore_body(
                method="exact-copy",
                fidelity=1.0,
                text=draft.text,
                metadata=fragment.metadata if fragment.metadata is not None else draft.metadata,
                embedding=embedding,
                sources=[],
                cycle_id=None,
            ):
                self.log.record(fragment)
                self.log.snapshot(fragment)
                restored += 1
        return restored

    @staticmethod
    def _assign_keys(
        drafts: list[Draft], stored: dict[tuple[str, str], str]
    ) -> tuple[list[str], set[str]]:
        """Caller ids as given; otherwise the id of a live fragment with the same text in the
        same namespace (`stored`: writes are idempotent), else a fresh one. Returns the keys
        and the subset that may already exist in the log."""
        keys: list[str] = []
        known: set[str] = set()
        fresh: dict[tuple[str, str], str] = {}
        for draft in drafts:
            if draft.id is not None:
                keys.append(draft.id)
                known.add(draft.id)
                continue
            slot = (draft.namespace, draft.content_hash)
            key = stored.get(slot) or fresh.get(slot)
            if key is None:  # new text: a fresh id, shared by its repeats in this batch
                key = fresh[slot] = uuidlib.uuid4().hex
            elif slot in stored:
                known.add(key)
            keys.append(key)
        return keys, known

    def _embed(self, texts: list[str], progress: Callable[[int], None] | None) -> dict[str, bytes]:
        # Chunks of the whole write sorted by length, longest first (for the progress bar the
        # model gets one chunk at a time): a model pads each batch to its longest text, so
        # chunks in input order cost up to half again on text of varied length.
        by_length = sorted(texts, key=len, reverse=True)
        vectors: dict[str, bytes] = {}
        for start in range(0, len(by_length), EMBED_BATCH):
            chunk = by_length[start : start + EMBED_BATCH]
            matrix = self._check_vectors(self.embedder.embed(chunk), len(chunk))
            for text, row in zip(chunk, matrix):
                vectors[text] = row.astype("<f4").tobytes()
            if progress:
                progress(len(chunk))
        return vectors

    def _given_vector(self, embedding: bytes) -> bytes:
        """A vector a caller gave (float32 bytes, see validate_embedding), checked against the
        store's dimension and normalised: scores are cosines, as the model's are."""
        vector = np.frombuffer(embedding, dtype="<f4").astype(np.float64)
        if len(vector) != self.embedder.dimension:
            raise InvalidInput(
                f"the embedding has {len(vector)} values; this store's vectors have "
                f"{self.embedder.dimension}"
            )
        norm = float(np.linalg.norm(vector))
        if not norm > 0 or not np.isfinite(norm):
            raise InvalidInput("the embedding is all zeros: it points nowhere")
        return (vector / norm).astype("<f4").tobytes()

    def _check_vectors(self, matrix: Any, n: int) -> np.ndarray:
        matrix = np.asarray(matrix, dtype=np.float32)
        if matrix.shape != (n, self.embedder.dimension):
            raise InvalidInput(
                f"the embedder returned shape {matrix.shape}; expected ({n}, "
                f"{self.embedder.dimension})"
            )
        if not np.isfinite(matrix).all():
            raise InvalidInput("the embedder returned a NaN or an infinity")
        return matrix

    # -- reads -----------------------------------------------------------------------------------

    @_guarded("cannot read the fragment")
    def get(self, id: str) -> FragmentRecord:
        key = validate_key(id)
        with self._lock:
            self.catch_up()
            try:
                row = self.ledger.row(key)
            except sqlite3.DatabaseError as exc:  # a damaged ledger: the log answers
                self._ledger_failed(exc)
                return self._record_from_log(key)
            if row is None:
                if not self.runner.lag()["ledger"]:
                    raise FragmentNotFound(key)
                return self._record_from_log(key)  # the ledger is behind: ask the log
            if row["status"] in ("deleted", "forgotten"):
                raise FragmentGone(key)
            return self._record(row)

    def _record_from_log(self, key: str) -> FragmentRecord:
        fragment = self.log.fragment(key)
        if fragment.deleted:
            raise FragmentGone(key)
        return _record_of(
            key,
            fragment.namespace or "",
            fragment.content_version,
            fragment.content_hash or "",
            fragment,
            *self._expected_recall(fragment),
        )

    def _expected_recall(self, fragment: Fragment) -> tuple[float | None, str | None, str | None]:
        """An approximate body's expected share of the original's words, read off the
        latest calibration of its namespace (which may be newer than its repair), and where
        that calibration was measured; or None and why not: never a figure that was not
        measured."""
        if not fragment.approximate or fragment.namespace is None:
            return None, None, None
        method, ns = fragment.reconstructed_by, fragment.namespace
        with self._lock:
            expected = (
                None
                if method is None
                else self.ledger.expected_recall(
                    ns, method, fragment.fidelity, fragment.refinements
                )
            )
            if expected is not None:
                assert method is not None
                return expected, None, self.ledger.calibration_source(ns, method)
            return (
                None,
                self.ledger.recall_unknown(ns, method, fragment.fidelity, fragment.refinements),
                None,
            )

    def _record(self, row: dict[str, Any]) -> FragmentRecord:
        """The fragment behind a ledger row: from its cache file when that is intact and
        current, else from the log (the source of truth). An approximate body is always
        read from the log, which labels it; a body lost from the log is served from a cache
        file whose text has the recorded hash, else it is reported lost, never made up."""
        if row["status"] == "approximate":
            fragment = self.log.fragment(row["id"])
            return _record_of(
                row["id"],
                row["namespace"],
                row["version"],
                row["content_hash"],
                fragment,
                *self._expected_recall(fragment),
            )
        cached, fault = self.cache.inspect(row["uuid"])
        if cached is not None:
            fault = cache_fault(cached, row)
        fragment = None if fault is None else self.log.fragment(row["id"])
        if (
            fragment is not None
            and fragment.text is None
            and cached is not None
            and is_exact_copy(cached, row)
        ):
            fragment = None  # the log lost the body; this copy is exact (healing uses it)
        if fragment is None:
            return FragmentRecord(
                id=row["id"],
                namespace=row["namespace"],
                text=cached.text,
                metadata=cached.metadata,
                version=row["version"],
                status="healthy",
                fidelity=1.0,
                content_hash=row["content_hash"],
            )
        if fragment.text is not None:
            self._queue_repair(fragment, fault)
        return _record_of(
            row["id"], row["namespace"], row["version"], row["content_hash"], fragment
        )

    def _queue_repair(self, fragment: Any, fault: str) -> None:
        """A read met a lost copy: record the finding (the healer's queue is the log itself)
        and wake the background healer if one runs."""
        if fragment.mark_lost(self.dreamer.healer.replica.copy("cache"), fault, None):
            try:
                self.log.record(fragment)
            except ConflictError:
                return  # someone recorded it (or changed the fragment) first: the read stands
            self.catch_up()
            if self.scheduler is not None:
                self.scheduler.wake()

    @_guarded("cannot search")
    def search(
        self,
        query: str,
        k: int = 5,
        namespace: str | None = None,
        where: dict[str, Any] | None = None,
        *,
        mode: str = "semantic",
        as_of: int | datetime | None = None,
        approximate_keywords: bool = False,
    ) -> list[Hit]:
        """The k live fragments that best answer the query, optionally within a namespace and
        a metadata filter (`where`: see carma.domain.filters), best first.

        mode: "semantic" (cosine of the query's vector; the default), "keyword" (BM25 over
        the bodies' words: finds id-like tokens) or "hybrid" (both, fused by reciprocal rank;
        see carma.search). A reconstruction's words are a keyword hit only with
        `approximate_keywords` (it takes part in the semantic side, labelled, regardless).
        as_of: a log position or a moment: the fragments as they were then (deleted ones live
        then included, later ones not; forgotten ones stay forgotten)."""
        query = validate_text(query)
        self._check_search(k, namespace)
        node = parse_filter(where)
        mode = check_mode(mode)
        vector = (
            None if mode == "keyword" else self._check_vectors(self.embedder.embed([query]), 1)[0]
        )
        if as_of is not None:
            return self._search_as_of(
                self._position_of(as_of),
                vector,
                query_words(query),
                k,
                namespace,
                node,
                mode,
                approximate_keywords,
            )
        return self._ranked_or_from_log(
            vector, query_words(query), k, namespace, node, mode, approximate_keywords
        )

    @_guarded("cannot search")
    def search_by_vector(
        self,
        vector: Any,
        k: int = 5,
        namespace: str | None = None,
        where: dict[str, Any] | None = None,
        *,
        as_of: int | datetime | None = None,
    ) -> list[Hit]:
        """As a semantic `search`, for a vector the caller made (a list of floats or a 1-d
        float array of the store's dimension): the model does not run."""
        given = np.frombuffer(self._given_vector(validate_embedding(vector)), dtype="<f4")
        self._check_search(k, namespace)
        node = parse_filter(where)
        if as_of is not None:
            return self._search_as_of(
                self._position_of(as_of), given, [], k, namespace, node, "semantic", False
            )
        return self._ranked_or_from_log(given, [], k, namespace, node, "semantic", False)

    @staticmethod
    def _check_search(k: Any, namespace: str | None) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= K_MAX:
            raise InvalidInput(f"k must be an integer from 1 to {K_MAX}")
        if namespace is not None:
            validate_namespace(namespace)

    def _ranked(
        self,
        vector: np.ndarray | None,
        words: list[str],
        k: int,
        namespace: str | None,
        where: Filter,
        mode: str,
        approximate_keywords: bool,
    ) -> list[Hit]:
        depth = max(HYBRID_DEPTH, k) if mode == "hybrid" else k
        with self._lock:
            self.catch_up()
            semantic: list[tuple[int, float]] = []
            if vector is not None:
                # The filter is evaluated first, in the ledger: the index searches only the
                # fragments it allows, so k of them come back whenever k match.
                allowed = None
                if namespace is not None or where != EVERYTHING:
                    ids = self.ledger.faiss_ids_where(namespace, where)
                    allowed = np.asarray(ids, dtype=np.int64)
                semantic = self.index.search(vector, depth + TIED_MARGIN, allowed)
            keyword = (
                self.ledger.keyword_hits(words, depth, namespace, where, approximate_keywords)
                if mode != "semantic"
                else []
            )
            rows = self.ledger.rows_by_faiss_ids(
                list(dict.fromkeys(fid for fid, _ in semantic + keyword))
            )
            semantic = sorted(
                ((fid, score) for fid, score in semantic if fid in rows),
                key=lambda hit: ranking_key(hit[1], rows[hit[0]]["id"]),
            )[:depth]
            if mode == "semantic":
                ranked = semantic
            elif mode == "keyword":
                ranked = keyword
            else:
                ranked = fuse([f for f, _ in semantic], [f for f, _ in keyword])[:k]
            return [
                Hit(**self._record(rows[fid]).model_dump(), score=round(score, SCORE_DIGITS))
                for fid, score in ranked
                if fid in rows and rows[fid]["status"] not in ("deleted", "forgotten")
            ]

    def _ranked_or_from_log(self, *args: Any) -> list[Hit]:
        """A search over the projections; where the ledger's file refuses it, the same search
        over the log as it stands (slower, the same answer) until the ledger is rebuilt."""
        try:
            return self._ranked(*args)
        except sqlite3.DatabaseError as exc:
            self._ledger_failed(exc)
            return self._search_as_of(self.log.position(), *args)

    def _position_of(self, as_of: int | datetime) -> int:
        """A log position asked for as a position or a moment (at most the log's head)."""
        if isinstance(as_of, datetime):
            return self.position_at(as_of)
        if isinstance(as_of, bool) or not isinstance(as_of, int) or as_of < 0:
            raise InvalidInput("as_of is a log position (a whole number) or a datetime")
        return min(as_of, self.log.position())

    def _search_as_of(
        self,
        position: int,
        vector: np.ndarray | None,
        words: list[str],
        k: int,
        namespace: str | None,
        where: Filter,
        mode: str,
        approximate_keywords: bool,
    ) -> list[Hit]:
        """The search over the fragments as the log held them at `position`: each replayed
        from its events up to there (no new home is built), the filter evaluated on the
        metadata they had, ranked as `search` ranks."""
        then = {
            f.key: f
            for f in self.log.fragments_at(position).values()
            if not f.deleted
            and f.key is not None
            and (namespace is None or f.namespace == namespace)
            and matches(where, f.metadata or {})
        }
        depth = max(HYBRID_DEPTH, k) if mode == "hybrid" else k
        semantic = (
            cosine_ranking(
                vector, {key: f.embedding for key, f in then.items() if f.embedding}, depth
            )
            if vector is not None
            else []
        )
        keyword: list[tuple[str, float]] = []
        if mode != "semantic":
            bodies = {
                key: search_words(f.text)
                for key, f in then.items()
                if f.text is not None and (approximate_keywords or not f.approximate)
            }
            scores = bm25(bodies, words)
            keyword = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:depth]
        if mode == "semantic":
            ranked = semantic
        elif mode == "keyword":
            ranked = keyword
        else:
            ranked = fuse([key for key, _ in semantic], [key for key, _ in keyword])[:k]
        return [
            Hit(
                **_record_of(
                    key,
                    then[key].namespace,
                    then[key].content_version,
                    then[key].content_hash or "",
                    then[key],
                    None,
                    "as of a past position, expected recall is not read",
                ).model_dump(),
                score=round(score, SCORE_DIGITS),
            )
            for key, score in ranked
        ]

    @_guarded("cannot read the history")
    def history(self, id: str) -> list[HistoryEntry]:
        key = validate_key(id)
        with self._lock:
            self.catch_up()
            if self.ledger.row(key) is None:
                raise FragmentNotFound(key)
            return [
                HistoryEntry(
                    position=r["position"],
                    version=r["version"],
                    kind=r["kind"],
                    at=datetime.fromisoformat(r["at"]),
                    detail=json.loads(r["detail"]),
                )
                for r in self.ledger.history(str(fragment_uuid(key)))
            ]

    @_guarded("cannot read the log")
    def log_events(
        self, since: int = 1, until: int | None = None, kinds: Iterable[str] = ()
    ) -> Iterator[dict[str, Any]]:
        """The log itself, event by event: position, time, kind, aggregate, version and the
        event's fields (an embedding as its dimension, not its floats). `kinds` are event
        names such as "FragmentWritten"; a corrupt event is reported, never decoded."""
        wanted = set(kinds)
        unknown = wanted - set(EVENT_KINDS)
        if unknown:
            raise InvalidInput(
                f"unknown event kind(s): {', '.join(sorted(unknown))}; known: "
                f"{', '.join(sorted(EVENT_KINDS))}"
            )
        if (
            isinstance(since, bool)
            or not isinstance(since, int)
            or since < 0
            or (until is not None and (isinstance(until, bool) or not isinstance(until, int)))
        ):
            raise InvalidInput("since and until are log positions (whole numbers)")
        classes = [EVENT_KINDS[k] for k in sorted(wanted)]
        for position, event in self.log.stream(since, until, classes):
            if isinstance(event, CorruptEvent):
                yield {"position": position, "kind": "corrupt", "error": str(event)}
                continue
            fields = {
                k: v
                for k, v in vars(event).items()
                if k not in ("originator_id", "originator_version", "timestamp", "originator_topic")
            }
            if isinstance(fields.get("embedding"), bytes):
                fields["embedding"] = {"float32": len(fields["embedding"]) // 4}
            yield {
                "position": position,
                "at": event.timestamp.isoformat(),
                "kind": type(event).__name__,
                "aggregate": str(event.originator_id),
                "version": event.originator_version,
                "data": json.loads(json.dumps(fields, default=str)),
            }

    def export_lines(self, namespace: str | None = None) -> Iterator[dict[str, Any]]:
        """Every live fragment as a line of `export` (see carma.lines): `import_lines`
        takes them back."""
        return map(export_line, self.export(namespace))

    def export(self, namespace: str | None = None) -> Iterator[FragmentRecord]:
        """Every live fragment, oldest first."""
        if namespace is not None:
            validate_namespace(namespace)
        with self._lock:
            self.catch_up()
            rows = list(self.ledger.live_rows(namespace))
        for row in rows:
            yield self._record(row)

    @_guarded("cannot read the store")
    def stats(self) -> dict[str, Any]:
        with self._lock:
            self.catch_up()
            counts = self.ledger.counts()
            profile = self.log.profile()
            return {
                "home": str(self.home),
                "model": {"name": profile.model, "dimension": profile.dimension}
                if profile
                else None,
                "log_position": self.log.position(),
                "live": sum(
                    n for s, n in counts["by_status"].items() if s not in ("deleted", "forgotten")
                ),
                "by_status": counts["by_status"],
                "namespaces": counts["namespaces"],
                "index_vectors": self.index.count,
                # Parts of the index whose graph is still being built behind a rebuild.
                "index_graph_pending": self.index.graph_pending,
                "positions": {p.name: p.position for p in self.runner.projections},
                "lag": self.runner.lag(),
                "projection_errors": dict(self.runner.errors),
                "bytes_on_disk": _size(self.home),
            }

    # -- audit ---------------------------------------------------------------------------------

    @_guarded("cannot verify the log")
    def verify(self, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
        """Replay the log's HMAC chain: {"ok", "events", "first_bad", "reason", "head",
        "head_position", "seconds"}. Anchor `head` elsewhere to prove later that no one
        rewrote history up to `head_position`."""
        if not self._chain_key:
            raise StorageError(
                "cannot verify: the chain key is lost from both copies (keys/ and "
                "keys.mirror/); restore them from a backup"
                if self.database is None
                else "cannot verify: the chain key is lost from the database's carma_chain_key "
                "table; restore it from a backup"
            )
        return verify_chain(self.log.tables, self._chain_key, checksum_holds, progress).as_dict()

    def export_events(self, with_keys: bool = True) -> Iterator[dict[str, Any]]:
        """The whole log as it is stored, one dict per event (for backups and transfers).

        A fragment's body is sealed under its own key: with_keys adds that key to the
        fragment's first event, so that the export restores readable fragments (keep such a
        backup as safe as the store). Without keys, the export holds no readable body."""
        keys = self.log.mapper.keys
        given: set[str] = set()
        for n in self.log.stored():
            line = {
                "position": n.id,
                "aggregate": str(n.originator_id),
                "version": n.originator_version,
                "topic": n.topic,
                "state": base64.b64encode(n.state).decode("ascii"),
            }
            uuid = str(n.originator_id)
            if with_keys and keys is not None and uuid not in given:
                key = keys.key_for(uuid)
                if key is not None:
                    line["key"] = base64.b64encode(key).decode("ascii")
                    given.add(uuid)
            yield line

    @_guarded("the events were not imported")
    def import_events(self, lines: Iterable[dict[str, Any]]) -> dict[str, int]:
        """Append exported events (see `export_events`) to this log in one transaction; the
        projections then catch up. Importing the same export twice changes nothing."""
        events = []
        adopted: dict[str, bytes] = {}
        for number, line in enumerate(lines, 1):
            try:
                if "key" in line:
                    adopted[str(uuidlib.UUID(line["aggregate"]))] = base64.b64decode(
                        line["key"], validate=True
                    )
                events.append(
                    StoredEvent(
                        originator_id=uuidlib.UUID(line["aggregate"]),
                        originator_version=int(line["version"]),
                        topic=str(line["topic"]),
                        state=base64.b64decode(line["state"], validate=True),
                    )
                )
                if events[-1].topic not in EVENT_TOPICS:
                    raise ValueError("unknown topic")
            except (KeyError, TypeError, ValueError, OverflowError, binascii.Error):
                raise InvalidInput(f"event line {number} is not an exported CARMA event") from None
        copies: list[StoredEvent] = []
        with self._lock:
            for uuid, fragment_key in adopted.items():  # before the events are first read
                self.log.mapper.keys.adopt(uuid, fragment_key)
            appended, unchanged = self.log.append_stored(events, copies)
            self.catch_up()
        restored = self._restore_from_events(copies) if copies else 0
        return {"appended": appended, "unchanged": unchanged - len(copies), "restored": restored}

    def _restore_from_events(self, copies: list[StoredEvent]) -> int:
        """Intact copies (from a backup) of events damaged in this log: record the damage,
        then restate each body whose current content such a copy holds, exactly."""
        self.dreamer.scrub(deep=True)
        exact: dict[str, Draft] = {}
        embeddings: dict[str, bytes] = {}
        with self._write_lock:
            for stored in copies:
                event = self.log.mapper.to_domain_event(stored)
                if (
                    not isinstance(
                        event,
                        (
                            Fragment.FragmentWritten,
                            Fragment.FragmentRevised,
                            Fragment.FragmentReconstructed,
                        ),
                    )
                    or getattr(event, "text", None) is None
                ):
                    continue
                fragment = self.log.fragments_by_uuid([stored.originator_id]).get(
                    stored.originator_id
                )
                if (
                    fragment is None
                    or fragment.key is None
                    or fragment.deleted
                    or content_hash(event.text) != fragment.content_hash
                ):
                    continue  # not the fragment's current body: an older version
                exact[fragment.key] = Draft.of(
                    event.text, event.metadata, fragment.namespace, fragment.key
                )
                embeddings[fragment.key] = event.embedding
            restored = self._restore_exact(exact, embeddings)
        self.catch_up()
        return restored

    def position_at(self, moment: datetime) -> int:
        """The last log position recorded at or before `moment` (naive times are UTC)."""
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        last = 0
        for position, event in self.log.stream():
            if not isinstance(event, CorruptEvent) and event.timestamp > moment:
                break
            last = position
        return last

    def replay(
        self, until: int | datetime | None = None, *, into: str | os.PathLike[str]
    ) -> Memory:
        """A new store at `into` holding this log up to `until` (a position or a moment,
        included; None: all of it), its projections rebuilt from that prefix: what the agent
        knew then, to search and read. The caller closes the returned store."""
        if isinstance(until, datetime):
            position = self.position_at(until)
        elif until is None:
            position = self.log.position()
        elif isinstance(until, bool) or not isinstance(until, int) or until < 0:
            raise InvalidInput("until is a log position (a whole number) or a datetime")
        else:
            position = min(until, self.log.position())
        target = Path(into).expanduser().resolve()
        if target == self.home or self.home in target.parents:
            raise InvalidInput("replay into a folder outside this store's home")
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise InvalidInput(f"{target} exists and is not an empty folder")
        with storage_errors(f"cannot replay into {target}"):
            if self.database is None:
                copy_log(Home(self.home), Home(target), position)
            else:  # a copy of the shared log, taken away to read: a SQLite log of its own
                assert self._chain_key is not None
                copy_shared_log(
                    self.log.tables,
                    self.log.mapper.keys,
                    self._chain_key,
                    Home(target),
                    position,
                    self.dreamer.healer.replica.name,
                )
            return self._open_replay(target)

    # -- healing -------------------------------------------------------------------------------

    @_guarded("the scrub stopped")
    def scrub(self, deep: bool = False) -> dict[str, Any]:
        """Compare every copy with the log; record each new finding once as FragmentLost.
        The log's own checksums are read on a rolling schedule (every event at least every
        8 scrubs, new ones at once); `deep` reads them all now."""
        return self.dreamer.scrub(deep=deep)

    @_guarded("healing stopped")
    def heal(self) -> dict[str, int]:
        """Repair every recorded finding not yet repaired; returns repairs per copy/method."""
        try:
            return self.dreamer.heal()
        finally:
            self._graph_after_repairs()

    @_guarded("the dream cycle stopped")
    def dream(self, deep: bool = False, *, trigger: str = "manual") -> dict[str, Any]:
        """One scrub-and-heal cycle, recorded in the log as a DreamCycle; returns its report.
        `deep`: its scrub reads every event's checksum (see scrub). `trigger`: why it ran,
        as recorded ("manual", or "schedule" for a keeper such as `carma watch`)."""
        if trigger not in ("manual", "schedule"):
            raise InvalidInput("trigger is 'manual' or 'schedule'")
        return self._dream(trigger, deep=deep)

    def _dream(self, trigger: str, deep: bool = False) -> dict[str, Any]:
        try:
            return self.dreamer.dream(trigger, deep=deep)
        finally:
            self._graph_after_repairs()

    def _graph_after_repairs(self) -> None:
        """A repair's vectors go into a flat part of an approximate index, as a write's do:
        its graph is built behind (the healer catches the projections up itself)."""
        with self._lock:
            self._build_graph_behind()

    @_guarded("the calibration stopped")
    def calibrate(
        self,
        namespace: str | None = None,
        force: bool = False,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> dict[str, Any]:
        """Measure what the reconstructor achieves in each namespace (or one): a sample of its
        exact fragments is hidden and rebuilt as a repair would rebuild it, and the recall of
        each attempt is recorded with its fidelity (ReconstructionCalibrated). Runs until done;
        dream cycles do the same within their budget where approximate bodies are. A
        namespace that is current is left alone unless `force`; one with fewer than 20 exact
        fragments is too small, and says so. Returns each namespace's outcome."""
        if namespace is not None:
            namespace = validate_namespace(namespace)
        if self.dreamer.healer.reconstructor is None:
            raise InvalidInput(
                f"nothing to calibrate: this store has no text model ({self.embedder.name}), "
                "so it makes no semantic reconstructions"
            )
        with self._lock:
            self.catch_up()
            namespaces = list(self.ledger.counts()["namespaces"])
        if namespace is not None:
            if namespace not in namespaces:
                raise InvalidInput(f"no live fragment in namespace {namespace!r}")
            namespaces = [namespace]
        calibrator = self.dreamer.calibrator
        assert calibrator is not None
        report = calibrator.calibrate(namespaces, None, force=force, progress=progress)
        self.catch_up()
        return report

    @_guarded("cannot read the health")
    def health(self, namespace: str | Iterable[str] | None = None) -> dict[str, Any]:
        """Honest health: docs/self-healing.md ("Health, honestly") explains every field.
        `namespace`: one namespace or several, whose fragments alone are reported (their
        findings, repairs and calibrations; not the index file's findings nor the last dream
        cycle, which are the whole store's); None: the whole store."""
        namespaces = _namespaces(namespace)
        with self._lock:
            self.catch_up()
            try:
                report = self.ledger.health(namespaces)
            except sqlite3.DatabaseError as exc:
                self._ledger_failed(exc)
                raise StorageError(
                    f"the health ledger's file is damaged ({exc}); the next dream cycle "
                    "rebuilds it from the log (carma dream)"
                ) from exc
            report["reconstruction"] = (
                {"available": True, "reason": None}
                if self.dreamer.healer.reconstructor is not None
                else {
                    "available": False,
                    "reason": f"no text model ({self.embedder.name}: this store's vectors are "
                    "given), so a body with no exact copy left stays lost; exact repairs work",
                }
            )
            report["lag"] = self.runner.lag()
            report["projection_errors"] = dict(self.runner.errors)
            return report

    @_guarded("cannot read the history")
    def recent_history(
        self,
        limit: int = 50,
        namespace: str | Iterable[str] | None = None,
        before: int | None = None,
    ) -> list[FragmentEvent]:
        """The latest events of every fragment (or of those in a namespace, or several),
        newest first: `history` across the store, each entry with its fragment's id and
        namespace and its log position (the position `verify` chains). `before`: only
        events at earlier positions (to page back)."""
        namespaces = _namespaces(namespace)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= K_MAX:
            raise InvalidInput(f"limit must be an integer from 1 to {K_MAX}")
        if before is not None and (
            isinstance(before, bool) or not isinstance(before, int) or before < 0
        ):
            raise InvalidInput("before is a log position (a whole number)")
        with self._lock:
            self.catch_up()
            rows = self.ledger.recent_history(namespaces, limit, before)
        return [
            FragmentEvent(
                position=r["position"],
                version=r["version"],
                kind=r["kind"],
                at=datetime.fromisoformat(r["at"]),
                detail=json.loads(r["detail"]),
                id=r["id"],
                namespace=r["namespace"],
            )
            for r in rows
        ]

    def start_dreaming(self, every: float) -> DreamScheduler:
        """Run dream cycles in a background thread every `every` seconds (until close)."""
        with self._lock:
            if self.scheduler is None:
                self.scheduler = DreamScheduler(
                    self._dream,
                    every,
                    on_error=lambda exc: logger.warning("a background dream cycle failed: %s", exc),
                ).start()
            return self.scheduler

    # -- projections -----------------------------------------------------------------------------

    def catch_up(self, progress: Callable[[int], None] | None = None) -> int:
        """Apply to the projections every event not yet applied (other processes' too)."""
        with self._lock:
            applied = self.runner.catch_up(progress)
            self._build_graph_behind()  # (past the threshold now: the graph is built behind)
            return applied

    @_guarded("the rebuild stopped")
    def rebuild(self, progress: Callable[[int], None] | None = None) -> int:
        """Rebuild the cache, the index and the ledger from log position zero. (A cache file
        that already holds the bytes the replay derives is kept in place, not written again.)

        The log's checksums are checked first: damaged events are recorded and their bodies
        restated (exactly where a copy survives) while the current projections still know
        what they held; the rebuild then replays past them. Past `approximate_above` it
        returns with the index flat and builds its graph behind it (wait_for_graph)."""
        if next(iter(self.log.unreadable()), None) is not None:
            self.dreamer.scrub(deep=True)
            self.dreamer.heal()
        self._stop_graph_behind()  # (outside the lock: the builder takes it between parts)
        with self._lock:
            self.log.recent.clear()  # a rebuild reads the log as it is stored, every event
            self.dreamer.scrubber.forget()  # (memory: the rows it kept are of the old ledger)
            # The index stays flat while the log is replayed, and its graph is built after,
            # part by part, while the store answers (exactly, meanwhile): the graph was half
            # of a rebuild's time (docs/benchmarks.md, "Where the time goes").
            self.index.graph_deferred = True
            try:
                count = self.runner.rebuild(progress)
            except BaseException:
                self.cache.skip_sweep()
                raise
            finally:
                self.index.settle_deferred()
            self.cache.sweep()  # the files of no fragment (the replay kept the others in place)
            self.index.save()
            self._graph_failed = False
            self._build_graph_behind()
            return count

    def wait_for_graph(
        self, timeout: float | None = None, progress: Callable[[int], None] | None = None
    ) -> bool:
        """Wait until the index's graph, built behind a rebuild, is whole (a store past
        `approximate_above`; until then its parts not yet built are searched exactly).
        Whether it is; `progress(n)`: n more parts built."""
        builder = self._graph_builder
        deadline = None if timeout is None else time.monotonic() + timeout
        left = self.index.graph_pending
        while builder is not None and builder.is_alive():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            # (woken twice a second to tell a progress bar; otherwise when it ends)
            step = GRAPH_PROGRESS_S if progress else None
            builder.join(step if remaining is None else min(remaining, step or remaining))
            if progress and (now := self.index.graph_pending) < left:
                progress(left - now)
                left = now
        return (builder is None or not builder.is_alive()) and not self.index.graph_pending

    def _build_graph_behind(self) -> None:
        """Start a builder of the graph of the index's flat parts, if any wait and none runs
        (under the store's lock, or before the store is shared)."""
        if self._closed or self._graph_running or self._graph_failed:
            return
        if not self.index.graph_pending:
            return
        self._graph_running = True
        self._graph_stop = threading.Event()
        self._graph_builder = threading.Thread(
            target=self._graph_behind, args=(self._graph_stop,), name="carma-index-graph"
        )
        self._graph_builder.start()

    def _graph_behind(self, stop: threading.Event) -> None:
        failed = False
        while True:
            try:
                self.index.graph_behind(self._lock, stop)
            except Exception as exc:  # its parts stay flat, searched exactly
                logger.warning("the index's graph could not be built: %s", exc)
                failed = True
            with self._lock:
                # (A part a write left flat after the builder's last look is built too.)
                if failed or stop.is_set() or self._closed or not self.index.graph_pending:
                    self._graph_running, self._graph_failed = False, failed
                    return

    def _stop_graph_behind(self) -> None:
        """Stop building the graph (it goes on when the store is next opened): the thread
        ends at its next chunk of vectors, and never while it holds the store's lock."""
        self._graph_stop.set()
        builder = self._graph_builder
        if builder is not None and builder is not threading.current_thread():
            builder.join()

    def close(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()  # outside the lock: a running cycle needs it to finish
        # A graph being built behind a rebuild is finished first (outside the lock, which
        # it takes between parts): a process that closes at once, as a command does, would
        # otherwise leave it to every next one, each stopping it in turn. Interrupted (Ctrl-C),
        # the store still closes, and the next open goes on with the graph.
        interrupted: BaseException | None = None
        try:
            self.wait_for_graph()
        except BaseException as exc:
            interrupted = exc
        with self._lock:
            if not self._closed:
                self._closed = True
                # (stopped: an interrupted wait's builder, or one a rebuild on another
                # thread started since; joined below, once the lock is free for it)
                self._graph_stop.set()
                self._close_files()
        self._stop_graph_behind()
        if interrupted is not None:
            raise interrupted

    def _close_files(self) -> None:
        try:
            self.index.close()
        except OSError as exc:
            # Only a checkpoint is lost: the next open rebuilds the index from the log.
            logger.warning("could not save the vector index on close: %s", exc)
        finally:
            self.cache.close()  # (its writer process, if it started one)
            self.ledger.close()
            if self.log.mapper.keys is not None:
                self.log.mapper.keys.close()
            self.log.close()

    def __enter__(self) -> Memory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _record_of(
    key: str,
    namespace: str,
    version: int,
    digest: str,
    fragment: Fragment,
    expected_recall: float | None = None,
    recall_unknown: str | None = None,
    recall_source: str | None = None,
) -> FragmentRecord:
    """A fragment as the log holds it: exact, approximate (labelled, with its fidelity), or
    lost (no text at all)."""
    if fragment.text is None:
        status, fidelity = "lost", 0.0
    elif fragment.approximate:
        status, fidelity = "approximate", fragment.fidelity
    else:
        status, fidelity = "healthy", 1.0
    return FragmentRecord(
        id=key,
        namespace=namespace,
        text=fragment.text,
        metadata=fragment.metadata if fragment.metadata is not None else {},
        version=version,
        status=status,
        fidelity=fidelity,
        expected_recall=expected_recall if status == "approximate" else None,
        expected_recall_unknown=recall_unknown if status == "approximate" else None,
        expected_recall_source=recall_source if status == "approximate" else None,
        content_hash=digest,
    )


def _namespaces(namespace: str | Iterable[str] | None) -> list[str] | None:
    """One namespace or several, each checked, as a list; None: every namespace."""
    if namespace is None:
        return None
    if isinstance(namespace, str):
        return [validate_namespace(namespace)]
    if not isinstance(namespace, Iterable) or isinstance(namespace, (bytes, Mapping)):
        raise InvalidInput("namespace is a namespace, a list of them, or None for all")
    return sorted({validate_namespace(n) for n in namespace})


def _size(root: Path) -> int:
    total = 0
    for path in root.rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_size
        except FileNotFoundError:  # a temp file renamed meanwhile by a writer
            continue
    return total

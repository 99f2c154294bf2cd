"""A model-based test: a real store (a real SQLite or PostgreSQL log, FAISS and files,
deterministic embedder) and a plain dictionary driven side by side by hypothesis, with
forgetting, damage and dream cycles in between.

Examples in CI: 40 runs of up to 40 steps (`--hypothesis-profile=long`: 1,000 runs of up to
80 steps; profiles in tests/conftest.py).

Damage includes flipping a byte of the stored event that holds a fragment's current body (in
the database, as bit rot would). Where the body is then destroyed everywhere (its cache file
was damaged too), the fragment may come back approximate (labelled, with its fidelity) or
lost; everywhere else it must come back exactly.
"""

import pytest
from carma.healing.scrubber import is_exact_copy
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, consumes, invariant, rule, run_state_machine_as_test

from carma import FragmentGone, InvalidInput
from carma.testing import strategies
from carma.testing.machine import CarmaStateMachine
from tests.conftest import damage_event, store_state

texts = strategies.texts()  # words of a small vocabulary, 1 to 6 of them
namespaces = strategies.namespaces(["alpha", "beta"])
metadata = strategies.metadata(["kind", "n"])


class StoreAgainstModel(CarmaStateMachine):
    keys = Bundle("keys")

    def __init__(self):
        super().__init__()  # carma.testing's machine: a store in a fresh folder, 32-d hashing
        self.model: dict[str, tuple[str, dict, str]] = {}
        self.deleted: set[str] = set()
        self.forgotten: set[str] = set()
        self.vectors_dropped = False
        self.log_damaged: set[str] = set()  # the event holding the body is unreadable
        self.inexact: set[str] = set()  # healed without an exact copy: approximate or lost

    # -- writes -------------------------------------------------------------------------------

    def _live_key_with(self, text, namespace):
        return next(
            (
                k
                for k, (t, _, ns) in self.model.items()
                if k not in self.deleted and t == text and ns == namespace
            ),
            None,
        )

    @rule(target=keys, text=texts, meta=metadata, namespace=namespaces)
    def add(self, text, meta, namespace):
        key = self.memory.add(text, meta, namespace=namespace)
        existing = self._live_key_with(text, namespace)
        if existing is not None:
            assert key == existing  # idempotent: the same fragment, nothing recorded
            self._restored(key)  # the original text restores a damaged body exactly
        else:
            self.model[key] = (text, meta, namespace)
        return key

    @rule(items=st.lists(st.tuples(texts, namespaces), min_size=1, max_size=5))
    def add_many(self, items):
        result = self.memory.add_many([{"text": t, "namespace": ns} for t, ns in items])
        for key, (text, namespace) in zip(result.ids, items):
            existing = self._live_key_with(text, namespace)
            assert existing in (None, key)
            self.model.setdefault(key, (text, {}, namespace))
            self._restored(key)

    def _restored(self, key):
        self.inexact.discard(key)
        if key in self.log_damaged and self.memory.log.fragment(key).body_known:
            self.log_damaged.discard(key)

    @rule(key=keys, text=texts, meta=metadata)
    def revise(self, key, text, meta):
        if key in self.deleted:  # deleted or forgotten
            with pytest.raises(FragmentGone):
                self.memory.revise(key, text=text, metadata=meta)
            return
        record = self.memory.revise(key, text=text, metadata=meta)
        self.model[key] = (text, meta, self.model[key][2])
        assert (record.text, record.metadata) == (text, meta)
        self._restored(key)  # a new body, whole

    @rule(key=consumes(keys))
    def delete(self, key):
        assert self.memory.delete(key) is (key not in self.deleted)
        self.deleted.add(key)
        self.inexact.discard(key)
        self.log_damaged.discard(key)

    @rule(key=consumes(keys))
    def forget(self, key):
        forgotten = self.memory.forget(key, reason="erasure")
        assert forgotten is (key not in self.forgotten)
        self.deleted.add(key)
        self.forgotten.add(key)
        self.inexact.discard(key)
        self.log_damaged.discard(key)
        with pytest.raises(FragmentGone):
            self.memory.get(key)

    # -- reads --------------------------------------------------------------------------------

    @rule(key=keys)
    def get(self, key):
        if key in self.deleted:
            with pytest.raises(FragmentGone):
                self.memory.get(key)
        elif self._maybe_inexact(key):
            got = self.memory.get(key)
            assert got.namespace == self.model[key][2]
            if got.status == "approximate":
                # The ledger kept the metadata exactly, unless no record of it survived.
                known = self.memory.ledger.row(key)["metadata"] is not None
                assert got.metadata == (self.model[key][1] if known else {})
                assert 0.0 <= got.fidelity < 1.0 + 1e-9 and got.text
            elif got.status == "lost":
                assert got.text is None and got.fidelity == 0.0
            else:  # restored exactly meanwhile
                assert got.text == self.model[key][0]
        else:
            got = self.memory.get(key)
            assert (got.text, got.metadata, got.namespace) == self.model[key]
            assert got.status == "healthy" and got.fidelity == 1.0

    @rule(query=texts, namespace=namespaces, k=st.integers(1, 8))
    def search(self, query, namespace, k):
        hits = self.memory.search(query, k=k, namespace=namespace)
        live_here = {
            key
            for key, (_, _, ns) in self.model.items()
            if ns == namespace and key not in self.deleted
        }
        assert {h.id for h in hits} <= live_here
        if not self.vectors_dropped:  # a vector dropped from memory is missed until a dream
            # (and a body lost with its embedding has no vector at all)
            whole = {key for key in live_here if not self._maybe_inexact(key)}
            assert min(k, len(whole)) <= len(hits) <= min(k, len(live_here))
        for hit in hits:
            if not self._maybe_inexact(hit.id):
                assert hit.text == self.model[hit.id][0]

    @rule(text=st.sampled_from(["", "   ", "a\x00b"]))
    def bad_input_changes_nothing(self, text):
        before = self.memory.log.position()
        with pytest.raises(InvalidInput):
            self.memory.add(text)
        assert self.memory.log.position() == before

    # -- damage, healing, restarts -----------------------------------------------------------

    def _pick(self, pick):
        """A live fragment chosen by its place in the model, not by its random id, so that
        hypothesis replays a failing case exactly."""
        live = self.live()
        return live[pick % len(live)] if live else None

    # The kit's `damage` rule does a damage plan (cache files unlinked, cut short or flipped,
    # the index file dropped, a stored body's event changed) to live fragments of the model.

    def damage_targets(self):
        """A live fragment chosen by its place in the model, not by its random id, so that
        hypothesis replays a failing case exactly."""
        return self.live()

    def flip_event(self, memory, key, pick):
        """Change a byte of the stored event that holds a live fragment's current body, in
        the database of either back end."""
        row = memory.ledger.row(key)

        def damaged(state):
            damaged = bytearray(state)
            # Damage accumulates: adding (rather than flipping a bit) never undoes an earlier
            # corruption of the same byte. (A log made whole again, as by restoring a backup
            # of the file, is another scenario: see docs/reconstruction.md, "Known gap".)
            damaged[pick % len(damaged)] = (damaged[pick % len(damaged)] + 1) % 256
            return damaged

        return damage_event(memory, row["uuid"], row["version"], damaged)

    def after_damage(self, done):
        self.log_damaged |= {d.fragment_id for d in done if d.kind == "flip-event"}

    @rule(pick=st.integers(0, 10**6))
    def drop_index_vector(self, pick):
        key = self._pick(pick)
        if key is not None:
            self.memory.index.remove([self.memory.ledger.row(key)["faiss_id"]])
            self.vectors_dropped = True

    def _maybe_inexact(self, key):
        """Healed without an exact copy, or its body destroyed in the log and the cache."""
        return key in self.inexact or (key in self.log_damaged and not self._cache_is_exact(key))

    def _cache_is_exact(self, key):
        """The cache holds the body exactly, and the store can prove it: a copy whose
        metadata no record knows any longer proves its text alone."""
        row = self.memory.ledger.row(key)
        cached = self.memory.cache.read(row["uuid"])
        return (
            cached is not None
            and is_exact_copy(cached, row)
            and row["metadata"] is not None
            and (cached.text, cached.metadata) == self.model[key][:2]
        )

    @rule()
    def dream(self):
        # A body whose log event and cache copy are both damaged has no exact copy left.
        destroyed = {
            k for k in self.log_damaged if k not in self.deleted and not self._cache_is_exact(k)
        }
        report = self.memory.dream()
        self.vectors_dropped = False
        self.inexact |= destroyed
        self.log_damaged -= set(self.live())  # answered, exactly or not
        statuses = {k: self.memory.get(k).status for k in self.inexact & set(self.live())}
        self.inexact = {k for k, s in statuses.items() if s != "healthy"}
        if not self.inexact:
            assert report["health_after"] == 1.0
            assert self.memory.scrub()["found"] == {}
        else:
            health = self.memory.health()
            assert health["by_status"]["healthy"] == len(self.live()) - len(self.inexact)
            assert report["health_after"] == pytest.approx(health["score"])
            assert self.memory.scrub()["recorded"] == 0  # nothing new: each finding once
        for key in self.live():
            if key not in self.inexact:
                assert self._cache_is_exact(key)
        lost = sum(s == "lost" for s in statuses.values())  # kept embeddings stay indexed
        assert len(self.live()) - lost <= self.memory.index.count <= len(self.live())

    @rule()
    def reopen(self):
        self.reopen_store()
        if self.log_damaged:  # an index rebuilt on open cannot read a damaged body's vector
            self.vectors_dropped = True

    @rule()
    def rebuild_equals_incremental(self):
        self.memory.dream()  # damage is not state: compare the healed store with its rebuild
        self.vectors_dropped = False
        incremental = store_state(self.memory)
        self.memory.rebuild()
        rebuilt = store_state(self.memory)
        # What an unreadable event alone said cannot be replayed: its own history line, and
        # the row of a fragment no longer live whose first event it was (a live one's body
        # was restated by a repair, with what the ledger knew of it).
        unreadable = list(self.memory.log.unreadable())
        damaged = {n.id for n in unreadable}
        touched = {str(n.originator_id) for n in unreadable}
        first = {str(n.originator_id) for n in unreadable if n.originator_version == 1}
        bodiless = ("lost", "deleted", "forgotten")
        for state in (incremental, rebuilt):
            state["ledger"]["history"] = [
                row for row in state["ledger"]["history"] if row["position"] not in damaged
            ]
            state["ledger"]["fragments"] = [
                _unsaid(row) if row["uuid"] in touched and row["status"] in bodiless else row
                for row in state["ledger"]["fragments"]
                if row["uuid"] not in first or row["status"] not in ("deleted", "forgotten")
            ]
            # The metadata index says what the row's metadata said: unsaid with it, and gone
            # with a row left out above (deleted before a rebuild could read its metadata).
            said = {row["uuid"] for row in state["ledger"]["fragments"] if "metadata" in row}
            state["ledger"]["metadata_index"] = [
                row for row in state["ledger"]["metadata_index"] if row["uuid"] in said
            ]
            # A row's checksum is of the row: of a touched one, of what is unsaid above.
            state["ledger"]["row_checks"] = [
                row for row in state["ledger"]["row_checks"] if row["uuid"] not in touched
            ]
        assert rebuilt == incremental
        assert self.memory.ledger.check_file() is None  # and every row matches its checksum

    # -- invariants ---------------------------------------------------------------------------

    def live(self):
        return [k for k in self.model if k not in self.deleted]

    @invariant()
    def health_counts_the_live_fragments(self):
        if hasattr(self, "memory"):
            assert self.memory.health()["live"] == len(self.live())


def _unsaid(row):
    """The row of a fragment with no body (lost, deleted, forgotten) without what only its
    unreadable events said: its version, content hash, metadata, embedding fingerprint, the
    digest of the cache file it had, its last fault and repair (with what a repair's
    restated body said: its method, refinements and expected recall), when it last changed."""
    return {
        k: v
        for k, v in row.items()
        if k
        not in (
            "version",
            "content_hash",
            "cache_digest",
            "metadata",
            "embedding_fingerprint",
            "fidelity",
            "updated_at",
            "last_method",
            "last_fault",
            "reconstructed_by",
            "refinements",
            "expected_recall",
        )
    }


def test_store_against_model(backend):
    """The state machine on each backend (a unittest TestCase could not be parametrised)."""
    run_state_machine_as_test(StoreAgainstModel, settings=settings())  # the active profile

"""A model-based test: a real store (real SQLite, FAISS and files, deterministic embedder) and
a plain dictionary driven side by side by hypothesis, with forgetting, damage and dream cycles
in between.

Examples in CI: 40 runs of up to 40 steps (`--hypothesis-profile=long`: 1,000 runs of up to
80 steps; profiles in tests/conftest.py). Corrupting a stored event is not a rule yet: surviving log damage is the subject of
the reconstruction issue.
"""

import tempfile
from pathlib import Path

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
)

import carma
from carma import FragmentGone, InvalidInput
from carma.embedding import HashingEmbedder
from tests.conftest import store_state

WORDS = ["amber", "basalt", "cedar", "delta", "ember", "fjord", "garnet", "harbor", "iris"]
texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=6).map(" ".join)
namespaces = st.sampled_from(["alpha", "beta"])
metadata = st.dictionaries(st.sampled_from(["kind", "n"]), st.integers(0, 3) | st.booleans(),
                           max_size=2)


class StoreAgainstModel(RuleBasedStateMachine):
    keys = Bundle("keys")

    @initialize()
    def open_store(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.home = Path(self.tmp.name) / "home"
        self.embedder = HashingEmbedder(dimension=32)
        self.mem = carma.open(self.home, embedder=self.embedder)
        self.model: dict[str, tuple[str, dict, str]] = {}
        self.deleted: set[str] = set()
        self.forgotten: set[str] = set()
        self.vectors_dropped = False

    def teardown(self):
        if hasattr(self, "mem"):
            self.mem.close()
            self.tmp.cleanup()

    # -- writes -------------------------------------------------------------------------------

    def _live_key_with(self, text, namespace):
        return next((k for k, (t, _, ns) in self.model.items()
                     if k not in self.deleted and t == text and ns == namespace), None)

    @rule(target=keys, text=texts, meta=metadata, namespace=namespaces)
    def add(self, text, meta, namespace):
        key = self.mem.add(text, meta, namespace=namespace)
        existing = self._live_key_with(text, namespace)
        if existing is not None:
            assert key == existing  # idempotent: the same fragment, nothing recorded
        else:
            self.model[key] = (text, meta, namespace)
        return key

    @rule(items=st.lists(st.tuples(texts, namespaces), min_size=1, max_size=5))
    def add_many(self, items):
        result = self.mem.add_many([{"text": t, "namespace": ns} for t, ns in items])
        for key, (text, namespace) in zip(result.ids, items):
            existing = self._live_key_with(text, namespace)
            assert existing in (None, key)
            self.model.setdefault(key, (text, {}, namespace))

    @rule(key=keys, text=texts, meta=metadata)
    def revise(self, key, text, meta):
        if key in self.deleted:  # deleted or forgotten
            with pytest.raises(FragmentGone):
                self.mem.revise(key, text=text, metadata=meta)
            return
        record = self.mem.revise(key, text=text, metadata=meta)
        self.model[key] = (text, meta, self.model[key][2])
        assert (record.text, record.metadata) == (text, meta)

    @rule(key=consumes(keys))
    def delete(self, key):
        assert self.mem.delete(key) is (key not in self.deleted)
        self.deleted.add(key)

    @rule(key=consumes(keys))
    def forget(self, key):
        forgotten = self.mem.forget(key, reason="erasure")
        assert forgotten is (key not in self.forgotten)
        self.deleted.add(key)
        self.forgotten.add(key)
        with pytest.raises(FragmentGone):
            self.mem.get(key)

    # -- reads --------------------------------------------------------------------------------

    @rule(key=keys)
    def get(self, key):
        if key in self.deleted:
            with pytest.raises(FragmentGone):
                self.mem.get(key)
        else:
            got = self.mem.get(key)
            assert (got.text, got.metadata, got.namespace) == self.model[key]
            assert got.status == "healthy" and got.fidelity == 1.0

    @rule(query=texts, namespace=namespaces, k=st.integers(1, 8))
    def search(self, query, namespace, k):
        hits = self.mem.search(query, k=k, namespace=namespace)
        live_here = {key for key, (_, _, ns) in self.model.items()
                     if ns == namespace and key not in self.deleted}
        assert {h.id for h in hits} <= live_here
        if not self.vectors_dropped:  # a vector dropped from memory is missed until a dream
            assert len(hits) == min(k, len(live_here))
        for hit in hits:
            assert hit.text == self.model[hit.id][0]

    @rule(text=st.sampled_from(["", "   ", "a\x00b"]))
    def bad_input_changes_nothing(self, text):
        before = self.mem.log.position()
        with pytest.raises(InvalidInput):
            self.mem.add(text)
        assert self.mem.log.position() == before

    # -- damage, healing, restarts -----------------------------------------------------------

    def _pick(self, pick):
        """A live fragment chosen by its place in the model, not by its random id, so that
        hypothesis replays a failing case exactly."""
        live = self.live()
        return live[pick % len(live)] if live else None

    @rule(pick=st.integers(0, 10**6), how=st.sampled_from(["unlink", "truncate", "flip"]))
    def damage_cache(self, pick, how):
        key = self._pick(pick)
        if key is None:
            return
        path = self.mem.cache.path_of(self.mem.ledger.row(key)["uuid"])
        if not path.exists():
            return
        data = path.read_bytes()
        if how == "unlink" or not data:
            path.unlink()
        elif how == "truncate":
            path.write_bytes(data[: pick % len(data)])
        else:
            flipped = bytearray(data)
            flipped[pick % len(flipped)] ^= 0x04
            path.write_bytes(bytes(flipped))

    @rule()
    def drop_index_file(self):
        self.mem.index.path.unlink(missing_ok=True)

    @rule(pick=st.integers(0, 10**6))
    def drop_index_vector(self, pick):
        key = self._pick(pick)
        if key is not None:
            self.mem.index.remove([self.mem.ledger.row(key)["faiss_id"]])
            self.vectors_dropped = True

    @rule()
    def dream(self):
        report = self.mem.dream()
        self.vectors_dropped = False
        assert report["health_after"] == 1.0
        assert self.mem.scrub()["found"] == {}
        for key in self.live():
            row = self.mem.ledger.row(key)
            assert self.mem.cache.read(row["uuid"]).text == self.model[key][0]
        assert self.mem.index.count == len(self.live())

    @rule()
    def reopen(self):
        self.mem.close()
        self.mem = carma.open(self.home, embedder=self.embedder)

    @rule()
    def rebuild_equals_incremental(self):
        self.mem.dream()  # damage is not state: compare the healed store with its rebuild
        self.vectors_dropped = False
        incremental = store_state(self.mem)
        self.mem.rebuild()
        assert store_state(self.mem) == incremental

    # -- invariants ---------------------------------------------------------------------------

    def live(self):
        return [k for k in self.model if k not in self.deleted]

    @invariant()
    def health_counts_the_live_fragments(self):
        if hasattr(self, "mem"):
            assert self.mem.health()["live"] == len(self.live())


test_store_against_model = StoreAgainstModel.TestCase  # examples: the active profile

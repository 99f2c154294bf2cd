"""Property: whatever the history, projections rebuilt from position zero, in place or by a
replay into a fresh home, equal the ones built incrementally (with reopenings in between),
and reads agree with a plain model."""

import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

import carma
from carma import FragmentGone
from carma.embedding import HashingEmbedder
from tests.conftest import store_state

WORDS = ["river", "stone", "cloud", "ember", "quiet", "glass", "north", "salt"]
texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=5).map(" ".join)
keys = st.sampled_from(["a", "b", "c", "d", "e"])
metadata = st.dictionaries(
    st.sampled_from(["x", "y"]), st.integers(-3, 3) | st.booleans(), max_size=2
)

operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), keys, texts, metadata, st.sampled_from(["n1", "n2"])),
        st.tuples(st.just("add_anon"), texts, st.sampled_from(["n1", "n2"])),
        st.tuples(st.just("revise"), keys, texts),
        st.tuples(st.just("delete"), keys),
        st.tuples(st.just("reopen")),
    ),
    max_size=25,
)


@given(ops=operations)
def test_rebuild_from_zero_equals_incremental_state(ops):
    embedder = HashingEmbedder(dimension=32)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        model: dict[str, tuple[str, dict, str]] = {}  # key -> (text, metadata, namespace)
        deleted: set[str] = set()
        mem = carma.open(home, embedder=embedder)
        try:
            for op in ops:
                kind = op[0]
                if kind == "add":
                    _, key, text, meta, ns = op
                    if key in deleted or (key in model and model[key][2] != ns):
                        continue
                    mem.add(text, meta, namespace=ns, id=key)
                    model[key] = (text, meta, ns)
                elif kind == "add_anon":
                    _, text, ns = op
                    key = mem.add(text, namespace=ns)
                    model.setdefault(key, (text, {}, ns))
                elif kind == "revise":
                    _, key, text = op
                    if key in model and key not in deleted:
                        mem.revise(key, text=text)
                        model[key] = (text, model[key][1], model[key][2])
                elif kind == "delete":
                    _, key = op
                    if key in model and key not in deleted:
                        mem.delete(key)
                        deleted.add(key)
                else:
                    mem.close()
                    mem = carma.open(home, embedder=embedder)
            for key, (text, meta, ns) in model.items():
                if key in deleted:
                    try:
                        mem.get(key)
                    except FragmentGone:
                        continue
                    raise AssertionError(f"deleted fragment {key} is readable")
                got = mem.get(key)
                assert (got.text, got.metadata, got.namespace) == (text, meta, ns)
            live = {k for k in model if k not in deleted}
            assert mem.stats()["live"] == len(live) == mem.index.count
            incremental = store_state(mem)
            # Replaying the whole log into a fresh home gives the same state...
            with mem.replay(into=Path(tmp) / "replica") as replica:
                assert store_state(replica) == incremental
                assert replica.verify()["ok"]
            # ...and so does rebuilding in place from position zero.
            mem.rebuild()
            assert store_state(mem) == incremental
        finally:
            mem.close()

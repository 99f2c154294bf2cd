"""Properties of search beyond the vector: a filter's answer is exactly the fragments a
brute-force reading of the export selects (k of them whenever k match), the keyword index
rebuilt from the log equals the one kept incrementally, and a search as of a log position
equals the same search on a replay of the log up to there."""

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

import carma
from carma.embedding import HashingEmbedder
from tests.conftest import store_state

KEYS = ["a", "b", "c"]
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.sampled_from([0.5, 1.0, -2.5])
    | st.sampled_from(["x", "y", "2026-01-01", "2026-06-30"])
)
values = scalars | st.lists(scalars.filter(lambda v: v is not None), max_size=2)
metadata = st.dictionaries(st.sampled_from(KEYS), values, max_size=3)
operand = scalars.filter(lambda v: not isinstance(v, bool) and v is not None)


def conditions() -> st.SearchStrategy:
    key = st.sampled_from(KEYS)
    return st.one_of(
        st.builds(lambda k, v: {k: v}, key, values),
        st.builds(lambda k, v: {k: {"$ne": v}}, key, values),
        st.builds(
            lambda k, op, v: {k: {op: v}},
            key,
            st.sampled_from(["$gt", "$gte", "$lt", "$lte"]),
            operand,
        ),
        st.builds(
            lambda k, op, v: {k: {op: v}},
            key,
            st.sampled_from(["$in", "$nin"]),
            st.lists(scalars, min_size=1, max_size=3),
        ),
        st.builds(lambda k, v: {k: {"$exists": v}}, key, st.booleans()),
    )


filters = st.recursive(
    conditions(),
    lambda inner: st.builds(
        lambda op, parts: {op: parts},
        st.sampled_from(["$and", "$or"]),
        st.lists(inner, min_size=1, max_size=3),
    ),
    max_leaves=6,
)


# -- an independent reading of what a filter means (docs: carma.domain.filters) ---------------


def _kind(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    return "string" if isinstance(v, str) else "list"


def _equal(a, b):
    if _kind(a) != _kind(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(
            _kind(x) == _kind(y) and repr(x) == repr(y) for x, y in zip(a, b)
        )
    return a == b


def brute(f, meta) -> bool:
    results = []
    for key, value in f.items():
        if key == "$and":
            results.append(all(brute(p, meta) for p in value))
        elif key == "$or":
            results.append(any(brute(p, meta) for p in value))
        elif not isinstance(value, dict):
            results.append(key in meta and _equal(meta[key], value))
        else:
            for op, v in value.items():
                has = key in meta
                field = meta.get(key)
                if op == "$eq":
                    results.append(has and _equal(field, v))
                elif op == "$ne":
                    results.append(not (has and _equal(field, v)))
                elif op == "$in":
                    results.append(has and any(_equal(field, x) for x in v))
                elif op == "$nin":
                    results.append(not (has and any(_equal(field, x) for x in v)))
                elif op == "$exists":
                    results.append(has == v)
                else:
                    same = has and _kind(field) == _kind(v) and _kind(v) in ("number", "string")
                    results.append(
                        same
                        and {
                            "$gt": field > v if same else 0,
                            "$gte": field >= v if same else 0,
                            "$lt": field < v if same else 0,
                            "$lte": field <= v if same else 0,
                        }[op]
                    )
    return all(results)


@settings(max_examples=60)
@given(items=st.lists(metadata, min_size=1, max_size=12), where=filters, k=st.integers(1, 4))
def test_a_filtered_search_is_the_brute_force_reading_and_returns_k_when_k_match(items, where, k):
    with tempfile.TemporaryDirectory() as tmp:
        with carma.open(Path(tmp) / "home", embedder=HashingEmbedder(dimension=16)) as mem:
            mem.add_many(
                [
                    {"text": f"fragment {i}", "metadata": m, "id": f"f{i}"}
                    for i, m in enumerate(items)
                ]
            )
            expected = {r.id for r in mem.export() if brute(where, r.metadata)}
            found = {h.id for h in mem.search("fragment", k=1000, where=where)}
            assert found == expected
            assert len(mem.search("fragment", k=k, where=where)) == min(k, len(expected))
            assert {
                h.id for h in mem.search("fragment", k=1000, where=where, mode="keyword")
            } == expected


WORDS = ["river", "stone", "cloud", "ember", "quiet", "glass", "north", "salt", "INV-2291"]
texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=5).map(" ".join)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.sampled_from(["a", "b", "c", "d"]), texts, metadata),
        st.tuples(st.just("revise"), st.sampled_from(["a", "b", "c", "d"]), texts),
        st.tuples(st.just("delete"), st.sampled_from(["a", "b", "c", "d"])),
        st.tuples(st.just("forget"), st.sampled_from(["a", "b", "c", "d"])),
        st.tuples(
            st.just("mark"),
        ),
    ),
    max_size=20,
)


def _apply(mem, ops) -> list[int]:
    """Run a history; returns the log positions marked along it."""
    marks = []
    for op in ops:
        try:
            if op[0] == "add":
                mem.add(op[2], op[3], id=op[1])
            elif op[0] == "revise":
                mem.revise(op[1], text=op[2])
            elif op[0] == "delete":
                mem.delete(op[1])
            elif op[0] == "forget":
                mem.forget(op[1], reason="asked")
            else:
                marks.append(mem.log.position())
        except (carma.FragmentNotFound, carma.FragmentGone):
            pass
    return marks + [mem.log.position()]


@settings(max_examples=25)
@given(ops=operations, where=st.none() | filters)
def test_search_as_of_a_position_equals_search_on_a_replay_up_to_it(ops, where):
    with tempfile.TemporaryDirectory() as tmp:
        with carma.open(Path(tmp) / "home", embedder=HashingEmbedder(dimension=16)) as mem:
            marks = _apply(mem, ops)
            for i, position in enumerate(marks):
                with mem.replay(position, into=Path(tmp) / f"replay{i}") as then:
                    for query in ("river stone", "INV-2291 salt"):
                        past = mem.search(query, k=10, where=where, as_of=position)
                        replayed = then.search(query, k=10, where=where)
                        assert _ranking(past) == _ranking(replayed)
                        assert [
                            (h.text, h.metadata, h.namespace)
                            for h in sorted(past, key=lambda h: h.id)
                        ] == [
                            (h.text, h.metadata, h.namespace)
                            for h in sorted(replayed, key=lambda h: h.id)
                        ]
                        keyword_past = mem.search(
                            query, k=10, where=where, as_of=position, mode="keyword"
                        )
                        keyword_then = then.search(query, k=10, where=where, mode="keyword")
                        assert {h.id for h in keyword_past} == {h.id for h in keyword_then}


def _ranking(hits):
    """(score, id) best first, scores to 5 places; ties in any order."""
    return sorted((-round(h.score, 5), h.id) for h in hits)


@settings(max_examples=25)
@given(ops=operations)
def test_the_keyword_index_rebuilt_from_the_log_equals_the_incremental_one_and_forgets(ops):
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        with carma.open(home, embedder=HashingEmbedder(dimension=16)) as mem:
            _apply(mem, ops)
            mem.add("a note about the word zyxwvuquorble", id="secret")
            incremental = store_state(mem)
            mem.rebuild()
            assert store_state(mem) == incremental
            assert mem.search("zyxwvuquorble", mode="keyword")[0].id == "secret"
            mem.forget("secret", reason="asked")
            assert mem.search("zyxwvuquorble", mode="keyword") == []
        on_disk = b"".join(p.read_bytes() for p in home.glob("ledger.sqlite*"))
        assert b"quorble" not in on_disk and b"zyxwvu" not in on_disk

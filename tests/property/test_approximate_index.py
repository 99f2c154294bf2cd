"""The approximate index (an HNSW graph past `approximate_above` live vectors) against the
exact answer: after random writes, revisions, removals, compactions and reloads, a search
never returns a removed fragment, returns k whenever k are allowed, and equals a brute-force
scan where the graph is searched exhaustively (efSearch above the number of labels: these
properties are about what the index holds; how close a bounded search comes is
`carma bench`'s to measure). A store on the graph gives the same answers rebuilt from the log
as kept incrementally, and a damaged graph file is a finding, not a crash."""

import hashlib
import json
import tempfile
import threading
from pathlib import Path
from unittest import mock

import faiss
import numpy as np
import pytest
from carma.projections import VectorIndex
from carma.projections import index as index_module
from carma.projections.index import FORMAT, HEADER_BYTES
from hypothesis import given, settings
from hypothesis import strategies as st

import carma
from carma.embedding import HashingEmbedder

DIM = 8
IDS = st.integers(1, 60)


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.lists(st.tuples(IDS, st.integers(0, 10**6)), max_size=25)),
        st.tuples(st.just("remove"), st.lists(IDS, max_size=10)),
        st.tuples(st.just("reload"), st.none()),
        st.tuples(st.just("graph"), st.none()),
    ),
    max_size=25,
)


def applied(index: VectorIndex, model: dict, op: str, arg, opened) -> VectorIndex:
    """One of `operations` done to the index and to its model; the index after it (a reload
    opens another)."""
    if op == "put":
        entries = {fid: unit(seed).tobytes() for fid, seed in arg}
        index.put(entries)
        model.update({fid: np.frombuffer(v, np.float32) for fid, v in entries.items()})
    elif op == "remove":
        index.remove(arg)
        for fid in arg:
            model.pop(fid, None)
    elif op == "graph":  # the builder's next job, begun, built and installed at once
        if (job := index.next_graph_job()) is not None:
            assert job.build() and index.install(job)
    else:
        index.save()
        index = opened()
        assert index.load_error is None
    return index


def exact(model: dict[int, np.ndarray], q: np.ndarray, k: int, allowed=None) -> list[float]:
    ids = [i for i in model if allowed is None or i in allowed]
    return sorted((float(model[i] @ q) for i in ids), reverse=True)[:k]


@settings(max_examples=60)
@given(
    ops=operations,
    threshold=st.sampled_from([0, 5, 20, 10**6]),
    k=st.integers(1, 70),
    query_seed=st.integers(0, 1000),
    allowed=st.none() | st.sets(IDS, max_size=30),
    part_size=st.sampled_from([3, 16, 10**6]),
    sorted_after=st.sampled_from([2, 10**6]),
    left_behind=st.booleans(),
)
def test_the_index_answers_as_a_scan_of_the_live_vectors_would(
    ops, threshold, k, query_seed, allowed, part_size, sorted_after, left_behind
):
    # (ids are looked up in sorted arrays, and those labelled since in a dict until there
    # are `sorted_after` of them; `left_behind`: writes past the threshold go into flat
    # parts, whose graphs the "graph" operation builds, as a store's builder does)
    with (
        tempfile.TemporaryDirectory() as root,
        mock.patch.object(index_module, "LABELS_SORTED_AFTER", sorted_after),
    ):

        def opened() -> VectorIndex:
            index = VectorIndex(
                Path(root), DIM, approximate_above=threshold, ef_search=4096, part_size=part_size
            )
            index.graph_left_behind = left_behind
            return index

        index, model = opened(), {}
        for op, arg in ops:
            index = applied(index, model, op, arg, opened)
            assert index.count == len(model)
            assert index.approximate == (len(model) > threshold) or (
                # (hysteresis: the graph stays down to half the threshold)
                index.approximate and len(model) > threshold // 2
            )
        assert sorted(index.ids().tolist()) == sorted(model)
        q = unit(query_seed)
        hits = index.search(q, k, None if allowed is None else np.array(sorted(allowed)))
        found = [fid for fid, _ in hits]
        assert set(found) <= set(model) and len(set(found)) == len(found)
        assert allowed is None or set(found) <= allowed
        expected = exact(model, q, k, allowed)
        assert len(hits) == len(expected)
        assert np.allclose([s for _, s in hits], expected, atol=1e-5)
        for fid, score in hits:  # each score is that fragment's own
            assert score == pytest.approx(float(model[fid] @ q), abs=1e-5)
        fids, prints = index.fingerprints()
        assert sorted(fids.tolist()) == sorted(model)
        assert all(part.ntotal <= part_size for part in index._parts)
        # A scan of every part, merged: every live vector, each with its own score.
        scanned = index.scan(q, len(model))
        assert sorted(fid for fid, _ in scanned) == sorted(model)
        assert np.allclose([s for _, s in scanned], exact(model, q, len(model)), atol=1e-5)


@settings(max_examples=60)
@given(
    first=st.lists(st.tuples(IDS, st.integers(0, 10**6)), min_size=1, max_size=60),
    meanwhile=st.lists(operations, min_size=1, max_size=8),
    part_size=st.sampled_from([3, 16, 10**6]),
    compact_min=st.sampled_from([0, 4096]),
    k=st.integers(1, 70),
    query_seed=st.integers(0, 1000),
    left_behind=st.booleans(),
)
def test_a_graph_built_behind_answers_as_a_scan_whatever_happens_meanwhile(
    first, meanwhile, part_size, compact_min, k, query_seed, left_behind
):
    """A rebuild fills the index flat and builds its graph after, part by part (a job begun
    under the store's lock, built outside it, installed under it again): writes, removals,
    compactions and reloads between a job's beginning and its installing change nothing of
    what a search returns, and a removed vector is zeroed in the graph's copy too.
    `left_behind`: writes meanwhile go into flat parts too, each added to the graph part
    before it where it has room (a copy of that graph, which replaces both)."""
    with (
        tempfile.TemporaryDirectory() as root,
        mock.patch.object(index_module, "COMPACT_MIN", compact_min),
    ):

        def opened() -> VectorIndex:
            index = VectorIndex(
                Path(root), DIM, approximate_above=0, ef_search=4096, part_size=part_size
            )
            index.graph_left_behind = left_behind
            return index

        index, model = opened(), {}
        index.graph_deferred = True
        entries = {fid: unit(seed).tobytes() for fid, seed in first}
        index.put(entries)
        model.update({fid: np.frombuffer(v, np.float32) for fid, v in entries.items()})
        assert not index.approximate  # (deferred: flat past the threshold)
        assert index.settle_deferred() and index.approximate and index.graph_pending
        q = unit(query_seed)
        for ops in meanwhile:
            job = index.next_graph_job()
            for op, arg in ops:
                index = applied(index, model, op, arg, opened)
            if job is not None:
                assert job.build()
                if index.install(job):
                    # (sealed: what came meanwhile went to a part of its own)
                    assert job.part.ntotal == len(job.vectors)
                else:  # the parts were made anew meanwhile: the graph is let go, zeroed
                    assert not index_module._stored_in(job.graph).any()
            hits = index.search(q, k)
            assert np.allclose([s for _, s in hits], exact(model, q, k), atol=1e-5)
            assert set(fid for fid, _ in hits) <= set(model)
        while (job := index.next_graph_job()) is not None:
            assert job.build() and index.install(job)
        assert index.graph_pending == 0
        assert all(isinstance(part, faiss.IndexHNSWFlat) for part in index._parts) or (
            not index.approximate  # (fewer live than half the threshold: exact again)
        )
        hits = index.search(q, k)
        assert np.allclose([s for _, s in hits], exact(model, q, k), atol=1e-5)
        assert sorted(index.ids().tolist()) == sorted(model)
        dead = ~index._alive[: index._size]
        for number, part in enumerate(index._parts):
            rows = np.flatnonzero(dead[index._starts[number] : index._starts[number + 1]])
            assert not index_module._stored_in(part)[rows].any()


def test_the_dead_are_left_out_before_the_graph_is_built(tmp_path):
    index = VectorIndex(tmp_path, DIM, approximate_above=10, part_size=16, ef_search=4096)
    index.graph_deferred = True
    index.put({fid: unit(fid).tobytes() for fid in range(1, 41)})
    index.put({fid: unit(1000 + fid).tobytes() for fid in range(1, 11)})  # ten revised
    index.remove([11, 12])
    assert index._size == 50 and index.count == 38
    assert index.settle_deferred() and index._size == 38 and index.count == 38
    assert np.array_equal(index.vector(3), unit(1003)) and index.vector(11) is None


def test_a_graph_job_stopped_builds_nothing_and_the_next_open_goes_on(tmp_path):
    index = VectorIndex(tmp_path, DIM, approximate_above=10, part_size=16, ef_search=4096)
    index.graph_deferred = True
    index.put({fid: unit(fid).tobytes() for fid in range(1, 41)})
    assert index.settle_deferred() and index.graph_pending == 3
    stop = threading.Event()
    stop.set()
    index.graph_behind(threading.Lock(), stop)
    assert index.graph_pending == 3
    index.close()  # an approximate index with flat parts, as a store closed mid-build saves it
    again = VectorIndex(tmp_path, DIM, approximate_above=10, part_size=16, ef_search=4096)
    assert again.load_error is None and again.approximate and again.graph_pending == 3
    again.graph_behind(threading.Lock(), threading.Event())
    assert again.graph_pending == 0 and again.parts == 3
    assert [fid for fid, _ in again.search(unit(7), 1)] == [7]


def test_a_store_rebuilt_answers_while_its_graph_is_built_and_reopens_to_finish_it(tmp_path):
    home = tmp_path / "home"
    texts = [f"note {i} on subject {i % 7}" for i in range(300)]

    def answers(mem):
        return [(h.id, round(h.score, 5)) for h in mem.search("subject 3", k=20)]

    def alike(after, before):
        # The same scores; the same fragments but for the order of ties at the cut.
        cut = before[-1][1]
        return [s for _, s in after] == [s for _, s in before] and {
            f for f, s in after if s > cut
        } == {f for f, s in before if s > cut}

    with carma.open(home, embedder=HashingEmbedder(), approximate_above=50) as mem:
        mem.add_many(texts)
        before = answers(mem)
        mem.rebuild()
        # Whatever part of the graph is built yet: the same answers.
        assert alike(answers(mem), before)
        assert mem.wait_for_graph(timeout=120)
        assert mem.stats()["index_graph_pending"] == 0 and mem.index.approximate
        assert alike(answers(mem), before)
        # Closed before its graph is built: the store saves the index as it is.
        with mock.patch.object(carma.Memory, "_build_graph_behind"):
            mem.rebuild()
        assert mem.stats()["index_graph_pending"] == 1
        assert alike(answers(mem), before)
    with carma.open(home, embedder=HashingEmbedder(), approximate_above=50) as again:
        # Opened, it goes on building it; a fragment forgotten meanwhile is never found.
        gone = before[0][0]
        again.forget(gone, "a test of forgetting")
        assert gone not in {f for f, _ in answers(again)}
        assert again.wait_for_graph(timeout=120)
        assert again.stats()["index_graph_pending"] == 0 and again.index.approximate
        assert gone not in {f for f, _ in answers(again)}
        assert again.health()["by_fault"] == {}
    # Closed at once after a rebuild: the close waits for the graph.
    with carma.open(home, embedder=HashingEmbedder(), approximate_above=50) as mem:
        mem.rebuild()
    with carma.open(home, embedder=HashingEmbedder(), approximate_above=50) as again:
        assert again.index.graph_pending == 0 and again.index.approximate
    # Interrupted while it waits (Ctrl-C): the store still closes, and says why it stopped.
    mem = carma.open(home, embedder=HashingEmbedder(), approximate_above=50)
    mem.rebuild()
    with (
        mock.patch.object(carma.Memory, "wait_for_graph", side_effect=KeyboardInterrupt),
        pytest.raises(KeyboardInterrupt),
    ):
        mem.close()
    assert mem._closed and not mem._graph_builder.is_alive()
    with carma.open(home, embedder=HashingEmbedder(), approximate_above=50) as again:
        assert again.wait_for_graph(timeout=120) and again.index.graph_pending == 0
        found = answers(again)
        assert len(found) == 20 and gone not in {f for f, _ in found}


def test_a_write_past_the_threshold_leaves_the_graph_to_the_builder(tmp_path):
    """The write that takes a store past `approximate_above` returns with the index the
    graph's and its vectors flat (the store's lock held here: the builder cannot begin);
    searched meanwhile, they answer as an exact store does; then the builder makes their
    graph. Later writes go into a flat part of their own too, which the builder adds to that
    graph (one part again)."""
    texts = [f"note {i} on subject {i % 7}" for i in range(120)]

    def answers(mem):
        return [(h.text, round(h.score, 5)) for h in mem.search("subject 3", k=20)]

    def alike(got, want):  # the same scores; the same texts but for ties at the cut
        cut = want[-1][1]
        return [s for _, s in got] == [s for _, s in want] and {t for t, s in got if s > cut} == {
            t for t, s in want if s > cut
        }

    exact = carma.open(tmp_path / "exact", embedder=HashingEmbedder(), approximate_above=10**6)
    with (
        exact,
        carma.open(tmp_path / "home", embedder=HashingEmbedder(), approximate_above=50) as mem,
    ):
        mem.add_many(texts[:50])
        exact.add_many(texts[:100])
        with mem._lock:
            mem.add_many(texts[50:100])
            assert mem.index.approximate and mem.index.graph_pending == 1
            assert mem._graph_running  # (started: it waits for the lock)
            assert alike(answers(mem), answers(exact))
        assert mem.wait_for_graph(timeout=120) and mem.index.graph_pending == 0
        assert not mem._graph_running and alike(answers(mem), answers(exact))
        exact.add_many(texts[100:])
        with mem._lock:
            mem.add_many(texts[100:])
            assert mem.index.approximate and mem.index.graph_pending == 1
            assert mem.index.parts == 2 and alike(answers(mem), answers(exact))
        assert mem.wait_for_graph(timeout=120) and mem.index.graph_pending == 0
        assert mem.index.parts == 1 and alike(answers(mem), answers(exact))


def test_a_flat_part_is_added_to_the_graph_part_before_it_where_it_has_room(tmp_path):
    """Past the threshold, writes go into flat parts (graph_left_behind); a job adds one to a
    copy of the graph part before it, and that copy replaces both: the vectors keep their
    labels, what died meanwhile is zeroed in the copy, and a graph part past half of
    `part_size`, or too full to take them, leaves them a graph of their own."""
    index = VectorIndex(tmp_path, DIM, approximate_above=10, part_size=40, ef_search=4096)
    index.graph_left_behind = True
    index.put({fid: unit(fid).tobytes() for fid in range(1, 21)})  # past 10: flat, pending
    assert index.approximate and index.graph_pending == 1
    job = index.next_graph_job()
    assert job.base is None and job.build() and index.install(job)
    index.put({fid: unit(fid).tobytes() for fid in range(21, 31)})
    assert [type(part) for part in index._parts] == [faiss.IndexHNSWFlat, faiss.IndexFlatIP]
    job = index.next_graph_job()
    base = index._parts[0]
    assert job.base is base
    index.remove([3, 25])  # died while the job is built
    assert job.build() and index.install(job)
    assert index.parts == 1 and isinstance(index._parts[0], faiss.IndexHNSWFlat)
    assert index._parts[0] is not base and index._parts[0].ntotal == 30
    assert not index_module._stored_in(index._parts[0])[[2, 24]].any()
    model = {fid: unit(fid) for fid in range(1, 31) if fid not in (3, 25)}
    for seed in range(5):
        q = unit(10_000 + seed)
        hits = index.search(q, 10)
        assert np.allclose([s for _, s in hits], exact(model, q, 10), atol=1e-5)
    index.put({fid: unit(fid).tobytes() for fid in range(31, 36)})  # 30 > 40 / 2
    job = index.next_graph_job()
    assert job.base is None and job.build() and index.install(job)
    assert [part.ntotal for part in index._parts] == [30, 5]
    index.put({fid: unit(fid).tobytes() for fid in range(36, 72)})  # 5 + 36 > 40
    job = index.next_graph_job()
    assert job.base is None and job.build() and index.install(job)
    assert [part.ntotal for part in index._parts] == [30, 5, 36]


def test_compaction_drops_the_dead_and_keeps_every_live_vector(tmp_path):
    index = VectorIndex(tmp_path, DIM, approximate_above=100)
    index.put({fid: unit(fid).tobytes() for fid in range(1, 10_001)})
    assert index.approximate
    index.remove(list(range(1, 9_001)))  # 90% dead: compacted, on the graph still
    assert index.approximate and index.count == 1_000 and index._size == 1_000
    index.remove(list(range(9_001, 9_961)))  # below half the threshold: exact again
    assert not index.approximate and index.count == 40 and index._size == 40
    for fid in (9_961, 9_980, 10_000):
        assert np.array_equal(index.vector(fid), unit(fid))
    assert index.vector(1) is None


def test_a_file_of_the_first_format_is_read_and_written_again_in_todays(tmp_path):
    """Homes made before the label layout kept one IndexIDMap2: they open unchanged."""
    legacy = faiss.IndexIDMap2(faiss.IndexFlatIP(DIM))
    legacy.add_with_ids(np.stack([unit(i) for i in range(5)]), np.arange(10, 15, dtype=np.int64))
    body = faiss.serialize_index(legacy).tobytes()
    header = {"format": 1, "position": 7, "dimension": DIM, "count": 5}
    header["sha256"] = hashlib.sha256(body).hexdigest()
    (tmp_path / "vectors.faiss").write_bytes(json.dumps(header).encode() + b"\n" + body)
    index = VectorIndex(tmp_path, DIM)
    assert index.load_error is None and index.position == 7
    assert sorted(index.ids().tolist()) == list(range(10, 15))
    assert np.array_equal(index.vector(12), unit(2))
    index.close()
    assert json.loads((tmp_path / "vectors.faiss").read_bytes()[:HEADER_BYTES])["format"] == FORMAT
    assert VectorIndex(tmp_path, DIM).vector(12) is not None


def test_a_file_of_one_index_is_read_as_one_part_and_written_again_in_parts(tmp_path):
    """Format 2 kept the labels' vectors in one FAISS index, however many: it opens as one
    part, new vectors go to parts of their own, and a save writes today's format."""
    graph = faiss.IndexHNSWFlat(DIM, 8, faiss.METRIC_INNER_PRODUCT)
    graph.add(np.stack([unit(i) for i in range(40)]))
    body = np.arange(100, 140, dtype="<i8").tobytes() + np.ones(40, np.uint8).tobytes()
    body += faiss.serialize_index(graph).tobytes()
    header = {"format": 2, "position": 9, "dimension": DIM, "count": 40, "labels": 40}
    header |= {"kind": "approximate", "sha256": hashlib.sha256(body).hexdigest()}
    line = json.dumps(header).encode().ljust(HEADER_BYTES - 1) + b"\n"
    (tmp_path / "vectors.faiss").write_bytes(line + body)
    index = VectorIndex(tmp_path, DIM, approximate_above=20, part_size=16, ef_search=4096)
    assert index.load_error is None and index.approximate and index.parts == 1
    index.put({200 + i: unit(1000 + i).tobytes() for i in range(20)})
    assert index.parts == 3 and index.count == 60
    assert np.array_equal(index.vector(117), unit(17))
    assert np.array_equal(index.vector(219), unit(1019))
    q = unit(5)
    top = index.search(q, 3)
    assert top[0][0] == 105 and top[0][1] == pytest.approx(1.0, abs=1e-5)
    index.close()
    again = VectorIndex(tmp_path, DIM, approximate_above=20, part_size=16, ef_search=4096)
    header = json.loads((tmp_path / "vectors.faiss").read_bytes()[:HEADER_BYTES])
    assert header["format"] == FORMAT and header["parts"] == 3
    assert again.parts == 3 and [part.ntotal for part in again._parts] == [40, 16, 4]
    assert again.search(q, 3) == top


def test_an_index_of_many_parts_is_saved_and_read_back(tmp_path):
    """The parts' counts are in the body: the header's fixed room holds any number of parts."""
    index = VectorIndex(tmp_path, DIM, approximate_above=10**6, part_size=2)
    index.put({fid: unit(fid).tobytes() for fid in range(1, 401)})
    assert index.parts == 200
    index.close()
    again = VectorIndex(tmp_path, DIM, approximate_above=10**6, part_size=2)
    assert again.load_error is None and again.parts == 200 and again.count == 400
    assert np.array_equal(again.vector(399), unit(399))


def test_a_compaction_copies_part_by_part_into_parts_no_larger_than_their_size(tmp_path):
    index = VectorIndex(tmp_path, DIM, approximate_above=100, part_size=1_000)
    index.put({fid: unit(fid).tobytes() for fid in range(1, 10_001)})
    assert index.parts == 10
    index.remove(list(range(1, 10_001, 2)))  # half dead: compacted
    assert index._size == 5_000 and index.parts == 5
    assert all(part.ntotal == 1_000 for part in index._parts)
    assert np.array_equal(index.vector(10_000), unit(10_000)) and index.vector(9_999) is None
    assert [fid for fid, _ in index.search(unit(4_242), 1)] == [4_242]


@pytest.mark.parametrize("graph", [True, False])
def test_a_query_searches_half_of_its_parts_on_the_search_thread_as_one_core_would(tmp_path, graph):
    index = VectorIndex(tmp_path, DIM, approximate_above=100 if graph else 10**6, part_size=300)
    index.put({fid: unit(fid).tobytes() for fid in range(1, 2_001)})
    index.remove(list(range(1, 2_001, 3)))
    assert index.parts == 7 and index.approximate == graph
    threads = set()
    searched = index._search_each

    def search_each(parts, *args):
        threads.add(threading.current_thread().name)
        return searched(parts, *args)

    queries = [unit(10_000 + i) for i in range(20)]
    with (
        mock.patch.object(index_module, "SEARCH_BESIDE", True),
        mock.patch.object(index, "_search_each", search_each),
    ):
        beside = [index.search(q, 10) for q in queries]
    assert len(threads) == 2 and any(n.startswith("carma-index-search") for n in threads)
    with mock.patch.object(index_module, "SEARCH_BESIDE", False):
        alone = [index.search(q, 10) for q in queries]
    assert beside == alone and all(len(hits) == 10 for hits in beside)
    index.close()
    assert index._searcher is None


ACTIONS = ["add", "revise", "delete", "forget"]
texts = st.text(st.sampled_from("abcdefgh "), min_size=1, max_size=12).filter(str.strip)


@settings(max_examples=15)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["add", "revise", "delete", "forget"]), st.integers(0, 39), texts
        ),
        min_size=1,
        max_size=60,
    ),
    query=texts,
    k=st.integers(1, 50),
)
def test_a_store_on_the_graph_never_returns_a_removed_fragment_and_rebuilds_alike(steps, query, k):
    with (
        tempfile.TemporaryDirectory() as root,
        # Parts of 5 vectors: searches and rebuilds merge the hits of several.
        mock.patch.object(index_module, "PART_SIZE", 5),
        carma.open(Path(root) / "home", embedder=HashingEmbedder(), approximate_above=8) as mem,
    ):
        live: dict[str, str] = {}
        gone: set[str] = set()
        for action, n, text in steps:
            key = f"f{n}"
            if action == "add" and key not in live and key not in gone:
                mem.add(text, {"n": n}, id=key, namespace="odd" if n % 2 else "even")
                live[key] = text
            elif action == "revise" and key in live and live[key] != text:
                mem.revise(key, text)
                live[key] = text
            elif action == "delete" and key in live:
                mem.delete(key)
                gone.add(key)
                del live[key]
            elif action == "forget" and key in live:
                mem.forget(key, "a test of forgetting")
                gone.add(key)
                del live[key]
        hits = mem.search(query, k=k)
        assert {h.id for h in hits} <= set(live) and len(hits) == min(k, len(live))
        evens = [key for key in live if int(key[1:]) % 2 == 0]
        filtered = mem.search(query, k=k, namespace="even")
        assert {h.id for h in filtered} <= set(evens) and len(filtered) == min(k, len(evens))
        low = mem.search(query, k=k, where={"n": {"$lt": 10}})
        assert len(low) == min(k, sum(int(key[1:]) < 10 for key in live))
        before = [(h.id, round(h.score, 5)) for h in hits]
        mem.rebuild()
        after = [(h.id, round(h.score, 5)) for h in mem.search(query, k=k)]
        # The same scores; the same fragments, but for the order of ties at the cut (a
        # rebuild stores vectors in another order than the writes and revisions did).
        assert [score for _, score in after] == [score for _, score in before]
        cut = before[-1][1] if before else 0.0
        assert {f for f, s in after if s > cut} == {f for f, s in before if s > cut}
        # The graph built behind the rebuild, once whole, answers alike.
        assert mem.wait_for_graph(timeout=120) and mem.index.graph_pending == 0
        assert mem.index.approximate == (len(live) > 8)
        whole = [(h.id, round(h.score, 5)) for h in mem.search(query, k=k)]
        assert [score for _, score in whole] == [score for _, score in before]
        assert {f for f, s in whole if s > cut} == {f for f, s in before if s > cut}


def test_a_damaged_graph_file_is_a_finding_and_is_rebuilt(tmp_path):
    home = tmp_path / "home"
    mem = carma.open(home, embedder=HashingEmbedder(), approximate_above=50)
    mem.add_many([{"text": f"note {i} on subject {i % 7}"} for i in range(200)])
    assert mem.index.approximate
    mem.close()
    path = home / "index" / "vectors.faiss"
    raw = bytearray(path.read_bytes())
    at = len(raw) * 2 // 3
    raw[at : at + 64] = bytes(b ^ 0xFF for b in raw[at : at + 64])
    path.write_bytes(bytes(raw))
    with carma.open(home, embedder=HashingEmbedder(), approximate_above=50) as again:
        # Rebuilt from the log on open, graph and all: queries answer at once.
        assert again.index.approximate and again.index.count == 200
        assert len(again.search("subject 3", k=20)) == 20
        assert again.health()["by_fault"] == {"index-file/corrupt": 1}
        assert again.dream()["repaired"] == {"index-file/exact-log": 1}
        assert again.index.check_file(again.log.position(), 100) is None


@pytest.mark.parametrize("threshold", [0, 10**6])
def test_a_removed_vector_leaves_no_byte_in_memory_or_the_file(tmp_path, threshold):
    """Forgetting's promise holds between compactions: a dead label's vector is zeroed."""
    index = VectorIndex(tmp_path, DIM, approximate_above=threshold)
    index.put({fid: unit(fid).tobytes() for fid in range(1, 50)})
    index.remove([7])
    index.save()
    assert unit(7).tobytes() not in (tmp_path / "vectors.faiss").read_bytes()
    assert unit(8).tobytes() in (tmp_path / "vectors.faiss").read_bytes()
    assert index.vector(7) is None and index.count == 48

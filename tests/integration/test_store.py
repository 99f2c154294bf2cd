"""The store end to end on a real log (SQLite or PostgreSQL), real FAISS and real files
(lexical test embedder)."""

import numpy as np
import pytest

import carma
from carma import EmbedderMismatch, FragmentGone, FragmentNotFound, InvalidInput
from carma.embedding import HashingEmbedder
from tests.conftest import log_length


def test_a_fragment_reads_back_exactly_after_reopening(mem, home, embedder):
    key = mem.add("Agents remember what they were told.", {"source": "chat", "turn": 3})
    mem.close()
    with carma.open(home, embedder=embedder) as again:
        got = again.get(key)
    assert (got.text, got.metadata, got.namespace, got.version, got.status, got.fidelity) == (
        "Agents remember what they were told.",
        {"source": "chat", "turn": 3},
        "default",
        1,
        "healthy",
        1.0,
    )
    assert got.expected_recall is None


def test_writing_the_same_text_again_records_nothing(mem, home):
    first = mem.add("Idempotent writes make retries safe.")
    length = log_length(mem)
    assert mem.add("Idempotent writes make retries safe.") == first
    assert log_length(mem) == length
    other = mem.add("Idempotent writes make retries safe.", namespace="elsewhere")
    assert other != first
    # Without an id, the same text is the same fragment, whatever metadata comes along.
    assert mem.add("Idempotent writes make retries safe.", {"retry": 2}) == first
    assert mem.get(first).metadata == {}


def test_a_caller_id_is_an_upsert_never_a_duplicate(mem, home):
    assert mem.add("Version one.", id="doc-1") == "doc-1"
    length = log_length(mem)
    mem.add("Version one.", id="doc-1")
    assert log_length(mem) == length
    mem.add("Version two.", id="doc-1")
    got = mem.get("doc-1")
    assert (got.text, got.version) == ("Version two.", 2)
    assert mem.stats()["live"] == 1
    with pytest.raises(InvalidInput, match="lives in namespace 'default'"):
        mem.add("Version three.", id="doc-1", namespace="other")


def test_revise_changes_text_or_metadata_and_same_content_is_no_event(mem, home):
    key = mem.add("Original wording.", {"a": 1})
    vector_before = mem.index.vector(mem.ledger.row(key)["faiss_id"]).copy()
    revised = mem.revise(key, metadata={"a": 2})
    assert (revised.text, revised.metadata, revised.version) == ("Original wording.", {"a": 2}, 2)
    # A metadata-only revision keeps the embedding: the model is not run again.
    assert np.array_equal(mem.index.vector(mem.ledger.row(key)["faiss_id"]), vector_before)
    length = log_length(mem)
    mem.revise(key, metadata={"a": 2})
    assert log_length(mem) == length
    assert mem.revise(key, text="New wording.").text == "New wording."
    with pytest.raises(FragmentNotFound):
        mem.revise("nope", text="x")
    with pytest.raises(InvalidInput):
        mem.revise(key)


def test_a_deleted_fragment_is_gone_from_reads_and_search_but_not_from_history(mem):
    key = mem.add("This will be deleted.")
    keep = mem.add("This stays.")
    assert mem.delete(key, reason="obsolete") is True
    assert mem.delete(key) is False
    with pytest.raises(FragmentGone):
        mem.get(key)
    assert [h.id for h in mem.search("This will be deleted.", k=10)] == [keep]
    with pytest.raises(FragmentGone):
        mem.revise(key, text="resurrected?")
    with pytest.raises(FragmentGone):
        mem.add("Reusing the id.", id=key)
    assert [e.kind for e in mem.history(key)] == ["written", "deleted"]
    assert mem.history(key)[-1].detail == {"reason": "obsolete"}
    # The same text written again, without an id, is a new fragment.
    assert mem.add("This will be deleted.") not in (key, keep)
    with pytest.raises(FragmentNotFound):
        mem.delete("never-existed")


def test_search_ranks_by_similarity_and_filters_by_namespace_and_metadata(mem):
    mem.add_many(
        [
            {
                "text": "red apples grow on trees",
                "metadata": {"kind": "fruit", "ripe": True},
                "namespace": "food",
            },
            {
                "text": "green apples are sour",
                "metadata": {"kind": "fruit", "ripe": False, "tags": ["sour", "green"]},
                "namespace": "food",
            },
            {
                "text": "apples of the eye",
                "metadata": {"kind": "idiom", "n": 2},
                "namespace": "words",
            },
            {"text": "trains run on rails", "metadata": {"kind": "transport", "n": None}},
        ]
    )
    hits = mem.search("red apples", k=4)
    assert hits[0].text == "red apples grow on trees"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert {h.namespace for h in mem.search("apples", k=10, namespace="food")} == {"food"}
    assert [h.text for h in mem.search("apples", k=10, where={"kind": "idiom"})] == [
        "apples of the eye"
    ]
    assert [h.text for h in mem.search("apples", k=10, where={"ripe": False})] == [
        "green apples are sour"
    ]
    assert [h.text for h in mem.search("apples", where={"tags": ["sour", "green"]})] == [
        "green apples are sour"
    ]
    assert [h.text for h in mem.search("trains", where={"n": None})] == ["trains run on rails"]
    assert [h.text for h in mem.search("apples", where={"n": 2.0})] == ["apples of the eye"]
    assert mem.search("apples", namespace="food", where={"kind": "idiom"}) == []
    assert mem.search("apples", namespace="empty") == []
    for bad in (
        {"k": 0},
        {"k": 10_001},
        {"k": "3"},
        {"namespace": "../x"},
        {"where": {"a": {"b": 1}}},
    ):
        with pytest.raises(InvalidInput):
            mem.search("apples", **bad)
    with pytest.raises(InvalidInput):
        mem.search("   ")


def test_add_many_is_all_or_nothing(mem, home):
    mem.add("Already here.", id="taken")
    mem.delete("taken")
    length = log_length(mem)
    with pytest.raises(InvalidInput):
        mem.add_many(["fine", {"text": ""}])
    with pytest.raises(FragmentGone):
        mem.add_many(["fine too", {"text": "x", "id": "taken"}])
    assert log_length(mem) == length
    result = mem.add_many(["one", "two", "one", {"text": "two", "namespace": "b"}])
    assert (result.added, result.unchanged) == (3, 1)  # the repeated "one" is unchanged
    assert result.ids[0] == result.ids[2]
    assert len(set(result.ids)) == 3


def test_history_lists_every_event_with_its_log_position(mem):
    key = mem.add("v1", id="h")
    mem.revise(key, text="v2")
    mem.delete(key, reason="done")
    history = mem.history(key)
    assert [(e.version, e.kind) for e in history] == [
        (1, "written"),
        (2, "revised"),
        (3, "deleted"),
    ]
    positions = [e.position for e in history]
    assert positions == sorted(positions) and len(set(positions)) == 3
    with pytest.raises(FragmentNotFound):
        mem.history("unknown")


def test_the_index_is_persisted_with_its_position_and_loaded_without_replay(mem, home, embedder):
    mem.add_many([f"sentence number {i} about storage" for i in range(50)])
    position = mem.log.position()
    mem.close()
    with carma.open(home, embedder=embedder) as again:
        assert again.index.load_error is None
        assert again.index.position == position
        assert again.index.count == 50


def test_a_damaged_index_file_is_rebuilt_from_the_log(mem, home, embedder):
    mem.add_many([f"fact {i} about rivers" for i in range(20)])
    expected = [h.id for h in mem.search("fact 7 about rivers", k=3)]
    mem.close()
    path = home / "index" / "vectors.faiss"
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF
    path.write_bytes(bytes(raw))
    with carma.open(home, embedder=embedder) as again:
        assert [h.id for h in again.search("fact 7 about rivers", k=3)] == expected
        assert again.health()["by_fault"] == {"index-file/corrupt": 1}


def test_a_lost_or_stale_cache_file_is_read_from_the_log(mem):
    key = mem.add("Cached text.", id="c")
    path = mem.cache.path_of(mem.ledger.row(key)["uuid"])
    path.unlink()
    assert mem.get(key).text == "Cached text."
    path.write_text('{"format": 1, "text": "tampered"}')
    assert mem.get(key).text == "Cached text."


def test_a_store_refuses_another_embedder(mem, home):
    mem.add("Made with a 64-d embedder.")
    mem.close()
    with pytest.raises(EmbedderMismatch, match="hashing-64"):
        carma.open(home, embedder=HashingEmbedder(dimension=32))


def test_two_handles_on_one_home_see_each_others_writes(home, embedder):
    with carma.open(home, embedder=embedder) as a, carma.open(home, embedder=embedder) as b:
        key = a.add("Written through handle A.")
        assert b.get(key).text == "Written through handle A."
        b.revise(key, text="Revised through handle B.")
        assert a.get(key).text == "Revised through handle B."
        assert [h.id for h in a.search("Revised through handle B.", k=1)] == [key]


def test_open_refuses_unknown_settings_and_bad_homes(tmp_path, embedder):
    with pytest.raises(InvalidInput, match="unknown setting"):
        carma.open(tmp_path / "h", embedder=embedder, colour="blue")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInput, match="not a folder"):
        carma.open(tmp_path / "file", embedder=embedder)
    for passes in (0, -1, 2.5, True, "8"):
        with pytest.raises(InvalidInput, match="log_passes"):
            carma.open(tmp_path / "h", embedder=embedder, log_passes=passes)
    assert not (tmp_path / "h").exists()  # refused before anything was created


def test_the_home_is_private_to_its_owner(home, embedder):
    with carma.open(home, embedder=embedder):
        pass
    assert home.stat().st_mode & 0o077 == 0


def test_each_home_keeps_its_log_on_the_backend_of_the_run(mem, home, embedder, tmp_path, backend):
    mem.add("Kept in the log of this run's backend.", id="here")
    assert (home / "database.json").is_file() is backend.postgres
    assert (home / "events.sqlite").is_file() is not backend.postgres
    assert (mem.database is not None) is backend.postgres
    with carma.open(tmp_path / "other", embedder=embedder) as other:  # a store of its own
        other.add("Kept in another log.", id="there")
        assert log_length(other) == 2 and [h.id for h in other.search("Kept", k=5)] == ["there"]
    assert log_length(mem) == 2 and [h.id for h in mem.search("Kept", k=5)] == ["here"]

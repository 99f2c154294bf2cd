"""Damage to the log itself: real bytes of stored events flipped in the database (the SQLite
file, or the PostgreSQL table).

The store keeps answering, the scrubber records each damaged body once, and the healer
restates it: exactly from a copy whose text has the recorded hash, else approximately from
the surviving embedding and same-namespace neighbours, else not at all (it stays lost).
"""

import json
from uuid import UUID

import numpy as np
import pytest
from carma.domain import Fragment, copy_kind, fragment_uuid

import carma
from tests.conftest import damage_event, snapshot_count, stored_rows

TOPICS = [
    "Rivers carry sediment from the mountains down to the sea.",
    "The river delta is built from sediment carried by the water.",
    "Mountains erode slowly as rain and rivers carry rock away.",
    "Sediment settles where the river slows near the sea.",
    "A glacier carves a valley as it moves down the mountain.",
]


def flip_event(target, key, version=1, offset=150):
    """Flip one byte of a fragment's stored event, as bit rot would (target: an open store,
    or the home of a closed one)."""

    def flipped(state):
        damaged = bytearray(state)
        damaged[offset % len(damaged)] ^= 0x20
        return damaged

    assert damage_event(target, fragment_uuid(key), version, flipped)


def kinds(mem, key):
    return [(e.kind, e.detail.get("copy"), e.detail.get("method")) for e in mem.history(key)]


def open_faults(mem, key):
    """The health ledger's open findings about a fragment's copies."""
    return [
        (r["copy"], r["fault"])
        for r in mem.ledger.db.query(
            "SELECT copy, fault FROM faults WHERE uuid = ? ORDER BY copy", [str(fragment_uuid(key))]
        )
    ]


@pytest.fixture
def store(mem):
    keys = mem.add_many([{"text": t, "id": f"k{i}"} for i, t in enumerate(TOPICS)]).ids
    return mem, keys


def test_a_damaged_event_never_stops_reads_queries_or_a_rebuild(store):
    mem, keys = store
    flip_event(mem, "k0")
    record = mem.get("k0")  # from the cache file, which the ledger vouches for
    assert record.text == TOPICS[0] and record.status == "healthy"
    assert [h.id for h in mem.search("sediment carried by rivers", k=5)]
    fragment = mem.log.fragment("k0")  # the log's replay goes on past the damage
    assert fragment.text is None and fragment.unreadable == [1]
    events = list(mem.log_events())
    assert sum(e["kind"] == "corrupt" for e in events) == 1
    mem.rebuild()  # records and repairs the damage first, then replays past it
    assert mem.get("k0").text == TOPICS[0]
    assert mem.health()["score"] == 1.0 and mem.dream()["found"] == {}


def test_damage_is_recorded_once_and_repaired_exactly_from_a_verified_copy(store):
    mem, _ = store
    flip_event(mem, "k1")
    report = mem.dream()
    assert report["found"]["log-body/corrupt"] == 1
    assert report["repaired"] == {"log-body/exact-copy": 1}
    again = mem.dream()  # the damaged event is still there, but already answered
    assert again["recorded"] == 0 and again["repaired"] == {}
    assert kinds(mem, "k1")[-2:] == [
        ("lost", "log-body", None),
        ("reconstructed", "log-body", "exact-copy"),
    ]
    lost = [e for e in mem.history("k1") if e.kind == "lost"][0]
    assert lost.detail["fault"] == "corrupt"
    # The log no longer depends on the damaged event: a snapshot holds the restated state.
    assert snapshot_count(mem, fragment_uuid("k1")) == 1
    assert mem.log.fragment("k1").text == TOPICS[1]
    mem.rebuild()
    assert mem.get("k1").text == TOPICS[1] and mem.get("k1").status == "healthy"


def test_a_copy_whose_hash_differs_is_not_used_and_the_body_is_reconstructed(store):
    mem, _ = store
    flip_event(mem, "k2")
    path = mem.cache.path_of(fragment_uuid("k2"))
    path.write_text(path.read_text().replace("erode slowly", "erode quickly"))
    report = mem.dream()
    assert report["repaired"].get("log-body/semantic-blend") == 1
    record = mem.get("k2")
    assert record.status == "approximate" and 0 < record.fidelity < 1
    # fidelity is the cosine of the reconstruction's embedding to the surviving one
    vectors = mem.embedder.embed([record.text])[0]
    surviving = np.frombuffer(mem.log.fragment("k2").embedding, dtype="<f4")
    assert record.fidelity == pytest.approx(float(vectors @ surviving), abs=1e-4)
    assert mem.health()["by_status"]["approximate"] == 1
    assert mem.health()["score"] == pytest.approx((4 + record.fidelity) / 5, abs=1e-6)


def test_reconstruction_draws_only_on_live_exact_fragments_of_the_same_namespace(mem):
    mem.add_many([{"text": t, "id": f"k{i}"} for i, t in enumerate(TOPICS)])
    # The nearest possible neighbours, but in another namespace, deleted or forgotten.
    mem.add(TOPICS[3], id="other", namespace="elsewhere")
    mem.add(TOPICS[3] + " Again.", id="gone")
    mem.add(TOPICS[3] + " Once more.", id="forgotten")
    mem.delete("gone")
    mem.forget("forgotten", "test")
    flip_event(mem, "k3")
    mem.cache.path_of(fragment_uuid("k3")).unlink()
    mem.dream()
    record = mem.get("k3")
    assert record.status == "approximate"
    reconstructed = [e for e in mem.history("k3") if e.kind == "reconstructed"][-1]
    sources = set(reconstructed.detail["sources"])
    assert sources and sources <= {"k0", "k1", "k2", "k4"}


def test_deleted_and_forgotten_fragments_are_never_repaired(store):
    mem, _ = store
    mem.delete("k0")
    mem.forget("k1", "a person asked")
    flip_event(mem, "k0")
    flip_event(mem, "k1")
    report = mem.dream()
    assert "log-body/corrupt" not in report["found"]
    assert not any(k.startswith("log-body") for k in report["repaired"])
    assert ("reconstructed", "log-body", None) not in [
        (k, c, None) for k, c, _ in kinds(mem, "k0") + kinds(mem, "k1")
    ]


def test_nothing_left_stays_lost_reported_and_counts_zero(store):
    mem, _ = store
    flip_event(mem, "k4")
    mem.cache.path_of(fragment_uuid("k4")).unlink()
    mem.index.remove([mem.ledger.row("k4")["faiss_id"]])  # the embedding is gone too
    report = mem.dream()
    assert report["found"]["log-body/corrupt"] == 1
    assert not any(k.startswith("log-body") for k in report["repaired"])
    record = mem.get("k4")
    assert record.status == "lost" and record.text is None and record.fidelity == 0
    health = mem.health()
    assert health["by_status"]["lost"] == 1 and health["score"] == pytest.approx(4 / 5)
    assert mem.dream()["recorded"] == 0  # reported once, not again and again


def test_an_exact_copy_upgrades_an_approximate_body(store):
    mem, _ = store
    flip_event(mem, "k2")
    mem.cache.path_of(fragment_uuid("k2")).unlink()
    mem.dream()
    assert mem.get("k2").status == "approximate"
    result = mem.add_many([TOPICS[2]])  # the original text, offered again without an id
    assert result.ids == ["k2"] and result.restored == 1 and result.added == 0
    record = mem.get("k2")
    assert record.status == "healthy" and record.text == TOPICS[2] and record.fidelity == 1.0
    assert kinds(mem, "k2")[-1] == ("reconstructed", "log-body", "exact-copy")
    assert mem.health()["score"] == 1.0
    assert mem.add(TOPICS[2]) == "k2"  # and now it is simply there: nothing recorded


def test_fidelity_never_goes_down_from_cycle_to_cycle(store):
    mem, _ = store
    flip_event(mem, "k1")
    mem.cache.path_of(fragment_uuid("k1")).unlink()
    mem.dream()
    fidelities = [mem.get("k1").fidelity]
    for _ in range(3):
        mem.dream()
        fidelities.append(mem.get("k1").fidelity)
    assert fidelities == sorted(fidelities)
    reconstructions = [e.detail["fidelity"] for e in mem.history("k1") if e.kind == "reconstructed"]
    assert reconstructions == sorted(reconstructions) and len(set(reconstructions)) == len(
        reconstructions
    )


def test_damage_to_a_cycle_report_is_reported_and_harms_nothing(store):
    mem, _ = store
    mem.dream()
    ((uuid, version),) = [
        (o, v) for _, o, v, topic, _ in stored_rows(mem) if topic.endswith("DreamCycleCompleted")
    ]
    assert damage_event(mem, UUID(uuid), version, lambda state: state[:40] + b"\0" + state[41:])
    report = mem.dream()
    assert report["found"] == {}  # no copy of anything live is lost
    assert mem.scrub()["checked"]["log_damaged_not_live"] == 1
    assert mem.health()["score"] == 1.0
    mem.rebuild()
    assert [mem.get(f"k{i}").text for i in range(5)] == TOPICS


def test_a_store_opened_behind_damage_catches_up_past_it(store, home, embedder):
    mem, _ = store
    flip_event(mem, "k0")
    mem.dream()  # repaired: a snapshot and a restatement
    mem.close()
    (home / "ledger.sqlite").unlink()  # the ledger is replayed from zero on open
    with carma.open(home, embedder=embedder) as reopened:
        assert reopened.get("k0").text == TOPICS[0]
        assert reopened.health()["score"] == 1.0
        assert reopened.log.fragment("k0").answered == [1]
        assert isinstance(reopened.log.fragment("k0"), Fragment)


def test_the_cli_marks_a_reconstruction_and_an_original_text_restores_it(home, tmp_path):
    from click.testing import CliRunner

    from carma.cli import cli

    def run(*args):
        return CliRunner().invoke(
            cli, [*args, "--home", str(home), "--embedder", "hashing"], catch_exceptions=False
        )

    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(json.dumps({"text": t, "id": f"k{i}"}) + "\n" for i, t in enumerate(TOPICS))
    )
    assert run("import", str(source)).exit_code == 0
    flip_event(home, "k3")
    (path,) = home.glob(f"cache/*/{fragment_uuid('k3').hex}.json")
    path.unlink()
    assert json.loads(run("dream", "--json").stdout)["repaired"]["log-body/semantic-blend"] == 1
    shown = run("get", "k3").stdout
    assert "≈ approximate · fidelity" in shown and "not the original" in shown
    record = json.loads(run("get", "k3", "--json").stdout)
    assert record["status"] == "approximate" and 0 < record["fidelity"] < 1
    # An export carries the label; importing it elsewhere refuses the reconstruction.
    exported = tmp_path / "export.jsonl"
    exported.write_text(run("export").stdout)
    other = tmp_path / "other"
    refused = CliRunner().invoke(
        cli,
        [
            "import",
            str(exported),
            "--skip-invalid",
            "--json",
            "--home",
            str(other),
            "--embedder",
            "hashing",
        ],
    )
    assert refused.exit_code == 1
    assert json.loads(refused.stdout)["added"] == 4 and json.loads(refused.stdout)["rejected"] == 1
    # Importing the original file again restores the text exactly.
    counts = json.loads(run("import", str(source), "--json").stdout)
    assert counts["restored"] == 1 and counts["added"] == 0
    assert json.loads(run("get", "k3", "--json").stdout)["text"] == TOPICS[3]


def test_an_event_backup_is_the_exact_source_that_upgrades_a_reconstruction(store):
    mem, _ = store
    backup = list(mem.export_events())  # taken while the log was whole
    flip_event(mem, "k2")
    mem.cache.path_of(fragment_uuid("k2")).unlink()
    mem.dream()
    assert mem.get("k2").status == "approximate"
    counts = mem.import_events(backup)
    assert counts == {"appended": 0, "unchanged": len(backup) - 1, "restored": 1}
    record = mem.get("k2")
    assert record.status == "healthy" and record.text == TOPICS[2]
    assert kinds(mem, "k2")[-1] == ("reconstructed", "log-body", "exact-copy")
    assert mem.import_events(backup)["restored"] == 0  # twice changes nothing more


def test_an_event_backup_restores_damage_not_yet_found(store):
    mem, _ = store
    backup = list(mem.export_events())
    flip_event(mem, "k4")
    assert mem.import_events(backup)["restored"] == 1
    assert mem.log.fragment("k4").text == TOPICS[4]
    assert mem.dream()["found"] == {}


def test_a_body_without_neighbours_keeps_its_embedding_until_it_can_be_rebuilt(mem):
    mem.add(TOPICS[0], id="alone", namespace="solo")
    mem.add_many([{"text": t, "id": f"k{i}"} for i, t in enumerate(TOPICS[1:])])
    flip_event(mem, "alone")
    mem.cache.path_of(fragment_uuid("alone")).unlink()
    report = mem.dream()
    assert report["repaired"] == {"log-body/embedding-kept": 1}
    assert mem.get("alone").status == "lost"
    mem.rebuild()  # the kept embedding is in the log: the rebuilt index still has it
    assert mem.index.vector(mem.ledger.row("alone")["faiss_id"]) is not None
    mem.add_many([{"text": t, "namespace": "solo"} for t in TOPICS[1:]])
    report = mem.dream()  # neighbours now exist in its namespace: the text is rebuilt
    assert report["repaired"].get("log-body/refined") == 1
    record = mem.get("alone")
    assert record.status == "approximate" and record.fidelity > 0


def test_chaos_and_the_reconstruct_benchmark_damage_the_stored_log(store):
    import carma.bench  # noqa: F401 - first: it imports bench_reconstruct itself
    from carma.bench.reconstruct import _damage
    from carma.demo.chaos import destroy_bodies

    mem, _ = store
    destroy_bodies(mem, ["k1"])  # the body's event and its cache file
    _damage(mem, ["k3"])  # the body's first event only
    assert not mem.cache.path_of(fragment_uuid("k1")).exists()
    assert mem.cache.path_of(fragment_uuid("k3")).exists()
    assert [mem.log.fragment(k).unreadable for k in ("k1", "k3")] == [[1], [1]]
    report = mem.dream()
    assert report["found"]["log-body/corrupt"] == 2
    assert report["repaired"]["log-body/exact-copy"] == 1  # k3, from its cache file
    assert mem.get("k3").text == TOPICS[3] and mem.get("k1").status == "approximate"


def test_the_log_is_scrubbed_on_a_rolling_schedule_and_deep_on_demand(mem):
    """A scrub reads the events appended since the last one and a slice of the older ones,
    so that every event is read again within `log_passes` scrubs; `deep` reads them all."""
    mem.add_many(
        [{"text": f"fragment number {i} of a rolling scrub", "id": f"r{i}"} for i in range(40)]
    )
    scrubber = mem.dreamer.scrubber
    scrubber.log_passes, scrubber.log_slice_min = 4, 1
    first = mem.scrub()["checked"]  # nothing checked before: the whole log
    head = mem.log.position()
    assert first["log_deep"] == 1 and first["log_events"] == head

    flip_event(mem, "r30")  # an old event, read only when the slice comes round to it
    rolling = []
    for _ in range(scrubber.log_passes + 1):
        report = mem.scrub()
        rolling.append(report["checked"])
        if report["found"]:
            break
    assert report["found"] == {"log-body/corrupt": 1}
    assert 1 < len(rolling) <= scrubber.log_passes + 1  # not the first slice's: later
    assert all(c["log_deep"] == 0 and c["log_events"] < head for c in rolling)

    flip_event(mem, "r1")
    assert mem.scrub(deep=True)["recorded"] == 1  # at once (r30's finding is open still)

    # Events appended since the last scrub are always read.
    mem.add_many([{"text": "written after the last scrub", "id": "late"}])
    flip_event(mem, "late")
    assert mem.scrub()["recorded"] == 1


def test_a_body_restated_in_one_batch_keeps_the_cache_file_the_next_batch_names(mem):
    """The batch after one that restates a body is planned while that one's files are being
    written; a finding about the same fragment waits until the restatement is recorded. A
    plan made before would see the body still lost and have the writer process remove the
    cache file the projection had just written from the restated body."""
    topics = [
        "Rivers carry sediment from the mountains down to the sea.",
        "The river delta is built from sediment carried by the water.",
        "Mountains erode slowly as rain and rivers carry rock away.",
        "Sediment settles where the river slows near the sea.",
        "A glacier carves a valley as it moves down the mountain.",
    ]
    mem.add_many([{"text": t, "id": f"k{i}"} for i, t in enumerate(topics)])
    flip_event(mem, "k1")
    path = mem.cache.path_of(mem.ledger.row("k1")["uuid"])
    path.unlink()
    assert mem.scrub()["found"] == {"log-body/corrupt": 1, "cache/missing": 1}
    mem.dreamer.healer.batch_size = 1  # the body's finding and the file's: two batches
    assert list(mem.heal()) == [f"log-body/{mem.dreamer.healer.reconstructor.method}"]
    assert path.exists()
    assert mem.scrub()["found"] == {}


def test_damage_the_rolling_scrub_has_not_read_is_recorded_when_a_repair_meets_it(mem):
    """A copy's repair replays the fragment; where the replay meets an unreadable event no
    scrub has read yet, the healer records that damage and repairs the body in the same
    cycle (here, from the cache file that survives), rather than leave the fragment lost
    until the rolling slice comes round to it."""
    mem.add_many(
        [{"text": f"fragment number {i} of a rolling scrub", "id": f"r{i}"} for i in range(40)]
    )
    scrubber = mem.dreamer.scrubber
    scrubber.log_passes, scrubber.log_slice_min = 8, 1
    mem.dream()  # the whole log read once: later scrubs roll
    flip_event(mem, "r30")  # not in the next slice
    with mem._lock:  # a copy lost, whose repair needs the body
        mem.index.remove([mem.ledger.row("r30")["faiss_id"]])
    report = mem.dream()
    assert report["checked"]["log_deep"] == 0
    assert report["found"] == {"index/missing": 1, "log-body/corrupt": 1}
    assert report["repaired"] == {"log-body/exact-copy": 1}
    assert kinds(mem, "r30")[-3:] == [
        ("lost", "index", None),
        ("lost", "log-body", None),
        ("reconstructed", "log-body", "exact-copy"),
    ]
    record = mem.get("r30")
    assert record.status == "healthy" and record.text == "fragment number 30 of a rolling scrub"
    assert [h.id for h in mem.search(record.text, k=1)] == ["r30"]
    assert mem.dream(deep=True)["found"] == {}


def test_log_passes_of_one_reads_the_whole_log_at_every_scrub(home, embedder):
    with carma.open(home, embedder=embedder, log_passes=1) as mem:
        mem.dreamer.scrubber.log_slice_min = 1  # a log this short would be read whole anyway
        mem.add_many([{"text": f"fragment number {i}", "id": f"p{i}"} for i in range(20)])
        mem.scrub()
        mem.add_many([{"text": "one more", "id": "more"}])
        checked = mem.scrub()["checked"]
        assert checked["log_deep"] == 1 and checked["log_events"] == mem.log.position()


def test_a_rebuild_keeps_the_repair_method_of_a_fragment_whose_first_event_is_unreadable(mem):
    mem.add_many([{"text": "amber light on the harbour", "id": "a1"}])
    mem.cache.path_of(mem.ledger.row("a1")["uuid"]).unlink()
    assert mem.dream()["repaired"] == {"cache/exact-log": 1}
    flip_event(mem, "a1")  # the first event: a rebuild's row comes from the revision
    mem.revise("a1", text="amber light on the harbour, revised", metadata={})
    mem.dream()
    assert mem.ledger.row("a1")["last_method"] == "exact-log"
    mem.rebuild()
    assert mem.ledger.row("a1")["last_method"] == "exact-log"


def test_a_revision_answers_the_copy_findings_recorded_while_its_body_was_lost(mem):
    """While a body is lost its cache finding stays open (the body's restatement will
    rewrite that copy). A revision is a new whole body: the projections rewrite every copy
    from it, so it answers those findings too, and the fragment counts as whole again."""
    mem.add(TOPICS[0], id="alone", namespace="solo")
    mem.add_many([{"text": t, "id": f"k{i}"} for i, t in enumerate(TOPICS[1:])])
    flip_event(mem, "alone")
    mem.cache.path_of(fragment_uuid("alone")).unlink()
    report = mem.dream()
    assert report["found"] == {"log-body/corrupt": 1, "cache/missing": 1}
    assert report["repaired"] == {"log-body/embedding-kept": 1}
    faults = mem.log.fragment("alone").faults  # on PostgreSQL a copy names its replica
    assert {copy_kind(c): f for c, f in faults.items()} == {
        "log-body": "corrupt",
        "cache": "missing",
    }
    mem.revise("alone", text="A lone fragment, written anew.", metadata={})
    assert mem.log.fragment("alone").faults == {}
    assert open_faults(mem, "alone") == []
    report = mem.dream()
    assert report["found"] == {} and report["health_after"] == 1.0
    assert mem.health()["score"] == 1.0
    assert mem.get("alone").text == "A lone fragment, written anew."
    mem.rebuild()  # the rebuilt ledger agrees
    assert open_faults(mem, "alone") == [] and mem.health()["score"] == 1.0


def test_a_rebuilt_text_is_not_exact_while_its_metadata_is_unknown(home, embedder):
    """The content hash covers the text alone. A body destroyed in the log and the cache,
    whose metadata no record keeps any longer (the ledger rebuilt after the damage), may be
    rebuilt to its very text: it stays approximate, never "healthy" with metadata made up."""
    text = "amber light on the harbour"
    with carma.open(home, embedder=embedder) as mem:
        mem.add(text, {"kind": 1}, id="a1", namespace="solo")
        flip_event(mem, "a1")
        mem.cache.path_of(fragment_uuid("a1")).unlink()
        assert mem.dream()["repaired"] == {"log-body/embedding-kept": 1}  # no neighbour yet
    for path in home.glob("ledger.sqlite*"):  # the one record of its metadata
        path.unlink()
    with carma.open(home, embedder=embedder) as mem:
        assert mem.ledger.row("a1")["metadata"] is None  # unknown, not "{}"
        mem.add(text, {}, id="n1", namespace="solo")  # a neighbour with its very words
        assert mem.dream()["repaired"] == {"log-body/refined": 1}  # a lost body retried
        assert kinds(mem, "a1")[-1] == ("reconstructed", "log-body", "semantic-blend")
        record = mem.get("a1")
        assert record.text == text  # its very text...
        assert record.status == "approximate" and record.metadata == {}  # ...but not whole
        assert mem.dream()["found"] == {}  # nor is its cache file found wrong
        # The original added again with its metadata (and its id) restores it exactly.
        mem.add(text, {"kind": 1}, id="a1", namespace="solo")
        record = mem.get("a1")
        assert (record.status, record.metadata) == ("healthy", {"kind": 1})


def test_an_approximate_body_whose_own_event_is_damaged_is_restated_as_it_was(store):
    """The event that recorded a reconstruction can itself be damaged. Its body is still
    readable from the snapshot taken with it: the repair restates it as it is, labelled as
    it was, and a rebuild of the projections then reads it as the incremental ones did."""
    mem, _ = store
    flip_event(mem, "k1")
    mem.cache.path_of(fragment_uuid("k1")).unlink()
    mem.dream()
    before = mem.get("k1")
    assert before.status == "approximate"
    flip_event(mem, "k1", version=mem.ledger.row("k1")["version"])  # the reconstruction's
    report = mem.dream(deep=True)
    assert report["found"].get("log-body/corrupt") == 1
    assert report["repaired"]["log-body/semantic-blend"] == 1  # (then refined, budget allowing)
    events = mem.history("k1")
    found = max(i for i, e in enumerate(events) if e.kind == "lost")
    restated = next(e.detail for e in events[found:] if e.kind == "reconstructed")
    assert (restated["method"], restated["fidelity"]) == ("semantic-blend", before.fidelity)
    after = mem.get("k1")
    assert after.status == "approximate" and after.fidelity >= before.fidelity
    assert mem.dream(deep=True)["found"] == {}
    mem.rebuild()  # (which may refine it further)
    rebuilt = mem.get("k1")
    assert rebuilt.status == "approximate" and rebuilt.fidelity >= after.fidelity
    assert rebuilt.text == mem.log.fragment("k1").text


def test_a_ledger_row_made_late_knows_its_vector_and_the_scrub_tells_a_changed_one(
    tmp_path, embedder, backend
):
    """A ledger built after a fragment's first event became unreadable (here: the ledger file
    lost and rebuilt from the log) makes its row from the finding about the damage: it takes
    the vector's fingerprint the finding recorded, so the scrub still tells a changed vector
    from a correct one (with 0 it called a correct vector corrupt)."""
    home = tmp_path / "home"
    with carma.open(home, embedder=embedder) as mem:
        mem.add_many([{"text": t, "id": f"k{i}"} for i, t in enumerate(TOPICS)])
        fingerprint = mem.ledger.row("k2")["embedding_fingerprint"]
        flip_event(mem, "k2")
        assert mem.scrub(deep=True)["found"] == {"log-body/corrupt": 1}
        faiss_id = mem.ledger.row("k2")["faiss_id"]
    for path in home.glob("ledger.sqlite*"):
        path.unlink()
    with carma.open(home, embedder=embedder) as mem:
        assert mem.ledger.row("k2")["embedding_fingerprint"] == fingerprint
        assert "index/corrupt" not in mem.scrub()["found"]
        changed = mem.index.vector(faiss_id).copy()
        changed[0] += 0.5
        mem.index.put({faiss_id: changed.astype("<f4").tobytes()})
        assert mem.scrub()["found"].get("index/corrupt") == 1

"""Healing on real files: every fault detected, recorded once, repaired exactly; queries never
fail."""

import dataclasses
import json
import os
from uuid import UUID

import carma.healing.scrubber
import carma.projections.cache
import carma.projections.files
import numpy as np
import pytest

import carma
from carma import FragmentGone
from tests.conftest import stored_rows


def fragments(mem, n=12):
    return mem.add_many([f"note {i}: the tide turns at dawn near pier {i}" for i in range(n)]).ids


def topics(target):
    """The kinds of the log's events in log order (target: a store, or a closed one's home)."""
    return [topic.rsplit(".", 1)[-1] for _, _, _, topic, _ in stored_rows(target)]


def cache_path(mem, key):
    return mem.cache.path_of(mem.ledger.row(key)["uuid"])


def uuid_of(mem, key):
    return mem.ledger.row(key)["uuid"]


def test_every_cache_fault_is_found_recorded_once_and_repaired_exactly(mem):
    ids = fragments(mem)
    originals = {k: mem.get(k) for k in ids}
    missing, garbage, tampered, stale, gone = ids[:5]
    cache_path(mem, missing).unlink()
    cache_path(mem, garbage).write_bytes(b"\x00\xffnot json")
    body = json.loads(cache_path(mem, tampered).read_text())
    body["text"] = "the tide never turns"
    cache_path(mem, tampered).write_text(json.dumps(body))
    old_stale = cache_path(mem, stale).read_bytes()
    mem.revise(stale, text="note 3, revised: the tide turns at noon")
    originals[stale] = mem.get(stale)
    cache_path(mem, stale).write_bytes(old_stale)
    old_gone = cache_path(mem, gone).read_bytes()
    mem.delete(gone)
    cache_path(mem, gone).write_bytes(old_gone)  # a copy of a deleted fragment reappears
    stray = mem.cache.root / "ab" / ".tmp-left-by-a-crash.json"
    stray.parent.mkdir(exist_ok=True)
    stray.write_text("{}")
    os.utime(stray, (1_000_000_000, 1_000_000_000))  # untouched for years
    in_flight = mem.cache.root / "ab" / ".tmp-a-writer-at-work.json"
    in_flight.write_text("{")  # fresh: may belong to a writer about to rename it

    report = mem.scrub()
    assert report["found"] == {
        "cache/missing": 1,
        "cache/unreadable": 1,
        "cache/corrupt": 1,
        "cache/stale": 1,
        "cache/extra": 1,
        "stray": 1,
    }
    assert report["recorded"] == 5
    assert not stray.exists() and in_flight.exists()
    assert mem.scrub()["recorded"] == 0  # idempotent: nothing new
    assert topics(mem).count("FragmentLost") == 5

    assert mem.heal() == {"cache/exact-log": 5}
    assert mem.heal() == {}
    assert topics(mem).count("FragmentReconstructed") == 5
    assert not cache_path(mem, gone).exists()
    for key, record in originals.items():
        if key != gone:
            assert mem.cache.read(uuid_of(mem, key)).text == record.text
    assert mem.scrub()["found"] == {}
    health = mem.health()
    assert health["score"] == 1.0 and health["by_fault"] == {}
    kinds = [e.kind for e in mem.history(missing)]
    assert kinds == ["written", "lost", "reconstructed"]
    detail = mem.history(missing)[-1].detail
    assert (detail["method"], detail["fidelity"], detail["copy"]) == ("exact-log", 1.0, "cache")


def test_every_index_fault_is_found_and_repaired(mem):
    ids = fragments(mem)
    absent, wrong, deleted = ids[:3]
    mem.delete(deleted)
    fid = lambda key: mem.ledger.row(key)["faiss_id"]  # noqa: E731
    mem.index.remove([fid(absent)])
    mem.index.put({fid(wrong): np.eye(1, mem.index.dimension, dtype="<f4").tobytes()})
    row = mem.log.fragment(deleted)
    mem.index.put({fid(deleted): row.embedding})
    mem.index.put({12345: row.embedding})  # an id no fragment ever had
    mem.index.path.unlink()
    report = mem.scrub()
    assert report["found"] == {
        "index/missing": 1,
        "index/corrupt": 1,
        "index/extra": 1,
        "index-file/missing": 1,
        "stray": 1,
    }
    assert mem.scrub()["recorded"] == 0
    assert mem.heal() == {"index/exact-log": 3, "index-file/exact-log": 1}
    assert mem.scrub()["found"] == {}
    assert sorted(mem.index.ids().tolist()) == sorted(fid(k) for k in ids if k != deleted)
    assert mem.index.check_file(mem.log.position(), 100) is None


@pytest.mark.parametrize(
    "damage, fault",
    [
        (lambda p: p.unlink(), "missing"),
        (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "corrupt"),
        (lambda p: p.write_bytes(b"garbage"), "unreadable"),
    ],
)
def test_a_damaged_index_file_is_one_finding_about_the_index(mem, home, damage, fault):
    fragments(mem, 30)
    mem.close()
    damage(home / "index" / "vectors.faiss")
    with carma.open(home, embedder=mem.embedder) as again:
        # Queries work at once: the index was rebuilt from the log on open.
        assert again.search("the tide turns at dawn near pier 7", k=1)[0].text.startswith("note 7")
        assert again.health()["by_fault"] == {f"index-file/{fault}": 1}
        assert topics(again).count("IndexLost") == 1
        assert again.dream()["repaired"] == {"index-file/exact-log": 1}
        assert again.index.check_file(again.log.position(), 100) is None
    assert topics(home).count("FragmentLost") == 0  # one finding about the index, not 30


@pytest.mark.sqlite_only("the testing kit flips a stored event in the home's own SQLite log")
def test_a_vector_lost_with_the_index_file_and_its_event_is_healed_on_open(mem, home):
    """The index file removed and the event holding a fragment's body damaged, between two
    opens: the index rebuilt from the log lacks that vector, so the store heals on open (the
    cache file holds the body) and its first query finds the fragment. Found by the testing
    kit's example state machine (docs/integrations.md) in a fresh clone's run."""
    from carma.testing.damage import Damage, apply_damage

    key = mem.add("amber", {"topic": "travel"}, id="note-travel")
    mem.close()
    with carma.open(home, embedder=mem.embedder) as reopened:  # (its index file written)
        done = apply_damage(reopened, [Damage("drop-index-file"), Damage("flip-event")], [key])
    assert [d.kind for d in done] == ["drop-index-file", "flip-event"]
    (home / "index" / "vectors.faiss").unlink(missing_ok=True)  # (the close wrote it again)
    with carma.open(home, embedder=mem.embedder) as again:
        assert [hit.id for hit in again.search("amber", k=1)] == [key]
        assert again.get(key).status == "healthy" and again.get(key).text == "amber"
        assert again.dream()["found"] == {}


def test_an_index_file_is_stale_by_the_vectors_it_lacks_not_the_log_positions(mem):
    scrubber = mem.dreamer.scrubber
    scrubber.stale_after = 5
    ids = fragments(mem, 20)
    mem.index.save()
    saved_at = mem.index.position
    for key in ids:  # 20 findings and 20 repairs move the log on; no vector changes
        mem.cache.path_of(mem.ledger.row(key)["uuid"]).unlink()
    assert mem.dream()["repaired"] == {"cache/exact-log": 20}
    assert mem.log.position() - saved_at > 40
    assert mem.scrub()["found"] == {}  # the file holds every vector the index holds
    mem.add_many([f"a new note {i}" for i in range(6)])  # six vectors the file lacks
    assert mem.scrub()["found"] == {"index-file/stale": 1}
    assert mem.heal() == {"index-file/exact-log": 1}
    assert mem.scrub()["found"] == {}


def test_queries_succeed_with_correct_results_while_copies_are_missing(mem):
    ids = fragments(mem, 40)
    expected = {k: mem.get(k).text for k in ids}
    ranking = [h.id for h in mem.search("pier 17", k=5)]
    for path in mem.cache.files()[::2]:
        path.unlink()
    for path in mem.cache.files()[::3]:
        path.write_bytes(b"{}")
    mem.index.path.unlink()
    damaged = sum(mem.cache.read(uuid_of(mem, k)) is None for k in ids)
    assert {k: mem.get(k).text for k in ids} == expected
    assert [h.id for h in mem.search("pier 17", k=5)] == ranking
    # Each read that met a lost copy queued its repair in the log, with no cycle.
    queued = topics(mem).count("FragmentLost")
    assert damaged > 20 and queued == damaged
    report = mem.dream()
    assert report["health_after"] == 1.0
    assert mem.scrub()["found"] == {}
    assert all(mem.cache.read(uuid_of(mem, k)).text == expected[k] for k in ids)


def test_a_crash_in_the_middle_of_healing_resumes_without_repeating_or_skipping(mem):
    # Caller ids make the uuids, and so the order of findings, the same in every run.
    ids = mem.add_many([{"text": f"note {i} on the harbour", "id": f"n{i}"} for i in range(20)]).ids
    for path in mem.cache.files():
        path.unlink()
    assert mem.scrub()["recorded"] == 20
    last = [o for _, o, _, topic, _ in stored_rows(mem) if topic.endswith("FragmentLost")][-1]
    # A real file-system fault mid-heal: the last finding's shard folder becomes a file.
    victim = mem.cache.path_of(last).parent
    assert sum(cache_path(mem, k).parent == victim for k in ids) == 1
    victim.rmdir() if victim.exists() else None
    victim.write_text("in the way")
    mem.dreamer.healer.batch_size = 4
    with pytest.raises(carma.StorageError, match="healing stopped"):
        mem.heal()
    done = topics(mem).count("FragmentReconstructed")
    assert 0 < done < 20
    victim.unlink()
    mem.heal()
    assert topics(mem).count("FragmentReconstructed") == 20  # each repaired exactly once
    assert mem.scrub()["found"] == {}


def test_overlapping_batches_repair_each_copy_once_from_a_writer_process(mem, monkeypatch):
    # One finding per batch: a fragment's cache and index findings fall in two batches, and
    # the second waits for the first to be recorded before it is planned.
    started = []

    class CountedFileWriter(carma.projections.files.FileWriter):
        def __init__(self, folder):
            super().__init__(folder)
            started.append(self)

    monkeypatch.setattr(carma.projections.cache, "FileWriter", CountedFileWriter)
    ids = fragments(mem, 6)
    expected = {k: mem.get(k).text for k in ids}
    for key in ids[:4]:
        cache_path(mem, key).unlink()
        mem.index.remove([mem.ledger.row(key)["faiss_id"]])
    assert mem.scrub()["recorded"] == 8
    mem.dreamer.healer.batch_size = 1
    assert mem.heal() == {"cache/exact-log": 4, "index/exact-log": 4}
    assert len(started) == 1  # a full first batch: the files went to a writer process
    assert started[0]._process.returncode == 0  # and it ended with the heal
    assert topics(mem).count("FragmentReconstructed") == 8
    assert mem.scrub()["found"] == {}
    assert {k: mem.cache.read(uuid_of(mem, k)).text for k in ids} == expected
    assert mem.search("pier 2", k=1)[0].id == ids[2]


def test_a_fragment_deleted_between_a_batch_plan_and_its_record_is_not_repaired(mem):
    ids = fragments(mem, 12)
    for path in mem.cache.files():
        path.unlink()
    mem.scrub()
    first = next(o for _, o, _, topic, _ in stored_rows(mem) if topic.endswith("FragmentLost"))
    victim = next(k for k in ids if UUID(uuid_of(mem, k)) == UUID(str(first)))
    healer = mem.dreamer.healer
    healer.batch_size = 4
    record, deleted = healer._record, []

    def deleting_first(batch, cycle_id):
        if not deleted:  # the batch is planned and its files written: the record conflicts
            deleted.append(mem.delete(victim))
        return record(batch, cycle_id)

    healer._record = deleting_first
    assert mem.heal() == {"cache/exact-log": 11}
    assert deleted == [True]
    assert topics(mem).count("FragmentReconstructed") == 11  # each once, the victim never
    assert mem.scrub()["found"] == {}
    assert not cache_path(mem, victim).exists()
    with pytest.raises(FragmentGone):
        mem.get(victim)


def test_a_writer_process_killed_mid_heal_stops_the_heal_and_the_next_one_resumes(mem, monkeypatch):
    class DoomedFileWriter(carma.projections.files.FileWriter):
        def submit(self, removals, files, **options):
            super().submit(removals, files, **options)
            if self.outstanding == 2:  # the second batch is in its hands: kill it
                self._process.kill()
                self._process.wait()

    monkeypatch.setattr(carma.projections.cache, "FileWriter", DoomedFileWriter)
    ids = fragments(mem, 20)
    expected = {k: mem.get(k).text for k in ids}
    for path in mem.cache.files():
        path.unlink()
    mem.scrub()
    mem.dreamer.healer.batch_size = 4
    with pytest.raises(carma.StorageError, match="healing stopped.*file writer process stopped"):
        mem.heal()
    # A repair is recorded only for a batch whose files were reported durable.
    repaired = [
        o for _, o, _, topic, _ in stored_rows(mem) if topic.endswith("FragmentReconstructed")
    ]
    recorded = len(repaired)
    assert recorded < 20 and recorded % 4 == 0
    assert all(mem.cache.path_of(o).exists() for o in repaired)
    monkeypatch.undo()
    assert sum(mem.heal().values()) == 20 - recorded
    assert topics(mem).count("FragmentReconstructed") == 20
    assert mem.scrub()["found"] == {}
    assert {k: mem.cache.read(uuid_of(mem, k)).text for k in ids} == expected


def test_a_deleted_fragment_is_never_repaired_back(mem):
    ids = fragments(mem, 3)
    cache_path(mem, ids[0]).unlink()
    mem.scrub()
    mem.delete(ids[0])
    assert mem.heal() == {}
    assert not cache_path(mem, ids[0]).exists()
    with pytest.raises(FragmentGone):
        mem.get(ids[0])
    assert mem.health()["by_fault"] == {}


def test_dream_cycles_are_recorded_with_counts_durations_and_health(mem):
    ids = fragments(mem, 10)
    for key in ids[:3]:
        cache_path(mem, key).unlink()
    report = mem.dream()
    assert report["found"] == {"cache/missing": 3}
    assert report["repaired"] == {"cache/exact-log": 3}
    assert report["health_before"] == pytest.approx(0.7)  # as the scrub found it
    assert report["health_after"] == 1.0
    assert set(report["seconds"]) >= {"scan", "record", "heal", "total"}
    assert topics(mem)[-1] == "DreamCycleCompleted"
    last = mem.health()["last_cycle"]
    assert last["id"] == report["id"] and last["repaired"] == {"cache/exact-log": 3}


def test_background_dreams_heal_while_the_program_keeps_serving(home, embedder):
    with carma.open(home, embedder=embedder, dream_every=0.05) as mem:
        ids = fragments(mem, 10)
        cycles = mem.scheduler.cycles
        for path in mem.cache.files():
            path.unlink()
        assert mem.search("pier 4", k=1)[0].id == ids[4]  # served while damaged
        assert mem.scheduler.wait_for(cycles + 2, timeout=30)
        assert mem.scheduler.last_error is None
        assert mem.health()["score"] == 1.0
        assert len(mem.cache.files()) == 10
    with pytest.raises(carma.InvalidInput):
        carma.open(home, embedder=embedder, dream_every=0)


def test_a_second_process_healing_the_same_home_repeats_no_repair(home, embedder):
    # The healer's position is tracked in the log's own database, so it is shared by every
    # process on the home: b resumes where a's healer stopped.
    with carma.open(home, embedder=embedder) as a, carma.open(home, embedder=embedder) as b:
        ids = fragments(a, 30)
        for path in a.cache.files():
            path.unlink()
        a.scrub()
        a.heal()
        assert b.heal() == {}
        assert topics(a).count("FragmentReconstructed") == 30
        assert b.scrub()["found"] == {}
        assert all(b.get(k).text for k in ids)


def test_a_fragment_written_while_a_scrub_runs_is_neither_removed_nor_reported(mem):
    ids = fragments(mem, 5)
    scrubber = mem.dreamer.scrubber
    snapshot, _ = scrubber.snapshot()
    new = mem.add("written after the scrub took its snapshot", id="late")  # a concurrent write
    from carma.healing.scrubber import ScrubReport

    report = ScrubReport()
    scrubber._scrub_cache(snapshot, report)
    scrubber._scrub_index(snapshot, report)
    assert report.stray_files and report.stray_ids  # the new copies look unknown at first
    scrubber._refresh()
    scrubber._confirm(report)
    assert report.findings == [] and report.strays_removed == 0
    assert [h.id for h in mem.search("written after the scrub took its snapshot", k=1)] == [new]
    assert mem.cache.read(mem.ledger.row(new)["uuid"]) is not None
    assert len(ids) == 5


def test_a_copy_of_a_deleted_fragment_never_shows_in_search_and_is_removed(mem):
    ids = fragments(mem, 4)
    row = mem.ledger.row(ids[0])
    cache_path(mem, ids[0]).unlink()
    mem.scrub()  # an open finding on ids[0]...
    vector = mem.log.fragment(ids[0]).embedding
    mem.delete(ids[0])  # ...which the deletion closes
    assert mem.log.fragment(ids[0]).faults == {}
    mem.index.put({row["faiss_id"]: vector})  # as a healer racing the deletion would
    assert ids[0] not in [h.id for h in mem.search("note 0: the tide turns", k=4)]
    assert mem.scrub()["found"] == {"index/extra": 1}
    mem.heal()
    assert row["faiss_id"] not in mem.index.ids().tolist()


@pytest.mark.parametrize("damage", ["removed", "a file in its place"])
def test_a_whole_cache_folder_lost_is_one_finding_per_fragment_and_repaired(mem, damage):
    keys = fragments(mem, n=40)
    folder = cache_path(mem, keys[0]).parent
    inside = [k for k in keys if cache_path(mem, k).parent == folder]
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    if damage == "a file in its place":
        folder.write_bytes(b"not a folder")  # would stop every repair in it
    report = mem.dream()
    assert report["found"] == {"cache/missing": len(inside)} | (
        {"stray": 1} if damage == "a file in its place" else {}
    )
    assert report["repaired"] == {"cache/exact-log": len(inside)}
    assert all(
        mem.get(k).text == json.loads(cache_path(mem, k).read_text())["text"] for k in inside
    )
    assert mem.scrub()["found"] == {}


def test_the_scan_clock_stamps_every_row_and_counts_each_stamp(mem):
    """A write's rows come stamped with the clock's next tick (one statement each); other
    inserts and updates are stamped by the triggers: either way, no row unstamped, no two
    alike, and the clock at the latest."""
    ids = fragments(mem, 6)
    mem.add_many([f"a batch row {i}" for i in range(20)])
    mem.revise(ids[0], text="revised")
    mem.delete(ids[1])
    stamps = [c for (c,) in mem.ledger.db.execute("SELECT changed FROM fragments")]
    (tick,) = mem.ledger.db.execute("SELECT tick FROM scan_clock").fetchone()
    assert None not in stamps and len(set(stamps)) == len(stamps) == 26
    assert max(stamps) == tick


def test_a_scrub_reads_only_the_rows_changed_since_its_last_and_misses_none_of_them(mem):
    ids = fragments(mem, 6)
    mem.scrub()
    tick = mem.dreamer.scrubber._expected.tick
    assert len(mem.ledger.scan_changes(tick).rows) == 0
    new = mem.add("written between two scrubs", id="between")
    deleted_copy = cache_path(mem, ids[0]).read_bytes()
    mem.delete(ids[0])
    old_copy = cache_path(mem, ids[1]).read_bytes()
    mem.revise(ids[1], text="note 1, revised between two scrubs")
    changes = mem.ledger.scan_changes(tick)
    assert set(changes.rows.hex_list()) == {
        uuid_of(mem, k).replace("-", "") for k in (new, ids[0], ids[1])
    }
    assert changes.count == 7
    cache_path(mem, new).unlink()
    cache_path(mem, ids[0]).write_bytes(deleted_copy)
    cache_path(mem, ids[1]).write_bytes(old_copy)
    assert mem.scrub()["found"] == {"cache/missing": 1, "cache/extra": 1, "cache/stale": 1}
    mem.heal()
    assert mem.scrub()["found"] == {}
    # A rebuilt ledger keeps its scan clock: every row it wrote again reads as changed.
    tick = mem.dreamer.scrubber._expected.tick
    mem.rebuild()
    assert len(mem.ledger.scan_changes(tick).rows) == 7
    cache_path(mem, ids[2]).unlink()
    assert mem.scrub()["found"] == {"cache/missing": 1}


def listing_of(mem, folder):
    return mem.dreamer.scrubber._listings[folder.name]


def abandoned_stray(folder):
    stray = folder / ".tmp-left-by-a-crash.json"
    stray.write_text("{}")
    os.utime(stray, (1_000_000_000, 1_000_000_000))  # untouched for years
    return stray


def test_a_cache_folder_listing_is_reused_only_while_the_folder_and_its_rows_stand(mem):
    keys = fragments(mem, 12)
    folder = cache_path(mem, keys[0]).parent
    scrubber = mem.dreamer.scrubber
    scrubber.settled_ns = -(10**12)  # any listing counts as taken long after a change
    mem.scrub()
    listed = listing_of(mem, folder)
    mem.scrub()
    assert listing_of(mem, folder) is listed  # nothing changed: not listed again
    # A file added: the folder's timestamps move, and it is listed again. Setting its mtime
    # back (as a restore with times kept would) leaves the ctime moved all the same.
    stray = abandoned_stray(folder)
    os.utime(folder, ns=(listed.stamp[0], listed.stamp[0]))
    assert mem.scrub()["found"] == {"stray": 1} and not stray.exists()
    # The ledger's rows for the folder changed (a deletion): listed again, even if the
    # folder itself had stood still.
    listed = listing_of(mem, folder)
    mem.delete(keys[0])
    cache_path(mem, keys[0]).write_text("{}")  # a copy of the deleted fragment reappears
    st = os.stat(folder)
    scrubber._listings[folder.name] = dataclasses.replace(
        listed, stamp=(st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    )
    assert mem.scrub()["found"] == {"cache/extra": 1}
    mem.heal()
    # A deep scrub lists every folder, settled or not.
    mem.scrub()
    listed = listing_of(mem, folder)
    mem.scrub(deep=True)
    assert listing_of(mem, folder) is not listed


def test_a_folder_listed_too_soon_after_its_last_change_is_listed_again(mem):
    keys = fragments(mem, 12)
    folder = cache_path(mem, keys[0]).parent
    mem.dreamer.scrubber.settled_ns = 10**12  # every change counts as too recent
    mem.scrub()
    listed = listing_of(mem, folder)
    assert not listed.settled
    mem.scrub()
    assert listing_of(mem, folder) is not listed


def test_a_scrub_reads_every_row_again_when_rows_went_or_the_clock_is_another(mem):
    keys = fragments(mem, 8)
    scrubber = mem.dreamer.scrubber
    mem.scrub()
    kept = scrubber._expected
    mem.ledger.reset()  # rows gone, and not yet replayed
    assert scrubber.snapshot()[0].count == 0
    mem.scrub()  # catches the ledger up first
    assert scrubber._expected.count == 8 and scrubber._expected is not kept
    # Another clock (the ledger's tables made anew by a process of another schema), which
    # stamped a revision below the tick this scrubber had read, then went past it.
    assert scrubber._expected.tick >= 8
    old_copy = cache_path(mem, keys[1]).read_bytes()
    mem.ledger.db.execute("DROP TABLE scan_clock")
    mem.ledger._create()
    mem.revise(keys[1], text="note 1, revised under another clock")
    mem.ledger.db.execute("UPDATE scan_clock SET tick = tick + 1000000")
    cache_path(mem, keys[1]).write_bytes(old_copy)
    assert mem.scrub()["found"] == {"cache/stale": 1}


@pytest.mark.parametrize("read_ahead", ["never", "from the start"])
def test_a_scan_reading_ahead_finds_exactly_what_one_that_does_not_finds(
    mem, monkeypatch, read_ahead
):
    """The read-ahead of the cache's folders (on once the scan proves to read from the
    disk) only asks the disk for files: with it on from the first folders, a scan finds the
    same faults, in a store whose every folder was read ahead, and repairs them the same."""
    read = []

    def reading_ahead(folder, names):
        read.append((folder, len(names)))
        return real_read_ahead(folder, names)

    real_read_ahead = carma.healing.scrubber._read_ahead
    monkeypatch.setattr(carma.healing.scrubber, "_read_ahead", reading_ahead)
    monkeypatch.setattr(carma.healing.scrubber, "READ_AHEAD_MIN_FILES", 1)
    cold = 0.0 if read_ahead == "from the start" else float("inf")
    monkeypatch.setattr(carma.healing.scrubber, "COLD_FILE_S", cold)
    keys = fragments(mem, n=300)
    missing, garbage, tampered = keys[:3]
    cache_path(mem, missing).unlink()
    cache_path(mem, garbage).write_bytes(b"\x00\xffnot json")
    body = json.loads(cache_path(mem, tampered).read_text())
    body["text"] = "the tide never turns"
    cache_path(mem, tampered).write_text(json.dumps(body))
    report = mem.scrub(deep=True)
    assert report["found"] == {"cache/missing": 1, "cache/unreadable": 1, "cache/corrupt": 1}
    if read_ahead == "from the start":
        # Two folders prove the scan cold, then each asks for the two after it; what is not
        # begun when the scan ends is let go.
        folders = sorted(str(p) for p in {cache_path(mem, k).parent for k in keys})
        assert read and {f for f, _ in read} <= set(folders[2:])
        # (a folder asked for is counted; the threads may not have begun it when the scan ends)
        assert report["checked"]["cache_folders_read_ahead"] >= len({f for f, _ in read}) > 0
    else:
        assert read == []
        assert report["checked"]["cache_folders_read_ahead"] == 0
    assert mem.dream()["repaired"] == {"cache/exact-log": 3}
    assert mem.scrub()["found"] == {}

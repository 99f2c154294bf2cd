"""Many CARMA processes, one log on PostgreSQL: each keeps its own projections (cache, index,
ledger) in its own home and follows the log; healing in several of them at once records each
repair exactly once."""

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from carma.domain import fragment_uuid

import carma
from carma.embedding import HashingEmbedder
from tests.postgres.worker import DIMENSION, text_for

ROOT = Path(__file__).resolve().parents[2]


def spawn(url: str, home: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.postgres.worker", url, str(home), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen) -> list[str]:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    return out.splitlines()


def open_on(url: str, home: Path):
    return carma.open(home, embedder=HashingEmbedder(dimension=DIMENSION), database_url=url)


def test_a_write_acknowledged_in_one_process_is_read_in_another_which_keeps_its_place(
    shared_url, tmp_path
):
    reader = open_on(shared_url, tmp_path / "b")
    try:
        writers = [spawn(shared_url, tmp_path / f"a{i}", "write", str(i), "25") for i in range(2)]
        acked = [line.split()[3:] for w in writers for line in finish(w)]
        keys = [k for batch in acked for k in batch]
        assert len(keys) == len(set(keys)) > 50
        # The reader catches up with the log before it answers: every acknowledged write.
        for key in keys:
            assert reader.get(key).text == text_for(key)
        for key in keys[::10]:
            assert reader.search(text_for(key), k=1)[0].id == key
        head = reader.log.position()
        assert reader.runner.lag() == {p.name: 0 for p in reader.runner.projections}
    finally:
        reader.close()
    # Restarted, it resumes from the positions its projections recorded: nothing is replayed.
    again = open_on(shared_url, tmp_path / "b")
    try:
        assert again.log.position() == head
        assert all(p.position == head for p in again.runner.projections)
        assert again.catch_up() == 0
        assert again.stats()["live"] == len(keys)
    finally:
        again.close()


def test_two_processes_healing_the_same_damage_record_each_repair_once(shared_url, tmp_path):
    homes = [tmp_path / "a", tmp_path / "b"]
    first = open_on(shared_url, homes[0])
    keys = [f"k{i}" for i in range(60)]
    first.add_many([{"text": text_for(k), "id": k} for k in keys])
    # The log's own copy of six bodies: one byte flipped in each one's first event.
    bodies = keys[3:60:10]
    for key in bodies:
        ((topic, state),) = first.log.tables.stored_at(fragment_uuid(key), 1)
        damaged = bytearray(state)
        damaged[-5] ^= 0x41
        first.log.tables.overwrite(fragment_uuid(key), 1, bytes(damaged))
    first.close()
    second = open_on(shared_url, homes[1])  # builds its own projections from the log
    second.close()
    # Each home loses copies of its own: cache files, and one index file.
    for n, home in enumerate(homes):
        for key in keys[n::7]:
            (home / "cache" / fragment_uuid(key).hex[:2] / f"{fragment_uuid(key).hex}.json").unlink(
                missing_ok=True
            )
    (homes[1] / "index" / "vectors.faiss").unlink()

    healers = [spawn(shared_url, home, "dream", "3") for home in homes]
    reports = [[json.loads(line) for line in finish(h)] for h in healers]
    assert all(len(r) == 3 for r in reports)

    mem = open_on(shared_url, homes[0])
    try:
        events = list(
            mem.log_events(
                kinds=["FragmentLost", "FragmentReconstructed", "IndexLost", "IndexRebuilt"]
            )
        )
        lost = Counter(
            (e["aggregate"], e["data"]["copy"]) for e in events if e["kind"] == "FragmentLost"
        )
        repaired = Counter(
            (e["aggregate"], e["data"]["copy"])
            for e in events
            if e["kind"] == "FragmentReconstructed"
        )
        # Every finding recorded once, and answered once: by a repair of its own copy, or by
        # the restatement of its fragment's body, which rewrites every copy (a replica may
        # find its copies of a lost body missing before the other restates it). None twice,
        # none lost.
        assert max(lost.values()) == 1 and max(repaired.values()) == 1
        assert set(repaired) <= set(lost)
        restated = {a for a, copy in repaired if copy == "log-body"}
        assert all(finding in repaired or finding[0] in restated for finding in lost)
        body = {a for a, copy in lost if copy == "log-body"}
        assert body == {str(fragment_uuid(k)) for k in bodies}
        # Each replica recorded its own copies' findings, under its own name.
        replicas = {copy.partition("@")[2] for _, copy in lost if copy != "log-body"}
        assert len(replicas) == 2
        index = Counter(e["kind"] for e in events if e["kind"].startswith("Index"))
        assert index == {"IndexLost": 1, "IndexRebuilt": 1}
    finally:
        mem.close()
    for home in homes:
        mem = open_on(shared_url, home)
        try:
            health = mem.health()
            assert health["score"] == 1.0 and health["by_status"]["healthy"] == len(keys)
            for key in keys:
                record = mem.get(key)
                assert (record.text, record.status) == (text_for(key), "healthy")
            assert mem.dream()["found"] == {}
            assert mem.verify()["ok"] is False  # the flipped bytes stay in the append-only log
        finally:
            mem.close()


def test_a_home_stays_with_its_log_and_no_secret_reaches_a_message(shared_url, tmp_path):
    with open_on(shared_url, tmp_path / "pg") as mem:
        mem.add("a fragment on the shared log", id="x")
    with pytest.raises(carma.InvalidInput, match="keeps its log in PostgreSQL"):
        carma.open(tmp_path / "pg", embedder=HashingEmbedder(dimension=DIMENSION))
    with carma.open(tmp_path / "lite", embedder=HashingEmbedder(dimension=DIMENSION)) as mem:
        mem.add("a fragment in its own file", id="y")
    with pytest.raises(carma.InvalidInput, match="own SQLite file"):
        open_on(shared_url, tmp_path / "lite")
    other = shared_url.replace("schema=", "schema=other_")
    with pytest.raises(carma.InvalidInput, match="follows another log"):
        open_on(other, tmp_path / "pg")
    secret = "s3cret-pass"
    for url, error in [
        (f"postgresql://carma:{secret}@127.0.0.1:1/carma", carma.StorageError),
        (f"mysql://carma:{secret}@127.0.0.1/carma", carma.InvalidInput),
        (f"postgresql://carma:{secret}@127.0.0.1:99999/carma", carma.InvalidInput),
        (f"postgresql://carma:{secret}@127.0.0.1/carma?sslmode=x", carma.InvalidInput),
    ]:
        with pytest.raises(error) as raised:
            open_on(url, tmp_path / "new")
        assert secret not in str(raised.value)
        assert not (tmp_path / "new" / "database.json").exists()


def test_the_shared_log_benchmark_reports_its_ratios_and_leaves_no_schema(shared_url, tmp_path):
    import psycopg

    from carma.bench.shared import bench_shared

    report = bench_shared(
        database_url=shared_url, n=128, workdir=tmp_path, join_events=1_200, lag_seconds=1.5
    )
    ratios = report["ratios"]
    assert all(isinstance(v, float) and v > 0 for v in ratios.values())
    assert report["throughput"]["hashing_384d"]["texts"] == 128
    lag = report["lag"]
    assert lag["batches_acknowledged"] >= 2 and lag["lag_ms"]["p50"] is not None
    assert lag["fragments_written"] == lag["batches_acknowledged"] * lag["batch"]
    assert report["join"]["events"] >= 1_200 and report["join"]["live"] == 1_199
    with psycopg.connect(shared_url.split("?")[0]) as conn:
        left = conn.execute(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = ANY(%s)",
            [report["schemas"]],
        ).fetchone()[0]
    assert len(report["schemas"]) == 4 and left == 0


def test_processes_that_start_at_once_on_a_new_log_all_open_it(shared_url, tmp_path):
    """Creating the log's tables is not safe to race in PostgreSQL ("tuple concurrently
    updated"): processes that start together take turns."""
    code = (
        "import sys, carma; from carma.embedding import HashingEmbedder; "
        "m = carma.open(sys.argv[1], embedder=HashingEmbedder(dimension=8), "
        "database_url=sys.argv[2]); m.add('from ' + sys.argv[1]); m.close()"
    )
    starting = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path / f"h{i}"), shared_url],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(6)
    ]
    errors = [p.communicate(timeout=120)[1] for p in starting]
    assert [p.returncode for p in starting] == [0] * 6, errors
    with carma.open(
        tmp_path / "reader", embedder=HashingEmbedder(dimension=8), database_url=shared_url
    ) as mem:
        assert mem.stats()["live"] == 6

"""Several processes and threads on one home at once (its log: SQLite in WAL mode, or
PostgreSQL)."""

import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from carma.domain import content_hash

import carma
from carma import ConflictError
from carma.embedding import HashingEmbedder
from tests.conftest import store_state
from tests.reliability.writer import DIMENSION, text_for

ROOT = Path(__file__).resolve().parents[2]
WRITERS = 3
BATCHES = 25


def test_processes_and_threads_write_and_search_one_home_without_losing_anything(tmp_path, backend):
    home = tmp_path / "home"
    embedder = HashingEmbedder(dimension=DIMENSION)
    with carma.open(home, embedder=embedder) as mem:
        mem.add("a first fragment, so that the store exists", id="first")
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.reliability.writer",
                    str(home),
                    "write",
                    str(seed),
                    str(BATCHES),
                ],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=backend.env(home),
            )
            for seed in range(WRITERS)
        ]
        failures: list[BaseException] = []
        seen: list[dict[int, int]] = []
        # Each writer's batch sizes follow from its seed (see writer.py): the ends of batches.
        ends = {}
        for seed in range(WRITERS):
            rng, total, ends[seed] = random.Random(seed), 0, {0}
            for _ in range(BATCHES):
                total += rng.randint(1, 8)
                ends[seed].add(total)
        stop = threading.Event()

        def reader() -> None:
            # A reader never sees part of a batch: a batch is one transaction in the log, and
            # the ledger applies each catch-up (which ends at a committed head) in one too.
            try:
                while not stop.is_set():
                    mem.search("tide table of harbour", k=5)
                    with mem._lock:
                        mem.catch_up()
                        visible = {
                            seed: mem.ledger.db.execute(
                                "SELECT count(*) FROM fragments WHERE id LIKE ?", [f"s{seed}-%"]
                            ).fetchone()[0]
                            for seed in range(WRITERS)
                        }
                    seen.append(visible)
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)

        readers = [threading.Thread(target=reader) for _ in range(2)]
        for t in readers:
            t.start()
        outputs = [p.communicate(timeout=300) for p in procs]
        stop.set()
        for t in readers:
            t.join()
        assert failures == []
        assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outputs]
        acked = [
            k
            for out, _ in outputs
            for line in out.splitlines()
            if line.startswith("ack")
            for k in line.split()[1:]
        ]
        assert len(acked) > WRITERS * BATCHES
        assert all(mem.get(k).text == text_for(k) for k in acked)
        assert mem.stats()["live"] == len(acked) + 1
        assert len(seen) > 10
        assert all(count in ends[seed] for v in seen for seed, count in v.items())
        mem.dream()
        assert mem.scrub()["found"] == {}
        incremental = store_state(mem)
        mem.rebuild()
        assert store_state(mem) == incremental


def test_a_conflicting_revision_raises_a_clear_conflict_and_overwrites_nothing(tmp_path):
    home = tmp_path / "home"
    embedder = HashingEmbedder(dimension=DIMENSION)
    with carma.open(home, embedder=embedder) as a, carma.open(home, embedder=embedder) as b:
        a.add("the original text", id="shared")
        mine, theirs = a.log.fragment("shared"), b.log.fragment("shared")
        vector = mine.embedding
        mine.revise("a's revision", {}, content_hash("a's revision"), vector)
        theirs.revise("b's revision", {}, content_hash("b's revision"), vector)
        a.log.record(mine)
        with pytest.raises(ConflictError, match="another writer"):
            b.log.record(theirs)
        assert b.get("shared").text == "a's revision"
        assert [e.kind for e in b.history("shared")] == ["written", "revised"]


class GatedEmbedder(HashingEmbedder):
    """Holds any text containing GATE until released: a model that takes its time."""

    def __init__(self):
        super().__init__(dimension=DIMENSION)
        self.entered = threading.Event()
        self.release = threading.Event()

    def embed(self, texts):
        if any("GATE" in t for t in texts):
            self.entered.set()
            assert self.release.wait(timeout=60)
        return super().embed(texts)


def test_queries_are_answered_while_a_write_waits_for_the_model(tmp_path):
    embedder = GatedEmbedder()
    with carma.open(tmp_path / "home", embedder=embedder) as mem:
        mem.add("an earlier fragment about lighthouses", id="old")
        writer = threading.Thread(target=mem.add, args=("GATE a slow new fragment",))
        writer.start()
        assert embedder.entered.wait(timeout=30)
        # The writer is inside the model: reads, searches and health are not held up.
        assert mem.get("old").text == "an earlier fragment about lighthouses"
        assert [h.id for h in mem.search("lighthouses", k=1)] == ["old"]
        assert mem.health()["live"] == 1
        embedder.release.set()
        writer.join(timeout=60)
        assert mem.health()["live"] == 2

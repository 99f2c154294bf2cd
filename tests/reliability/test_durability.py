"""Durability is asserted, not assumed: an acknowledged write must survive a power cut, not only
a killed process. On SQLite every connection that writes the log syncs the WAL at each commit
(synchronous=FULL), whatever the SQLite build's default, and so does every connection that
writes the fragments' keys (both copies); on PostgreSQL the log's transactions
never commit with synchronous_commit off."""

import sqlite3
from pathlib import Path

import pytest

import carma
from carma.embedding import HashingEmbedder
from carma.log import postgres
from tests.conftest import damage_event

FULL = 2


class Recorded(sqlite3.Connection):
    """A connection that says, when it closes, whether it wrote and at which sync level."""

    seen: list[tuple[str, int, int]] = []  # (file, changes, synchronous) of closed connections
    open: list["Recorded"] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # A build whose default is NORMAL (some are): CARMA must not rely on the default.
        self.execute("PRAGMA synchronous=NORMAL")
        self.file = str(args[0] if args else kwargs.get("database"))
        Recorded.open.append(self)

    def report(self) -> tuple[str, int, int]:
        return self.file, self.total_changes, self.execute("PRAGMA synchronous").fetchone()[0]

    def close(self):
        if self in Recorded.open:
            Recorded.seen.append(self.report())
            Recorded.open.remove(self)
        super().close()


@pytest.fixture
def recorded(monkeypatch):
    connect = sqlite3.connect
    Recorded.seen, Recorded.open = [], []

    def recording(*args, **kwargs):
        kwargs.setdefault("factory", Recorded)
        return connect(*args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", recording)
    yield Recorded
    for conn in list(Recorded.open):
        conn.close()


@pytest.mark.sqlite_only("about the SQLite file's sync level")
def test_every_connection_that_writes_the_log_syncs_it_at_each_commit(tmp_path, recorded, backend):
    home = tmp_path / "home"
    with carma.open(home, embedder=HashingEmbedder(dimension=32)) as mem:
        keys = [mem.add(f"fragment number {i} about topic {i % 3}") for i in range(12)]
        mem.revise(keys[0], text="a revision")
        mem.delete(keys[1])
        mem.forget(keys[2], reason="asked")
        exported = list(mem.export_events())  # taken before the damage below
        row = mem.ledger.row(keys[3])
        damage_event(mem, row["uuid"], 1, lambda b: b[:-4] + b"\xff\xff\xff\xff")
        mem.cache.path_of(row["uuid"]).unlink()
        mem.dream(deep=True)  # records findings and repairs
        with mem.replay(into=tmp_path / "replay") as copy:  # a copy written by CARMA itself
            copy.add("written into the replay")
        writers = [c.report() for c in recorded.open]
    with carma.open(tmp_path / "other", embedder=HashingEmbedder(dimension=32)) as other:
        other.import_events(exported)
        writers += [c.report() for c in recorded.open]
    writers += recorded.seen
    logs = [w for w in writers if w[0].endswith("events.sqlite") and w[1] > 0]
    assert {Path(f).parent.name for f, _, _ in logs} >= {"home", "replay", "other"}
    assert [w for w in logs if w[2] != FULL] == []
    # The fragments' keys too: an event whose key a power cut took cannot be read.
    keys = [w for w in writers if Path(w[0]).parent.name in ("keys", "keys.mirror") and w[1] > 0]
    assert {Path(f).parent.name for f, _, _ in keys} == {"keys", "keys.mirror"}
    assert [w for w in keys if w[2] != FULL] == []


@pytest.mark.postgres_only("about PostgreSQL's synchronous_commit")
def test_the_logs_transactions_commit_synchronously_where_the_server_says_off(
    tmp_path, monkeypatch, backend
):
    import psycopg

    levels: list[str] = []
    original = postgres.ChainedPostgresRecorder._fetch_ids_after_insert_events

    def observed(self, curs, stored_events, **kwargs):
        positions = original(self, curs, stored_events, **kwargs)
        curs.execute("SHOW synchronous_commit")  # in the inserting transaction itself
        levels.append(curs.fetchone()["synchronous_commit"])
        return positions

    monkeypatch.setattr(
        postgres.ChainedPostgresRecorder, "_fetch_ids_after_insert_events", observed
    )
    with psycopg.connect(backend.base_url, autocommit=True) as admin:
        role = admin.execute("SELECT current_user").fetchone()[0]
        admin.execute(f'ALTER ROLE "{role}" SET synchronous_commit = off')
        try:
            with carma.open(tmp_path / "home", embedder=HashingEmbedder(dimension=32)) as mem:
                with mem.log.recorder.datastore.transaction(commit=False) as curs:
                    curs.execute("SHOW synchronous_commit")  # the server's word, for this role
                    assert curs.fetchone()["synchronous_commit"] == "off"
                mem.add("acknowledged only once durable")
                mem.add_many(["one", "two"])
        finally:
            admin.execute(f'ALTER ROLE "{role}" RESET synchronous_commit')
    assert levels and set(levels) == {"on"}

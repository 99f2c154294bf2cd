"""`carma serve` as a process: a stop loses no acknowledged write, dream cycles heal while it
serves, keys made and revoked from the command line, the loopback rule, and several servers
on one PostgreSQL log."""

from __future__ import annotations

import json
import os
import secrets
import threading
from pathlib import Path

import httpx
import pytest

import carma
from tests.server.conftest import carma_cli, issue, running_server, wait_for

TEXT = "note {n}: the tide turns at dawn near pier {n}"


def test_a_stop_loses_no_acknowledged_write(server_home):
    acknowledged: dict[str, str] = {}
    refused: list[str] = []
    lock = threading.Lock()
    with running_server(server_home) as server:

        def writer(worker: int) -> None:
            with server.client(timeout=30) as client:
                for n in range(10_000):
                    text = TEXT.format(n=f"{worker}-{n}")
                    try:
                        answer = client.post("/v1/fragments", json={"text": text})
                    except httpx.TransportError:
                        return  # the server has stopped listening: not acknowledged
                    if answer.status_code != 201:
                        with lock:
                            refused.append(answer.text)
                        return
                    with lock:
                        acknowledged[answer.json()["id"]] = text

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        wait_for(lambda: len(acknowledged) >= 60, "60 writes are acknowledged", timeout=60)
        assert server.stop() == 0  # SIGTERM while four clients write
        for thread in threads:
            thread.join(60)
    assert refused == []
    with carma.open(server_home, embedder=carma.HashingEmbedder()) as mem:
        assert mem.index.load_error is None  # it closed the store: the index was saved
        for key, text in acknowledged.items():
            assert mem.get(key).text == text
        assert mem.stats()["live"] >= len(acknowledged)


def test_dream_cycles_heal_the_store_while_it_serves(server_home):
    with running_server(server_home, "--dream-every", "0.3") as server, server.client() as api:
        items = [{"text": TEXT.format(n=n), "id": f"n{n}"} for n in range(40)]
        assert api.post("/v1/fragments:batch", json={"items": items}).status_code == 201
        cache = sorted((server_home / "cache").glob("??/*.json"))
        for path in cache[:15]:
            path.unlink()
        answers = []

        def healed() -> bool:
            for item in items[:10]:  # reads go on, and never fail
                answers.append(api.get(f"/v1/fragments/{item['id']}").json().get("text"))
            health = api.get("/v1/health").json()
            return health["by_method"].get("exact-log", 0) >= 15 and health["score"] == 1.0

        wait_for(healed, "background dream cycles repaired the 15 cache files", timeout=60)
        assert answers and set(answers) <= {item["text"] for item in items[:10]}
        assert len(list((server_home / "cache").glob("??/*.json"))) == 40
        wait_for(
            lambda: any(
                c["trigger"] == "schedule" and c["repaired"]
                for c in api.get("/v1/activity").json()["cycles"]
            ),
            "the dashboard's feed shows the scheduled cycle that repaired them",
        )


def test_keys_from_the_command_line_are_stored_as_digests_and_revoked_live(server_home):
    key, key_id = issue(server_home, "--namespace", "people", "--read", "--label", "agent 7",
                        "--embedder", "hashing")  # fmt: skip
    admin, _ = issue(server_home, "--all-namespaces", "--write", "--admin")
    with running_server(server_home) as server:
        assert server.started["open"] is False and server.started["keys"] == 2
        with server.client(admin) as root:
            root.post("/v1/fragments", json={"text": "Alice likes tea.", "namespace": "people"})
        with server.client(key) as client:
            for _ in range(3):
                assert client.get("/v1/health").status_code == 200

        def listed() -> dict:
            done = carma_cli("keys", "list", "--home", str(server_home), "--json")
            found = {k["id"]: k for k in json.loads(done.stdout)}
            return found if found[key_id]["uses"] >= 3 else {}

        mine = wait_for(listed, "the key's uses are counted in the home")[key_id]
        assert mine["namespaces"] == ["people"] and mine["rights"] == ["read"]
        assert mine["label"] == "agent 7" and mine["revoked_at"] is None
        assert "key" not in mine and "digest" not in mine and "secret" not in json.dumps(mine)
        secret = key.split("_", 2)[2].encode()
        stored = b"".join(p.read_bytes() for p in server_home.rglob("*") if p.is_file())
        assert secret not in stored and key.encode() not in stored  # only its digest is kept
        done = carma_cli("keys", "revoke", key_id, "--home", str(server_home), "--json")
        assert json.loads(done.stdout) == {"id": key_id, "revoked": True}
        with server.client(key) as client:
            wait_for(
                lambda: client.get("/v1/health").status_code == 401,
                "the running server refuses the revoked key",
                timeout=10,
            )
    listing = carma_cli("keys", "list", "--home", str(server_home), "--json")
    assert json.loads(listing.stdout)[0]["revoked_at"] is not None
    again = carma_cli("keys", "revoke", key_id, "--home", str(server_home), "--json")
    assert json.loads(again.stdout)["revoked"] is False
    unknown = carma_cli("keys", "revoke", "abc", "--home", str(server_home))
    assert unknown.returncode == 2 and "no key" in unknown.stderr
    bad = carma_cli("keys", "create", "--home", str(server_home), "--namespace", "people")
    assert bad.returncode == 2 and "right" in bad.stderr and "Traceback" not in bad.stderr


def test_with_no_key_it_listens_on_loopback_only_and_says_so(server_home):
    refused = carma_cli("serve", "--home", str(server_home), "--host", "0.0.0.0", "--port", "0")
    assert refused.returncode == 2
    assert "refusing to listen on 0.0.0.0 with no key" in refused.stderr
    with running_server(server_home) as server:
        assert server.started["open"] is True
        with server.client() as api:
            assert api.get("/v1/access").json()["open"] is True
            assert api.post("/v1/fragments", json={"text": "hello"}).status_code == 201
        issue(server_home, "--namespace", "default", "--read")
        with server.client() as api:  # the first key closes the open server
            wait_for(lambda: api.get("/v1/health").status_code == 401, "a key is needed", 5)


def test_a_missing_extra_is_a_clear_error(server_home, tmp_path):
    # A package named fastapi that cannot be imported stands in for one not installed.
    shadow = tmp_path / "shadow" / "fastapi"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('no', name='fastapi')\n")
    env = {"PYTHONPATH": str(shadow.parent)}
    done = carma_cli("serve", "--home", str(server_home), "--port", "0", env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "pip install 'carma[server]'" in done.stderr
    listing = carma_cli("keys", "list", "--home", str(server_home), "--json", env=env)
    assert listing.returncode == 2 and "no store" in listing.stderr  # keys need no extra


# -- several servers on one PostgreSQL log ---------------------------------------------------


@pytest.fixture
def shared_log():
    url = os.environ.get("CARMA_TEST_DATABASE_URL")
    if not url:
        message = 'CARMA_TEST_DATABASE_URL is not set: eval "$(.ci/postgres start)"'
        if os.environ.get("CARMA_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    import psycopg
    from psycopg import sql

    schema = "srv_" + secrets.token_hex(6)
    yield f"{url}?schema={schema}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def test_servers_on_one_postgresql_log_serve_the_same_memories(tmp_path: Path, shared_log):
    env = {"CARMA_DATABASE_URL": shared_log}
    first, second = tmp_path / "a", tmp_path / "b"
    admin, _ = issue(first, "--all-namespaces", "--read", "--write", "--admin",
                     "--embedder", "hashing", env=env)  # fmt: skip
    with (
        running_server(first, env=env) as a,
        running_server(second, env=env) as b,
        a.client(admin) as via_a,
        b.client(admin) as via_b,
    ):
        made = via_a.post("/v1/fragments", json={"text": "Written through A.", "id": "w1"})
        assert made.status_code == 201
        # Every request catches up with the log first: B reads A's write at once.
        assert via_b.get("/v1/fragments/w1").json()["text"] == "Written through A."
        hits = via_b.post("/v1/search", json={"query": "written through", "k": 1}).json()
        assert hits["hits"][0]["id"] == "w1"
        ready = via_b.get("/readyz").json()
        assert ready["status"] == "ready" and set(ready["lag"]) == {"ledger", "cache", "index"}
        # A key issued through one server is taken by the other; revoked by one, by both.
        made = via_b.post("/v1/keys", json={"namespaces": ["default"], "rights": ["read"]})
        key, key_id = made.json()["key"], made.json()["id"]
        with a.client(key) as reader:
            assert reader.get("/v1/fragments/w1").status_code == 200
            assert via_b.delete(f"/v1/keys/{key_id}").json()["revoked"] is True
            wait_for(
                lambda: reader.get("/v1/fragments/w1").status_code == 401,
                "server A refuses the key revoked through server B",
                timeout=10,
            )
        # Each replica heals its own copies: damage to A's cache is A's to repair.
        for path in (first / "cache").glob("??/*.json"):
            path.unlink()
        report = via_a.post("/v1/dream").json()
        assert report["found"] and report["health_after"] == 1.0
        # (B's first cycle may find its own index file missing: a replica that joins a log
        # writes that file only when it closes.)
        assert not any(k.startswith("cache") for k in via_b.post("/v1/dream").json()["found"])

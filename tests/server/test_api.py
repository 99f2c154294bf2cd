"""The HTTP API route by route, in process (FastAPI's TestClient: a real socket adds nothing
to what a route answers): the Python API one to one, the JSON error shape and its codes, and
that bad input changes nothing."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

import carma
from carma.lines import MAX_JSON_CHARS
from carma.server.app import create_app
from carma.server.keys import issue_key, revoke_key
from tests.server.conftest import wait_for

ROUTES = {
    ("POST", "/v1/fragments"),
    ("POST", "/v1/fragments:batch"),
    ("GET", "/v1/fragments/{id}"),
    ("PATCH", "/v1/fragments/{id}"),
    ("DELETE", "/v1/fragments/{id}"),
    ("POST", "/v1/fragments/{id}/forget"),
    ("GET", "/v1/fragments/{id}/history"),
    ("POST", "/v1/search"),
    ("GET", "/v1/export"),
    ("GET", "/v1/health"),
    ("GET", "/v1/activity"),
    ("POST", "/v1/dream"),
    ("GET", "/v1/verify"),
    ("GET", "/v1/access"),
    ("GET", "/v1/keys"),
    ("POST", "/v1/keys"),
    ("DELETE", "/v1/keys/{key_id}"),
    ("GET", "/metrics"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
}


@pytest.fixture
def api(mem):
    with TestClient(create_app(mem)) as client:
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def state(mem) -> tuple[int, list[dict]]:
    """What a request could have changed: the log's length and every live fragment."""
    return mem.log.position(), sorted(mem.export_lines(), key=lambda line: line["id"])


def seed(api) -> None:
    items = [
        {"text": "Alice is allergic to peanuts.", "namespace": "people", "id": "alice",
         "metadata": {"person": "alice"}},
        {"text": "Bob prefers green tea.", "namespace": "people", "id": "bob",
         "metadata": {"person": "bob"}},
        {"text": "The launch code is in the blue safe.", "namespace": "ops", "id": "launch"},
        {"text": "Invoices are due in 30 days.", "namespace": "finance", "id": "a/b?c#d"},
    ]  # fmt: skip
    assert api.post("/v1/fragments:batch", json={"items": items}).status_code == 201


# -- the API one to one ---------------------------------------------------------------------------


def test_a_fragment_is_added_read_revised_deleted_and_its_history_kept(api, mem):
    made = api.post("/v1/fragments", json={"text": "The standup is at 9:30.", "id": "standup"})
    assert made.status_code == 201 and made.json() == {"id": "standup", "outcome": "added"}
    again = api.post("/v1/fragments", json={"text": "The standup is at 9:30.", "id": "standup"})
    assert again.status_code == 201 and again.json()["outcome"] == "unchanged"
    got = api.get("/v1/fragments/standup").json()
    assert got == mem.get("standup").model_dump(mode="json")
    revised = api.patch("/v1/fragments/standup", json={"text": "The standup is at 10:00."})
    assert revised.status_code == 200 and revised.json()["version"] == 2
    assert mem.get("standup").text == "The standup is at 10:00."
    deleted = api.delete("/v1/fragments/standup", params={"reason": "cancelled"})
    assert deleted.json() == {"id": "standup", "deleted": True}
    assert api.delete("/v1/fragments/standup").json()["deleted"] is False  # retries are safe
    gone = api.get("/v1/fragments/standup")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "gone"
    history = api.get("/v1/fragments/standup/history").json()
    assert [e["kind"] for e in history["history"]] == ["written", "revised", "deleted"]
    assert history["history"][-1]["detail"]["reason"] == "cancelled"


def test_forget_needs_a_reason_and_shreds_the_body(api, mem):
    api.post("/v1/fragments", json={"text": "Carol's phone is 555-0100.", "id": "carol"})
    refused = api.post("/v1/fragments/carol/forget", json={})
    assert refused.status_code == 400 and mem.get("carol").text is not None
    done = api.post("/v1/fragments/carol/forget", json={"reason": "erasure request"})
    assert done.json() == {"id": "carol", "forgotten": True}
    assert [e.kind for e in mem.history("carol")] == ["written", "forgotten"]


def test_ids_with_slashes_and_reserved_characters_reach_their_fragment(api, mem):
    seed(api)
    path = "/v1/fragments/" + "a%2Fb%3Fc%23d"
    assert api.get(path).json()["text"] == "Invoices are due in 30 days."
    assert [e["kind"] for e in api.get(path + "/history").json()["history"]] == ["written"]
    assert api.patch(path, json={"metadata": {"paid": False}}).json()["metadata"] == {"paid": False}


def test_a_batch_is_written_whole_or_not_at_all(api, mem):
    before = state(mem)
    items = [{"text": "one"}, {"text": "two", "namespace": "not a namespace!"}]
    refused = api.post("/v1/fragments:batch", json={"items": items})
    assert refused.status_code == 400 and "item 1" in refused.json()["error"]["message"]
    assert state(mem) == before
    done = api.post("/v1/fragments:batch", json={"items": ["one", {"text": "two", "id": "2"}]})
    assert done.status_code == 201
    assert done.json()["added"] == 2 and done.json()["ids"][1] == "2"


def test_search_takes_a_query_or_a_vector_and_hands_where_through(api, mem):
    seed(api)
    by_text = api.post(
        "/v1/search", json={"query": "peanut allergy", "k": 2, "where": {"person": "alice"}}
    ).json()["hits"]
    assert [h["id"] for h in by_text] == ["alice"]
    expected = mem.search("peanut allergy", k=2, where={"person": "alice"})
    assert by_text == [h.model_dump(mode="json") for h in expected]
    vector = mem.embedder.embed(["green tea"])[0].tolist()
    by_vector = api.post("/v1/search", json={"vector": vector, "k": 1, "namespace": "people"})
    assert by_vector.json()["hits"][0]["id"] == "bob"


def test_search_takes_filter_operators_modes_and_a_moment(api, mem):
    seed(api)
    before = mem.log.position()
    api.patch("/v1/fragments/alice", json={"text": "Alice is allergic to shellfish."})
    ask = {"query": "allergic", "k": 5, "namespace": "people"}
    people = {"$or": [{"person": {"$in": ["alice"]}}, {"person": {"$eq": "bob"}}]}
    for mode in ("semantic", "keyword", "hybrid"):
        got = api.post("/v1/search", json={**ask, "mode": mode, "where": people}).json()["hits"]
        expected = mem.search("allergic", 5, "people", people, mode=mode)
        assert got == [h.model_dump(mode="json") for h in expected]
    # Keyword search finds the word; as of the position before the revision, the old text.
    now = api.post("/v1/search", json={**ask, "mode": "keyword", "query": "shellfish"})
    assert [h["id"] for h in now.json()["hits"]] == ["alice"]
    then = api.post("/v1/search", json={**ask, "query": "peanuts", "as_of": before}).json()
    assert then["hits"][0]["text"] == "Alice is allergic to peanuts."
    # A moment just before the revision was stamped: every event of the seed was before it.
    moment = (mem.history("alice")[1].at - timedelta(microseconds=1)).isoformat()
    by_time = api.post("/v1/search", json={**ask, "query": "peanuts", "as_of": moment}).json()
    assert by_time["hits"][0]["text"] == "Alice is allergic to peanuts."
    # Bad input is a 400 naming the part, and changes nothing.
    unchanged = state(mem)
    for bad, named in (
        ({"mode": "fuzzy"}, "mode"),
        ({"as_of": "last tuesday"}, "as_of"),
        ({"where": {"person": {"$near": 1}}}, "$near"),
    ):
        answer = api.post("/v1/search", json={**ask, **bad})
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_input"
        assert named in answer.json()["error"]["message"]
    assert state(mem) == unchanged


def test_export_streams_json_lines_that_import_back(api, mem, tmp_path):
    seed(api)
    answer = api.get("/v1/export")
    assert answer.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in answer.text.splitlines()]
    assert sorted(line["id"] for line in lines) == ["a/b?c#d", "alice", "bob", "launch"]
    only = [json.loads(x) for x in api.get("/v1/export?namespace=ops").text.splitlines()]
    assert [line["id"] for line in only] == ["launch"]
    with carma.open(tmp_path / "copy", embedder=mem.embedder) as copy:
        assert copy.import_lines(answer.text.splitlines()).added == 4


def test_health_activity_dream_and_verify_answer_as_the_api_does(api, mem):
    seed(api)
    mem.cache.path_of(mem.ledger.row("bob")["uuid"]).unlink()
    report = api.post("/v1/dream").json()
    assert report["found"] == {"cache/missing": 1} and report["health_after"] == 1.0
    health = api.get("/v1/health").json()
    assert health["by_method"] == mem.health()["by_method"] == {"exact-log": 1}
    assert api.get("/v1/verify").json()["ok"] is True
    activity = api.get("/v1/activity", params={"limit": 3}).json()
    assert [e["position"] for e in activity["events"]] == [
        e.position for e in mem.recent_history(3)
    ]
    assert activity["position"] == mem.log.position()


def test_the_openapi_schema_and_its_offline_docs_page(api):
    schema = api.get("/openapi.json").json()
    documented = {
        (method.upper(), re.sub(r"\{id:path\}", "{id}", path))
        for path, operations in schema["paths"].items()
        for method in operations
    }
    assert ROUTES <= documented
    assert "requestBody" in schema["paths"]["/v1/search"]["post"]
    for page in ("/docs", "/"):
        html = api.get(page)
        assert html.status_code == 200
        assert "default-src 'none'" in html.headers["content-security-policy"]
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", html.text)  # nothing remote


# -- errors ---------------------------------------------------------------------------------------

BAD_REQUESTS = [
    # (method, path, body: JSON value, bytes, or None; status, code)
    ("POST", "/v1/fragments", b"{not json", 400, "invalid_input"),
    ("POST", "/v1/fragments", [1, 2], 400, "invalid_input"),
    ("POST", "/v1/fragments", {"text": ""}, 400, "invalid_input"),
    ("POST", "/v1/fragments", {"text": "x", "colour": "red"}, 400, "invalid_input"),
    ("POST", "/v1/fragments", {"text": "x", "metadata": {"a": {"b": 1}}}, 400, "invalid_input"),
    ("POST", "/v1/fragments", {"text": "x", "embedding": [1.0, 2.0]}, 400, "invalid_input"),
    ("POST", "/v1/fragments", {"text": "x", "namespace": "a b"}, 400, "invalid_input"),
    ("POST", "/v1/fragments", {"text": "x", "status": "approximate"}, 400, "invalid_input"),
    ("POST", "/v1/fragments", None, 400, "invalid_input"),
    ("POST", "/v1/fragments", b"\xff\xfe", 400, "invalid_input"),
    ("POST", "/v1/fragments", b"[" * 40 + b"]" * 40, 400, "invalid_input"),
    ("POST", "/v1/fragments:batch", {"items": "one"}, 400, "invalid_input"),
    ("POST", "/v1/fragments:batch", {"items": ["x"] * 1001}, 400, "invalid_input"),
    ("POST", "/v1/fragments:batch", {"items": [{"text": "ok"}, 7]}, 400, "invalid_input"),
    ("PATCH", "/v1/fragments/alice", {}, 400, "invalid_input"),
    ("PATCH", "/v1/fragments/alice", {"text": 5}, 400, "invalid_input"),
    ("PATCH", "/v1/fragments/nobody", {"text": "x"}, 404, "not_found"),
    ("GET", "/v1/fragments/nobody", None, 404, "not_found"),
    ("GET", "/v1/fragments/nobody/history", None, 404, "not_found"),
    ("DELETE", "/v1/fragments/nobody", None, 404, "not_found"),
    ("POST", "/v1/fragments/nobody/forget", {"reason": "x"}, 404, "not_found"),
    ("POST", "/v1/fragments/alice/forget", {"reason": ""}, 400, "invalid_input"),
    ("POST", "/v1/fragments/alice/forget", {"why": "x"}, 400, "invalid_input"),
    ("DELETE", "/v1/fragments/alice?reason=" + "x" * 1001, None, 400, "invalid_input"),
    ("POST", "/v1/search", {}, 400, "invalid_input"),
    ("POST", "/v1/search", {"query": "q", "vector": [1.0]}, 400, "invalid_input"),
    ("POST", "/v1/search", {"query": "q", "k": "5"}, 400, "invalid_input"),
    ("POST", "/v1/search", {"query": "q", "k": 0}, 400, "invalid_input"),
    ("POST", "/v1/search", {"query": "q", "k": 100_000}, 400, "invalid_input"),
    ("POST", "/v1/search", {"query": "q", "where": [1]}, 400, "invalid_input"),
    ("POST", "/v1/search", {"query": "q", "namespace": "/"}, 400, "invalid_input"),
    ("POST", "/v1/search", {"vector": [0.0] * 64}, 400, "invalid_input"),
    ("POST", "/v1/search", {"query": "q", "mode": "fuzzy"}, 400, "invalid_input"),
    ("GET", "/v1/export?namespace=a%20b", None, 400, "invalid_input"),
    ("GET", "/v1/activity?limit=0", None, 400, "invalid_input"),
    ("GET", "/v1/activity?limit=many", None, 400, "invalid_input"),
    ("POST", "/v1/dream", {"deep": "yes"}, 400, "invalid_input"),
    ("POST", "/v1/keys", {"namespaces": ["people"], "rights": ["fly"]}, 400, "invalid_input"),
    ("POST", "/v1/keys", {"namespaces": [], "rights": ["read"]}, 400, "invalid_input"),
    ("DELETE", "/v1/keys/nokey", None, 404, "not_found"),
    ("GET", "/v1/nothing", None, 404, "not_found"),
    ("PUT", "/v1/health", None, 405, "method_not_allowed"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    BAD_REQUESTS,
    ids=[f"{m} {p[:40]} {str(b)[:30]}" for m, p, b, _, _ in BAD_REQUESTS],
)
def test_bad_input_gets_a_clear_json_error_and_changes_nothing(
    api, mem, method, path, body, status, code
):
    seed(api)
    before = state(mem)
    content = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    answer = api.request(method, path, content=content)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code and error["message"] and "Traceback" not in error["message"]
    assert state(mem) == before


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_the_limit_is_413_whether_its_length_is_told_or_not(api, mem, chunked):
    before = state(mem)
    big = json.dumps({"text": "x" * (MAX_JSON_CHARS + 10)}).encode()
    content = iter([big[i : i + 65536] for i in range(0, len(big), 65536)]) if chunked else big
    answer = api.post("/v1/fragments", content=content)
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "too_large"
    assert state(mem) == before


def test_without_a_key_a_server_with_keys_answers_401(api, mem):
    key, key_id = issue_key(mem, ["people"], ["read"])  # closes the open server...
    wait_for(lambda: api.get("/v1/health").status_code == 401, "a key is needed", timeout=5)
    for headers in ({}, {"Authorization": "Basic abc"}, bearer("carma_nope_x"), bearer("junk")):
        answer = api.get("/v1/health", headers=headers)
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthorized"
        assert answer.headers["www-authenticate"] == "Bearer"
    wrong_secret = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    assert api.get("/v1/health", headers=bearer(wrong_secret)).status_code == 401
    assert api.get("/v1/health", headers=bearer(key)).status_code == 200
    revoke_key(mem, key_id, "leaked")  # as `carma keys revoke` does, from another process
    refused = wait_for(
        lambda: (r := api.get("/v1/health", headers=bearer(key))).status_code == 401 and r,
        "the server refuses the revoked key",
        timeout=5,
    )
    assert "revoked" in refused.json()["error"]["message"]
    assert api.get("/healthz").status_code == 200 and api.get("/readyz").status_code == 200


def test_rights_are_separate_403(api, mem):
    seed(api)
    reader, _ = issue_key(mem, ["people"], ["read"])
    writer, _ = issue_key(mem, ["people"], ["write"])
    before = state(mem)
    for method, path, body in [
        ("POST", "/v1/fragments", {"text": "x", "namespace": "people"}),
        ("PATCH", "/v1/fragments/alice", {"text": "x"}),
        ("DELETE", "/v1/fragments/alice", None),
        ("POST", "/v1/fragments/alice/forget", {"reason": "x"}),
        ("POST", "/v1/dream", None),
        ("GET", "/v1/verify", None),
        ("GET", "/metrics", None),
        ("GET", "/v1/keys", None),
    ]:
        answer = api.request(method, path, json=body, headers=bearer(reader))
        assert answer.status_code == 403, (method, path)
        assert answer.json()["error"]["code"] == "forbidden"
    assert api.get("/v1/fragments/alice", headers=bearer(writer)).status_code == 403
    assert api.post("/v1/search", json={"query": "q"}, headers=bearer(writer)).status_code == 403
    assert state(mem) == before


def test_a_key_for_one_namespace_sees_nothing_of_the_others(api, mem):
    seed(api)
    key, _ = issue_key(mem, ["people"], ["read", "write"])
    mine = bearer(key)
    for path in ("/v1/fragments/launch", "/v1/fragments/launch/history"):
        foreign = api.get(path, headers=mine)
        unknown = api.get(path.replace("launch", "zzz"), headers=mine)
        assert foreign.status_code == unknown.status_code == 404
        assert foreign.json()["error"]["message"] == unknown.json()["error"]["message"].replace(
            "zzz", "launch"
        )
    before = state(mem)
    assert api.patch("/v1/fragments/launch", json={"text": "x"}, headers=mine).status_code == 404
    assert api.delete("/v1/fragments/launch", headers=mine).status_code == 404
    forget = api.post("/v1/fragments/launch/forget", json={"reason": "x"}, headers=mine)
    assert forget.status_code == 404
    refused = api.post(
        "/v1/fragments", json={"text": "y", "namespace": "people", "id": "a/b?c#d"}, headers=mine
    )
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "id_taken"
    assert "finance" not in refused.text and "Invoices" not in refused.text
    outside = api.post("/v1/fragments", json={"text": "y", "namespace": "ops"}, headers=mine)
    assert outside.status_code == 403
    hits = api.post("/v1/search", json={"query": "launch code safe", "k": 10}, headers=mine)
    assert {h["namespace"] for h in hits.json()["hits"]} == {"people"}
    named = api.post("/v1/search", json={"query": "q", "namespace": "ops"}, headers=mine)
    assert named.status_code == 403
    exported = [json.loads(line) for line in api.get("/v1/export", headers=mine).text.splitlines()]
    assert {line["namespace"] for line in exported} == {"people"}
    assert api.get("/v1/export?namespace=ops", headers=mine).status_code == 403
    health = api.get("/v1/health", headers=mine).json()
    assert health == {**mem.health("people"), "lag": health["lag"]}
    assert health["live"] == 2 and health["last_cycle"] is None
    events = api.get("/v1/activity", headers=mine).json()
    assert {e["namespace"] for e in events["events"]} == {"people"} and events["cycles"] == []
    assert state(mem) == before


def test_an_admin_key_makes_and_revokes_keys_within_its_own_scope(api, mem):
    admin, admin_id = issue_key(mem, ["people", "ops"], ["read", "admin"])
    issue_key(mem, ["finance"], ["read"])
    made = api.post(
        "/v1/keys", json={"namespaces": ["people"], "rights": ["read"]}, headers=bearer(admin)
    )
    assert made.status_code == 201 and made.json()["key"].startswith("carma_")
    for wider in (
        {"namespaces": ["finance"], "rights": ["read"]},
        {"namespaces": None, "rights": ["read"]},
        {"namespaces": ["people"], "rights": ["write"]},
    ):
        answer = api.post("/v1/keys", json=wider, headers=bearer(admin))
        assert answer.status_code == 403
    listed = api.get("/v1/keys", headers=bearer(admin)).json()["keys"]
    assert {k["id"] for k in listed} == {admin_id, made.json()["id"]}
    assert all("digest" not in k for k in listed)
    gone = api.delete(f"/v1/keys/{made.json()['id']}", headers=bearer(admin))
    assert gone.json() == {"id": made.json()["id"], "revoked": True}
    assert api.get("/v1/health", headers=bearer(made.json()["key"])).status_code == 401

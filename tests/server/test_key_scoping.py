"""Property: random keys, namespaces and requests against a real `carma serve` process find no
leak. A key never reads, searches, lists, exports or learns of a fragment outside its
namespaces, by any route: no answer holds another namespace's text, nor an id of it the
request did not name itself; a request naming such an id gets exactly what an unknown id
gets; nothing outside the key's namespaces changes."""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.server.conftest import issue, running_server

NAMESPACES = ["alpha", "beta", "gamma"]
POOL = [*NAMESPACES, "delta"]  # delta holds nothing: a key may still name it
PER_NAMESPACE = 5
SEED_IDS = [f"{ns}-{i:02d}" for ns in NAMESPACES for i in range(PER_NAMESPACE)]
UNKNOWN_IDS = ["nope-00", "nope-01"]
MARKER = re.compile(r"mk[0-9a-f]{10}")
WORDS = ["tide", "pier", "tea", "safe", "code", "river", "lamp", "north"]
DIMENSION = 384  # the server's HashingEmbedder


def marker() -> str:
    return "mk" + secrets.token_hex(5)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    home = tmp_path_factory.mktemp("scoping") / "home"
    root, _ = issue(home, "--all-namespaces", "--read", "--write", "--admin", "--embedder",
                    "hashing")  # fmt: skip
    with running_server(home) as server, server.client(root) as client:
        items = [
            {
                "id": f"{ns}-{i:02d}",
                "namespace": ns,
                "text": f"{WORDS[i % len(WORDS)]} {WORDS[(i + 3) % len(WORDS)]} {ns} {marker()}",
                "metadata": {"tag": marker(), "n": i},
            }
            for ns in NAMESPACES
            for i in range(PER_NAMESPACE)
        ]
        assert client.post("/v1/fragments:batch", json={"items": items}).status_code == 201
        yield server, client


def snapshot(root: httpx.Client) -> dict[str, dict[str, Any]]:
    """Every live fragment, by id, as the all-namespaces key exports it."""
    lines = root.get("/v1/export").text.splitlines()
    return {line["id"]: line for line in map(json.loads, lines)}


def histories(root: httpx.Client, ids: list[str]) -> dict[str, Any]:
    return {i: root.get(f"/v1/fragments/{i}/history").json() for i in ids}


ids = st.sampled_from(SEED_IDS + UNKNOWN_IDS)
namespaces = st.sampled_from(POOL)
words = st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(" ".join)
requests = st.one_of(
    st.tuples(st.just("get"), ids),
    st.tuples(st.just("history"), ids),
    st.tuples(st.just("revise"), ids, words),
    st.tuples(st.just("delete"), ids),
    st.tuples(st.just("forget"), ids),
    st.tuples(st.just("add"), namespaces, st.one_of(st.none(), ids), words),
    st.tuples(st.just("batch"), namespaces, namespaces, words),
    st.tuples(st.just("search"), words, st.integers(1, 30), st.one_of(st.none(), namespaces)),
    st.tuples(st.just("vector"), st.integers(0, DIMENSION - 1), st.integers(1, 30)),
    st.tuples(st.just("export"), st.one_of(st.none(), namespaces)),
    st.tuples(st.just("health")),
    st.tuples(st.just("activity")),
    st.tuples(st.just("dream")),
    st.tuples(st.just("verify")),
    st.tuples(st.just("metrics")),
    st.tuples(st.just("keys")),
    st.tuples(st.just("access")),
)
key_specs = st.tuples(
    st.lists(st.sampled_from(POOL), min_size=1, max_size=3, unique=True),
    st.sets(st.sampled_from(["read", "write", "admin"]), min_size=1),
)


def send(client: httpx.Client, request: tuple) -> tuple[httpx.Response, set[str]]:
    """The request's answer, and the ids the request itself named."""
    op, *args = request
    if op == "get":
        return client.get(f"/v1/fragments/{args[0]}"), {args[0]}
    if op == "history":
        return client.get(f"/v1/fragments/{args[0]}/history"), {args[0]}
    if op == "revise":
        body = {"text": f"{args[1]} revised {marker()}"}
        return client.patch(f"/v1/fragments/{args[0]}", json=body), {args[0]}
    if op == "delete":
        return client.delete(f"/v1/fragments/{args[0]}", params={"reason": "test"}), {args[0]}
    if op == "forget":
        return client.post(f"/v1/fragments/{args[0]}/forget", json={"reason": "t"}), {args[0]}
    if op == "add":
        namespace, key, text = args
        body = {"text": f"{text} {marker()}", "namespace": namespace}
        if key is not None:
            body["id"] = key
        return client.post("/v1/fragments", json=body), {key} if key else set()
    if op == "batch":
        items = [{"text": f"{args[2]} {marker()}", "namespace": ns} for ns in args[:2]]
        return client.post("/v1/fragments:batch", json={"items": items}), set()
    if op == "search":
        body = {"query": args[0], "k": args[1]}
        if args[2] is not None:
            body["namespace"] = args[2]
        return client.post("/v1/search", json=body), set()
    if op == "vector":
        vector = [0.0] * DIMENSION
        vector[args[0]] = 1.0
        return client.post("/v1/search", json={"vector": vector, "k": args[1]}), set()
    if op == "export":
        return client.get("/v1/export", params={"namespace": args[0]} if args[0] else {}), set()
    paths = {
        "health": ("GET", "/v1/health"),
        "activity": ("GET", "/v1/activity?limit=1000"),
        "dream": ("POST", "/v1/dream"),
        "verify": ("GET", "/v1/verify"),
        "metrics": ("GET", "/metrics"),
        "keys": ("GET", "/v1/keys"),
        "access": ("GET", "/v1/access"),
    }
    method, path = paths[op]
    return client.request(method, path), set()


def namespaces_in(answer: httpx.Response) -> set[str]:
    """The namespaces of the fragments an answer holds (hits, lines, events, a record)."""
    text = answer.text
    if answer.headers.get("content-type", "").startswith("application/x-ndjson"):
        return {json.loads(line)["namespace"] for line in text.splitlines()}
    if not answer.headers.get("content-type", "").startswith("application/json"):
        return set()
    body = answer.json()
    found = {h["namespace"] for h in body.get("hits", [])} if isinstance(body, dict) else set()
    if isinstance(body, dict):
        if isinstance(body.get("events"), list):  # activity (verify's is a count)
            found |= {e["namespace"] for e in body["events"]}
        if "content_hash" in body and "namespace" in body:
            found.add(body["namespace"])
    return found


def owners(root: httpx.Client) -> dict[str, str]:
    """The namespace of every id of the pool that names a fragment, live or not."""
    found = {}
    for key in SEED_IDS + UNKNOWN_IDS:
        answer = root.get(f"/v1/fragments/{key}/history")
        if answer.status_code == 200:
            written = answer.json()["history"][0]["detail"]
            found[key] = written["namespace"]
    return found


@given(spec=key_specs, plan=st.lists(requests, min_size=1, max_size=8))
def test_no_route_leaks_across_namespaces(service, spec, plan):
    server, root = service
    scope, rights = spec
    made = root.post("/v1/keys", json={"namespaces": scope, "rights": sorted(rights)})
    assert made.status_code == 201, made.text
    before = snapshot(root)
    foreign = {i: f for i, f in before.items() if f["namespace"] not in scope}
    foreign_ids = set(foreign) | {i for i, ns in owners(root).items() if ns not in scope}
    foreign_markers = {m for f in foreign.values() for m in MARKER.findall(json.dumps(f))}
    foreign_history = histories(root, sorted(foreign_ids))
    with server.client(made.json()["key"]) as client:
        for request in plan:
            answer, named = send(client, request)
            assert answer.status_code < 500, answer.text
            body = answer.text
            assert not set(MARKER.findall(body)) & foreign_markers, (request, body[:300])
            shown_ids = {i for i in foreign_ids if re.search(rf"\b{re.escape(i)}\b", body)}
            assert shown_ids <= named, (request, body[:300])
            assert namespaces_in(answer) <= set(scope), (request, body[:300])
            if not named & foreign_ids:
                continue
            if request[0] == "add":  # an id taken elsewhere: refused, never saying where
                assert answer.status_code in (403, 409), (request, body[:300])
                if answer.status_code == 409:
                    assert answer.json()["error"]["code"] == "id_taken"
                continue
            # A foreign id is answered exactly as an unknown one (which changes nothing).
            twin, _ = send(client, (request[0], "nope-99", *request[2:]))
            assert answer.status_code == twin.status_code, (request, body[:300])
            assert answer.json() == json.loads(twin.text.replace("nope-99", request[1]))
    after = snapshot(root)
    assert {i: f for i, f in after.items() if i in foreign} == foreign  # nothing changed...
    assert histories(root, sorted(foreign_ids)) == foreign_history  # ...nor happened to them

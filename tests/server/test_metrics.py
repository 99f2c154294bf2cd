"""/metrics on a real server: Prometheus' text format, its figures equal to the API's, the
log's findings and repairs counted by copy, fault and method, dream cycles and their
durations, each route's latency by its template; admin only once keys exist."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.server.conftest import issue, running_server, wait_for


def scrape(client) -> dict[tuple[str, tuple], float]:
    answer = client.get("/metrics")
    assert answer.status_code == 200 and "location" not in answer.headers
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def test_metrics_count_what_the_store_did(server_home):
    admin, _ = issue(server_home, "--all-namespaces", "--read", "--write", "--admin",
                     "--embedder", "hashing")  # fmt: skip
    reader, _ = issue(server_home, "--namespace", "default", "--read")
    with running_server(server_home, "--dream-every", "0") as server, server.client(admin) as api:
        items = [{"text": f"note {n} about the pier", "id": f"n{n}"} for n in range(30)]
        assert api.post("/v1/fragments:batch", json={"items": items}).status_code == 201
        api.post("/v1/search", json={"query": "pier", "k": 3})
        api.get("/v1/fragments/n1")
        for path in sorted((server_home / "cache").glob("??/*.json"))[:7]:
            path.unlink()
        (server_home / "index" / "vectors.faiss").unlink()
        report = api.post("/v1/dream").json()
        assert report["repaired"] == {"cache/exact-log": 7, "index-file/exact-log": 1}

        def counted():
            metrics = scrape(api)
            return (
                metrics
                if ("carma_dream_cycles_total", (("trigger", "manual"),)) in metrics
                else None
            )

        metrics = wait_for(counted, "the watch has read the cycle from the log")
        health = api.get("/v1/health").json()
        for status, count in health["by_status"].items():
            assert metrics[("carma_fragments", (("status", status),))] == count
        assert metrics[("carma_fragments_live", ())] == health["live"] == 30
        assert metrics[("carma_health_score", ())] == health["score"] == 1.0
        found = (
            "carma_faults_found_total",
            (("copy", "cache"), ("fault", "missing"), ("replica", "")),
        )
        index_found = (
            "carma_faults_found_total",
            (("copy", "index-file"), ("fault", "missing"), ("replica", "")),
        )
        repaired = (
            "carma_repairs_total",
            (("copy", "cache"), ("method", "exact-log"), ("replica", "")),
        )
        assert (metrics[found], metrics[index_found], metrics[repaired]) == (7, 1, 7)
        assert metrics[("carma_dream_cycles_total", (("trigger", "manual"),))] == 1
        assert metrics[("carma_dream_cycle_duration_seconds_count", ())] == 1
        assert 0 < metrics[("carma_dream_cycle_duration_seconds_sum", ())] < 60
        assert metrics[("carma_fragment_fidelity_bucket", (("le", "1.0"),))] == 30
        assert metrics[("carma_fragment_fidelity_bucket", (("le", "0.99"),))] == 0
        assert metrics[("carma_fragment_fidelity_sum", ())] == 30
        assert metrics[("carma_fragment_expected_recall_count", ())] == 0
        assert metrics[("carma_log_position", ())] == api.get("/v1/activity").json()["position"]
        routes = {
            dict(labels)["route"]
            for name, labels in metrics
            if name == "carma_http_request_duration_seconds_count"
        }
        assert {"/v1/search", "/v1/fragments/{id:path}", "/v1/fragments:batch"} <= routes
        assert not any("n1" in route for route in routes)  # templates, never ids
        with server.client(reader) as read_only:
            assert read_only.get("/metrics").status_code == 403
        with server.client() as nobody:
            assert nobody.get("/metrics").status_code == 401

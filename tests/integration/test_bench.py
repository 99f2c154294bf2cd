"""The benchmarks run end to end at tiny sizes and report sane figures (no timed asserts)."""

import json
import math

import pytest
from click.testing import CliRunner

from carma.bench import BENCHMARKS
from carma.bench.query import make_queries
from carma.cli import cli
from carma.demo.corpus import corpus


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def _check_common(report: dict, name: str, n: int) -> None:
    assert json.loads(json.dumps(report)) == report  # JSON-serialisable, nothing lost
    assert report["benchmark"] == name
    assert report["n"] == n
    assert report["target"]["met"] in (True, False, None)  # None: no target was set
    assert report["target"]["description"]
    env = report["environment"]
    for field in ("python", "numpy", "faiss", "torch", "cpu_count"):
        assert env[field], field
    rss = report["rss"]
    assert _positive(rss["peak_before_mib"])
    assert rss["peak_after_mib"] >= rss["peak_before_mib"]


def test_the_benchmarks_are_the_ten_the_cli_offers():
    assert set(BENCHMARKS) == {
        "ingest",
        "query",
        "overhead",
        "heal",
        "audit",
        "reconstruct",
        "search",
        "serve",  # tests/server/test_bench_serve.py runs it (the server extra)
        "scale",  # tests/realmodel/test_bench_scale.py runs it (the real model's recall)
        "peers",  # tests/realmodel/test_bench_peers.py runs it (the peers extra)
    }
    assert all(callable(fn) for fn in BENCHMARKS.values())


def test_queries_are_deterministic_and_distinct_from_the_stored_texts():
    texts = corpus(200)
    queries = make_queries(texts, 20)
    assert queries == make_queries(texts, 20)
    assert len(queries) == 20
    assert not set(queries) & set(texts)


@pytest.mark.sqlite_only  # the benchmark keeps stores of its own on SQLite (it reads the file)
def test_overhead_reports_ingest_rebuild_and_rss(tmp_path):
    messages: list[str] = []
    report = BENCHMARKS["overhead"](n=2000, workdir=tmp_path, progress=messages.append)
    _check_common(report, "overhead", 2000)
    assert messages and all(isinstance(m, str) and "\n" not in m for m in messages)

    ingest = report["ingest"]
    assert ingest["fragments_added"] == 2000
    assert ingest["events"] >= 2000  # the fragments' events, plus the store's profile
    assert ingest["payload_bytes"] > 2000 * 18
    for field in (
        "carma_s",
        "carma_events_per_s",
        "carma_events_per_s_excluding_embedder",
        "embedder_alone_s",
        "raw_sqlite_s",
        "raw_sqlite_events_per_s",
    ):
        assert _positive(ingest[field]), field

    rebuild = report["rebuild"]
    assert rebuild["events_replayed"] == ingest["events"] == rebuild["raw_events_read"]
    assert rebuild["live_after"] == 2000
    assert rebuild["index_vectors_after"] == 2000
    assert _positive(rebuild["carma_s"]) and _positive(rebuild["raw_read_s_mean"])

    for field in (
        "ingest_ratio",
        "ingest_ratio_excluding_embedder",
        "rebuild_time_ratio",
        "ingest_slowdown_last_over_first_tenth",
    ):
        assert _positive(report["ratios"][field]), field
    # Excluding the embedder's time can only raise CARMA's throughput.
    assert report["ratios"]["ingest_ratio_excluding_embedder"] >= report["ratios"]["ingest_ratio"]
    assert report["bytes_on_disk"]["raw_sqlite"] > 0


@pytest.mark.realmodel
def test_ingest_with_the_real_model_at_a_tiny_size(tmp_path):
    report = BENCHMARKS["ingest"](n=64, workdir=tmp_path)
    _check_common(report, "ingest", 64)
    assert report["embedder"] == "all-MiniLM-L6-v2"
    assert report["carma"]["added"] == report["carma"]["live_after"] == 64
    assert _positive(report["carma"]["texts_per_s"])
    assert _positive(report["bare"]["texts_per_s"])
    assert _positive(report["ratios"]["carma_over_bare_throughput"])
    assert report["environment"]["torch_threads"] >= 1


@pytest.mark.realmodel
def test_query_with_the_real_model_at_a_tiny_size(tmp_path):
    report = BENCHMARKS["query"](n=200, workdir=tmp_path, queries=10)
    _check_common(report, "query", 200)
    assert report["queries"] == 10
    assert report["build"]["live"] == report["build"]["index_vectors"] == 200
    for side in ("carma_ms", "bare_ms"):
        assert _positive(report[side]["p50"])
        assert report[side]["p95"] >= report[side]["p50"]
    for field in ("p50", "p95", "paired_median"):
        assert _positive(report["ratios"][field]), field
    # Both sides search the same vectors exactly: they find the same neighbours.
    assert report["top_k_agreement"] >= 0.9


def test_heal_reports_scrub_and_heal_ratios_with_exact_repairs(tmp_path):
    report = BENCHMARKS["heal"](n=600, workdir=tmp_path)
    assert json.loads(json.dumps(report)) == report
    (size,) = report["sizes"]
    assert size["n"] == size["cache_files"] == 600
    assert _positive(size["scrub"]["ratio"]) and _positive(size["heal"]["ratio"])
    assert size["heal"]["deleted"] == 180
    assert size["heal"]["repaired"] == {"cache/exact-log": 180}
    assert size["heal"]["exact"] is True
    assert _positive(size["heal"]["ratio_to_two_process_writes"])
    # The deep scrub read the whole log; the routine one after it, a log this short whole too.
    assert size["deep_scrub"]["log_positions_read"] >= 600
    assert size["scrub"]["log_positions_read"] == size["deep_scrub"]["log_positions_read"]
    assert _positive(size["deep_scrub"]["ratio"])
    assert _positive(size["scrub"]["listing_every_folder"]["ratio"])
    assert size["five_files"]["repaired"] == {"cache/exact-log": 5}
    assert size["five_files"]["health_after"] == 1.0
    assert 0 < size["five_files"]["phases_s"]["heal"] <= size["five_files"]["dream_cycle_s"]


@pytest.mark.sqlite_only  # the benchmark keeps stores of its own on SQLite (it reads the file)
def test_audit_reports_verify_and_replay_ratios(tmp_path):
    report = BENCHMARKS["audit"](n=300, workdir=tmp_path)
    assert json.loads(json.dumps(report)) == report
    assert report["events"] == 301  # the profile and 300 writes
    assert report["verify"]["ok"] is True and report["replay"]["live"] == 300
    assert _positive(report["verify"]["ratio"]) and _positive(report["replay"]["ratio"])


def test_the_small_namespace_corpus_is_deterministic_varied_and_split_three_ways():
    """`carma bench reconstruct --setting small` reports on modules no method was tuned on,
    and none of whose text ships with the package."""
    from carma.demo.corpus import PARTS, by_module

    parts = {part: by_module(part) for part in PARTS}
    assert by_module("report") == parts["report"]  # the same every time
    names = [set(modules) for modules in parts.values()]
    assert not names[0] & names[1] and not names[1] & names[2] and not names[0] & names[2]
    texts = [{t for ts in modules.values() for t in ts} for modules in parts.values()]
    assert not texts[0] & texts[2] and not texts[1] & texts[2]
    sizes = [len(ts) for ts in parts["report"].values()]
    assert len(sizes) >= 30 and min(sizes) >= 8 and max(sizes) > 40
    assert sum(s <= 15 for s in sizes) >= 10 and sum(16 <= s <= 40 for s in sizes) >= 10


def test_the_setting_goes_with_bench_reconstruct_only():
    result = CliRunner().invoke(cli, ["bench", "audit", "--setting", "small"])
    assert result.exit_code == 2 and "--setting goes with `bench reconstruct` only" in result.output

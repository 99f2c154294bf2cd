"""`carma bench serve` end to end at a tiny size: both sides run, the damage is healed, no
request fails and no acknowledged write is lost (no timed asserts)."""

from __future__ import annotations

import json

from carma.bench import BENCHMARKS
from carma.bench.serve import bench_serve


def test_bench_serve_reports_both_sides_and_loses_nothing(tmp_path):
    assert BENCHMARKS["serve"] is bench_serve
    report = bench_serve(n=60, workdir=tmp_path, clients=3, seconds=4, rounds=1)
    assert json.loads(json.dumps(report)) == report
    assert report["benchmark"] == "serve" and report["target"]["description"]
    for side in ("in_process", "http"):
        figures = report[side]
        assert figures["requests"] > 0 and figures["requests_per_s"] > 0
        assert figures["errors"] == 0, figures["runs"][0]["first_errors"]
        assert figures["writes_acknowledged"] > 0 and figures["writes_lost"] == 0
        run = figures["runs"][0]
        assert run["by_kind"]["search"]["requests"] > 0
        assert run["repairs"].get("exact-log", 0) > 0  # the damage was healed while serving
    assert report["http"]["runs"][0]["server_exit_status"] == 0
    assert report["target"]["met"] is True
    assert all(value > 0 for value in report["ratios"].values())

"""`carma bench scale` at a small size, end to end: the store on the graph (the threshold
lowered for the run), every figure present and sane, the real model's recall measured, and the
figure drawn."""

import json

import pytest
from click.testing import CliRunner

import carma.bench.scale as scale
from carma.cli import cli

pytestmark = [pytest.mark.realmodel, pytest.mark.sqlite_only]


def test_bench_scale_measures_the_store_on_the_graph_and_the_real_recall(tmp_path, monkeypatch):
    monkeypatch.setattr(scale, "SCALE_SIZES", (600, 1_500))
    monkeypatch.setattr(scale, "RECALL_SIZES", (1_000,))
    monkeypatch.setattr(scale, "HEAL_SAMPLE", 50)
    monkeypatch.setattr(scale, "APPROXIMATE_ABOVE", 1_000)  # the second size is on the graph
    out = tmp_path / "scale.json"
    result = CliRunner().invoke(cli, ["bench", "scale", "-n", "1500", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    small, large = report["by_size"]
    assert (small["fragments"], large["fragments"]) == (600, 1_500)
    assert small["index"] == "exact" and large["index"] == "approximate (HNSW)"
    for point in report["by_size"]:
        assert point["ingest"]["fragments_per_s"] > 0
        assert point["heal"]["found"] == point["heal"]["healed"] == 50
        assert point["full_scrub"]["checked"]["cache_files"] == point["fragments"]
        assert 0 < point["disk_bytes_per_fragment"]["all"]
        assert 0.5 <= point["recall_at_10_deterministic_vectors"] <= 1.0
        # A whole query encodes its text with the real model: slower than the search alone.
        assert point["query_ms"]["whole_p50"] > point["query_ms"]["store_p50"] > 0
        phases = point["rss_mib"]["peak_by_phase"]  # which step reached the peak
        assert list(phases) == ["ingest", "queries", "full_scrub", "heal", "rebuild"]
        assert point["rss_mib"]["peak"] >= max(phases.values()) > 0
    assert small["recall_at_10_deterministic_vectors"] == 1.0  # an exact scan is exact
    real = report["real_vectors"]["by_size"]["1000"]
    assert 0.9 <= real["recall_at_10"] <= 1.0
    assert set(report["growth_vs_smallest"]["rebuild_s"]) == {"600", "1500"}
    # The largest size's whole queries are also timed in turns with the store as it was at
    # the smallest (a copy replayed from its log then), and the target is judged on those.
    assert small["query_ms"]["whole_in_turns_with_smallest"] is None
    in_turns = large["query_ms"]["whole_in_turns_with_smallest"]
    assert in_turns["this_size_p50"] > large["query_ms"]["store_p50"]
    assert in_turns["smallest_copy_p50"] > small["query_ms"]["store_p50"]
    assert in_turns["ratio_p50"] == pytest.approx(
        in_turns["this_size_p50"] / in_turns["smallest_copy_p50"], rel=1e-3
    )
    judged = report["target"]["whole_query_at_largest_vs_smallest"]
    assert judged["in_turns_p50"] == in_turns["ratio_p50"]
    assert report["target"]["whole_query_at_largest_vs_smallest_at_most_1_25"] == (
        in_turns["ratio_p50"] <= 1.25
    )
    assert (tmp_path / "scale.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

"""`carma bench peers` at a small size, end to end: CARMA and each peer of the `peers` extra (CI
installs every extra, so none may be missing there) given the same real vectors, each in a
process of its own, every figure present and sane; a peer that is not installed is skipped and
said so, not failed."""

import json

import pytest
from click.testing import CliRunner

import carma.bench.peers as peers
from carma.cli import cli

pytestmark = [pytest.mark.realmodel, pytest.mark.sqlite_only]


def test_bench_peers_gives_each_store_the_same_vectors_and_says_what_it_skipped(
    tmp_path, monkeypatch
):
    absent = {"package": "carma_no_such_peer", "defaults": "none: not installed"}
    monkeypatch.setitem(peers.PEERS, "absent", absent)
    monkeypatch.setattr(peers, "QUERIES", 20)
    out = tmp_path / "peers.json"
    result = CliRunner().invoke(cli, ["bench", "peers", "-n", "300", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["sizes"] == [300]
    assert report["skipped"] == {"absent": "not installed (carma_no_such_peer)"}
    assert "absent is not installed" in result.output
    assert set(report["by_store"]) == {"carma", "chroma", "lancedb", "qdrant"}
    for name, by_size in report["by_store"].items():
        figures = by_size["300"]
        assert "error" not in figures, (name, figures)
        assert figures["ingest_per_s"] > 0
        assert 0 < figures["query_ms"]["p50"] <= figures["query_ms"]["p95"]
        assert 0.9 <= figures["recall_at_10"] <= 1.0, name
        assert figures["disk_bytes_per_fragment"] > 0
        # The process's own peak (VmHWM), not its parent's: ru_maxrss survives exec on Linux.
        assert 0 < figures["rss_mib"]["after_loading_the_vectors"] <= figures["rss_mib"]["peak"]
    assert report["by_store"]["carma"]["300"]["recall_at_10"] == 1.0  # exact below the graph
    assert set(report["carma_against_each"]) == {"chroma", "lancedb", "qdrant"}
    assert len(report["table"]) == 2 + 4  # a header, its rule, a row per store

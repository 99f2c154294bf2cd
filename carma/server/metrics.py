"""/metrics in Prometheus' text format: the store's state read at each scrape (fragments by
status, open findings, the fidelity and expected recall distributions, lag), counters of the
log's findings and repairs by copy, fault and method, dream cycles and their durations, and
the latency of each route."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

import carma

REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
CYCLE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class StoreCollector(Collector):
    """The store's state, read from its health report at every scrape."""

    def __init__(self, mem: carma.Memory):
        self.mem = mem

    def collect(self) -> Iterator[Any]:
        health = self.mem.health()
        fragments = GaugeMetricFamily(
            "carma_fragments", "Live fragments by status (health's by_status).", labels=["status"]
        )
        for status, count in health["by_status"].items():
            fragments.add_metric([status], count)
        yield fragments
        yield GaugeMetricFamily("carma_fragments_live", "Live fragments.", value=health["live"])
        yield GaugeMetricFamily(
            "carma_health_score", "The honest health score, 0 to 1.", value=health["score"]
        )
        yield GaugeMetricFamily(
            "carma_health_servable",
            "The share of live fragments whose body can be read now.",
            value=health["servable"],
        )
        open_faults = GaugeMetricFamily(
            "carma_faults_open", "Findings not repaired yet.", labels=["copy", "fault"]
        )
        for name, count in health["by_fault"].items():
            copy, _, fault = name.partition("/")
            open_faults.add_metric([copy, fault], count)
        yield open_faults
        for name, what in (
            ("fidelity", "Fidelity of the live fragments' bodies (exact 1, lost 0)."),
            ("expected_recall", "Calibrated expected recall of the approximate bodies."),
        ):
            spread = health["distribution"][name]
            buckets, running = [], 0
            for b in spread["bins"]:
                running += b["count"]
                buckets.append((_bound(b["le"]), running))
            buckets.append(("+Inf", spread["count"]))
            yield HistogramMetricFamily(
                f"carma_fragment_{name}", what, buckets=buckets, sum_value=spread["sum"]
            )
        lag = GaugeMetricFamily(
            "carma_projection_lag", "Log positions a projection is behind.", labels=["projection"]
        )
        for projection, behind in health["lag"].items():
            lag.add_metric([projection], behind)
        yield lag
        yield GaugeMetricFamily(
            "carma_log_position", "The last position of the log.", value=self.mem.log.position()
        )


def _bound(value: float) -> str:
    return repr(float(value))


class ServerMetrics:
    """The service's metrics, in a registry of its own (one per application)."""

    def __init__(self, mem: carma.Memory):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Histogram(
            "carma_http_request_duration_seconds",
            "Requests by method, route (its template) and status.",
            ["method", "route", "status"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.found = Counter(
            "carma_faults_found",
            "Findings recorded in the log (FragmentLost, IndexLost) by copy and fault.",
            ["copy", "replica", "fault"],
            registry=self.registry,
        )
        self.repaired = Counter(
            "carma_repairs",
            "Repairs recorded in the log (FragmentReconstructed, IndexRebuilt) by copy and method.",
            ["copy", "replica", "method"],
            registry=self.registry,
        )
        self.cycles = Counter(
            "carma_dream_cycles",
            "Dream cycles completed, by trigger.",
            ["trigger"],
            registry=self.registry,
        )
        self.cycle_seconds = Histogram(
            "carma_dream_cycle_duration_seconds",
            "How long each dream cycle took.",
            buckets=CYCLE_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(StoreCollector(mem))

    def healing(self, kind: str, labels: dict[str, str]) -> None:
        """A finding ("found") or a repair ("repaired") read from the log."""
        (self.found if kind == "found" else self.repaired).labels(**labels).inc()

    def cycle(self, cycle: dict[str, Any]) -> None:
        self.cycles.labels(trigger=cycle["trigger"]).inc()
        self.cycle_seconds.observe(float(cycle["seconds"].get("total", 0.0)))

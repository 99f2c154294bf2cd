"""`carma bench serve` (HashingEmbedder, n=2000 fragments): 8 concurrent clients mixing writes
and searches for a fixed time against one `carma serve` process, against the same clients on
the in-process API in the same run, with damage injected midway (a third of the cache files
and the index file deleted while background dream cycles run every second).

Each side runs twice, alternating (in-process, HTTP, in-process, HTTP), each time on a fresh
copy of one store built first, so that the two share the machine's noise. Reported per side:
requests per second, p50/p99 latency (all, searches, writes), errors (target 0), and
acknowledged writes lost (target 0: after each run the store is reopened and every write that
was answered is read back). The ratios are HTTP over in-process.

The small deterministic HashingEmbedder keeps the store's own work as small as it gets, so
the ratio shows what the service itself costs at its most visible: with the default model
each search spends some 15 ms encoding its query, on both sides alike.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import carma
from carma.bench.common import (
    Progress,
    environment,
    in_batches,
    ms_percentile,
    peak_rss_mib,
    ratio,
    rounded,
    rss,
    say,
)
from carma.demo.corpus import corpus
from carma.domain import CarmaError, InvalidInput

SERVE_N = 2_000
CLIENTS = 8
PHASE_S = 10.0  # each run's length; damage comes at half of it
ROUNDS = 2  # runs per side, alternating
WRITE_SHARE = 0.2  # of the requests; the rest are searches (k=10)
DAMAGE_CACHE = 1 / 3
DREAM_EVERY_S = 1.0
SEARCH_K = 10
START_S = 120


class Run:
    """What one run's clients saw: latency per request by kind, errors, answered writes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = {"search": [], "write": []}
        self.errors: list[str] = []
        self.written: dict[str, str] = {}

    def record(self, kind: str, seconds: float) -> None:
        with self.lock:
            self.latency[kind].append(seconds)

    def failed(self, message: str) -> None:
        with self.lock:
            self.errors.append(message)


def _queries(texts: list[str]) -> list[str]:
    """Stored texts as a user half-remembers them: every fourth word dropped."""
    return [
        " ".join(w for i, w in enumerate(t.rstrip(".").split()) if i % 4 != 1).lower() + "?"
        for t in texts
    ]


def _drive(
    run: Run,
    clients: int,
    seconds: float,
    queries: list[str],
    client: Callable[[int], tuple[Callable[[str], str], Callable[[str], None], Callable[[], None]]],
    damage: Callable[[], None],
) -> float:
    """`clients` threads, each with its own client (write, search, close), for `seconds`;
    `damage` runs at half time. Returns the run's wall time."""
    stop = threading.Event()

    def worker(number: int) -> None:
        write, search, close = client(number)
        rng = random.Random(number)
        count = 0
        try:
            while not stop.is_set():
                count += 1
                started = time.perf_counter()
                if rng.random() < WRITE_SHARE:
                    text = f"{rng.choice(queries)} (note {number}-{count})"
                    try:
                        key = write(text)
                    except Exception as exc:  # what a client would see, whatever it is
                        run.failed(f"write: {exc}")
                        continue
                    run.record("write", time.perf_counter() - started)
                    with run.lock:
                        run.written[key] = text
                else:
                    try:
                        search(rng.choice(queries))
                    except Exception as exc:
                        run.failed(f"search: {exc}")
                        continue
                    run.record("search", time.perf_counter() - started)
        finally:
            close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    stop.wait(seconds / 2)
    damage()
    time.sleep(seconds / 2)
    stop.set()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def _damage(home: Path, seed: int) -> Callable[[], None]:
    def damage() -> None:
        files = sorted((home / "cache").glob("??/*.json"))
        for path in random.Random(seed).sample(files, round(len(files) * DAMAGE_CACHE)):
            path.unlink(missing_ok=True)
        (home / "index" / "vectors.faiss").unlink(missing_ok=True)

    return damage


def _in_process(home: Path, queries: list[str], clients: int, seconds: float, seed: int) -> dict:
    run = Run()
    mem = carma.open(home, embedder=carma.HashingEmbedder(), database_url="")
    mem.start_dreaming(DREAM_EVERY_S)
    try:

        def client(_: int) -> tuple[Any, Any, Any]:
            def write(text: str) -> str:
                return mem.add(text)

            def search(query: str) -> None:
                mem.search(query, k=SEARCH_K)

            return write, search, lambda: None

        wall = _drive(run, clients, seconds, queries, client, _damage(home, seed))
    finally:
        mem.close()
    return _report(run, wall, home)


def _http(home: Path, queries: list[str], clients: int, seconds: float, seed: int) -> dict:
    run = Run()
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from carma.cli import main; main()",
            "serve",
            "--home",
            str(home),
            "--port",
            "0",
            "--json",
            "--embedder",
            "hashing",
            "--database-url",
            "",
            "--dream-every",
            str(DREAM_EVERY_S),
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        if not line:
            raise CarmaError(f"carma serve did not start: {process.stderr.read()[-2000:]}")
        host, port = json.loads(line)["url"].removeprefix("http://").rsplit(":", 1)

        def client(_: int) -> tuple[Any, Any, Any]:
            connection = http.client.HTTPConnection(host, int(port), timeout=60)

            def ask(path: str, body: dict[str, Any]) -> dict[str, Any]:
                connection.request(
                    "POST", path, json.dumps(body), {"Content-Type": "application/json"}
                )
                answer = connection.getresponse()
                data = json.loads(answer.read())
                if answer.status >= 400:
                    raise CarmaError(f"{answer.status} {data['error']['code']}")
                return data

            def write(text: str) -> str:
                return ask("/v1/fragments", {"text": text})["id"]

            def search(query: str) -> None:
                ask("/v1/search", {"query": query, "k": SEARCH_K})

            return write, search, connection.close

        wall = _drive(run, clients, seconds, queries, client, _damage(home, seed))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            status = process.wait(120)
        except subprocess.TimeoutExpired:
            process.kill()
            status = process.wait()
    report = _report(run, wall, home)
    report["server_exit_status"] = status
    return report


def _report(run: Run, wall: float, home: Path) -> dict[str, Any]:
    """The run's figures; the store is reopened and every answered write read back."""
    lost = 0
    with carma.open(home, embedder=carma.HashingEmbedder(), database_url="") as mem:
        for key, text in run.written.items():
            try:
                lost += mem.get(key).text != text
            except CarmaError:
                lost += 1
        health = mem.health()
    every = run.latency["search"] + run.latency["write"]
    return {
        "requests": len(every),
        "seconds": round(wall, 3),
        "requests_per_s": round(len(every) / wall, 1),
        "p50_ms": rounded(ms_percentile(every, 50), 3) if every else None,
        "p99_ms": rounded(ms_percentile(every, 99), 3) if every else None,
        "by_kind": {
            kind: {
                "requests": len(times),
                "p50_ms": rounded(ms_percentile(times, 50), 3) if times else None,
                "p99_ms": rounded(ms_percentile(times, 99), 3) if times else None,
            }
            for kind, times in run.latency.items()
        },
        "errors": len(run.errors),
        "first_errors": run.errors[:5],
        "writes_acknowledged": len(run.written),
        "writes_lost": lost,
        "health_after": health["score"],
        "repairs": health["by_method"],
        "latencies": every,  # pooled by _total, then dropped
    }


def _total(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A side's figures over its runs: latencies pooled (and then dropped from the runs)."""
    every = [t for r in runs for t in r.pop("latencies")]
    return {
        "requests": sum(r["requests"] for r in runs),
        "requests_per_s": round(
            sum(r["requests"] for r in runs) / sum(r["seconds"] for r in runs), 1
        ),
        "p50_ms": rounded(ms_percentile(every, 50), 3) if every else None,
        "p99_ms": rounded(ms_percentile(every, 99), 3) if every else None,
        "errors": sum(r["errors"] for r in runs),
        "writes_acknowledged": sum(r["writes_acknowledged"] for r in runs),
        "writes_lost": sum(r["writes_lost"] for r in runs),
    }


def bench_serve(
    *,
    n: int | None = None,
    workdir: Path,
    progress: Progress = None,
    clients: int = CLIENTS,
    seconds: float = PHASE_S,
    rounds: int = ROUNDS,
) -> dict:
    """HTTP clients against `carma serve` vs the same clients on the in-process API."""
    try:
        import fastapi  # noqa: F401  (the server extra: asked for before anything is built)
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise InvalidInput(
            f"bench serve needs the server extra ({exc.name} is not installed): "
            "pip install 'carma[server]'"
        ) from None
    n = SERVE_N if n is None else n
    if n < 10:
        raise InvalidInput("bench serve needs at least 10 fragments")
    workdir = Path(workdir)
    rss_before = peak_rss_mib()
    texts = corpus(n)
    queries = _queries(texts)
    built = workdir / "built"
    say(progress, f"serve: building a store of {n} fragments (HashingEmbedder)")
    with carma.open(built, embedder=carma.HashingEmbedder(), database_url="") as mem:
        for batch in in_batches(texts, 1_000):
            mem.add_many(batch)
    sides: dict[str, list[dict[str, Any]]] = {"in_process": [], "http": []}
    for round_ in range(rounds):
        for side, run in (("in_process", _in_process), ("http", _http)):
            home = workdir / f"{side}-{round_}"
            shutil.copytree(built, home)
            say(progress, f"serve: {side} run {round_ + 1}/{rounds}, {clients} clients, "
                          f"{seconds:.0f} s, damage at {seconds / 2:.0f} s")  # fmt: skip
            report = run(home, queries, clients, seconds, seed=round_)
            sides[side].append(report)
            say(
                progress,
                f"serve: {side}: {report['requests_per_s']} req/s, p50 {report['p50_ms']} ms, "
                f"p99 {report['p99_ms']} ms, errors {report['errors']}, "
                f"lost {report['writes_lost']}/{report['writes_acknowledged']}",
            )
            shutil.rmtree(home)
    inproc, over_http = _total(sides["in_process"]), _total(sides["http"])
    met = over_http["errors"] == 0 and over_http["writes_lost"] == 0
    return {
        "benchmark": "serve",
        "n": n,
        "embedder": "hashing-384",
        "clients": clients,
        "seconds_per_run": seconds,
        "rounds": rounds,
        "write_share": WRITE_SHARE,
        "damage": {
            "at": "half of each run",
            "cache_files_deleted": round(DAMAGE_CACHE, 3),
            "index_file": "deleted",
            "dream_every_s": DREAM_EVERY_S,
        },
        "in_process": {**inproc, "runs": sides["in_process"]},
        "http": {**over_http, "runs": sides["http"]},
        "ratios": {
            "requests_per_s": rounded(
                ratio(over_http["requests_per_s"], inproc["requests_per_s"]), 3
            ),
            "p50": rounded(ratio(over_http["p50_ms"], inproc["p50_ms"]), 3),
            "p99": rounded(ratio(over_http["p99_ms"], inproc["p99_ms"]), 3),
        },
        "target": {
            "description": "over HTTP, with damage midway: no request fails and no "
            "acknowledged write is lost",
            "http_errors": 0,
            "acknowledged_writes_lost": 0,
            "met": met,
        },
        "environment": environment(),
        "rss": rss(rss_before),  # the clients' process (the server's is its own)
    }

"""`carma demo`: a store built from real sentences, searched, revised, deleted and rebuilt."""

from __future__ import annotations

import random
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from carma import Memory
from carma.demo.chaos import chaos_text, destroy_bodies, run_chaos
from carma.demo.corpus import corpus
from carma.healing.calibrator import token_recall

Say = Callable[[str], None]
ProgressBar = Callable[[str, int], AbstractContextManager[Callable[[int], None]]]

QUERIES = (
    "How do I compress data before writing it to a file?",
    "parse command line arguments",
    "Which function returns the current time in seconds?",
    "send an email message over SMTP",
    "run several tasks at the same time with threads",
)
RECONSTRUCT_VICTIMS = 8  # bodies destroyed in step 8, drawn with this seed
RECONSTRUCT_SEED = 10
RECONSTRUCT_SHOWN = 3  # of them, shown beside their originals


def run_demo(
    open_store: Callable[[], Memory], home: str, count: int, say: Say, progress: ProgressBar
) -> dict[str, Any]:
    """Build a store of `count` real sentences at `home` (opened by `open_store`), show
    what CARMA does with it on `say`, and return the figures."""
    steps: dict[str, float] = {}

    @contextmanager
    def step(name: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        steps[name] = round(time.perf_counter() - started, 3)
        say(f"  ({steps[name]:.2f} s)")

    say(f"CARMA demo: a memory store in {home}")
    say(f"\n1. Reading {count} sentences from the standard library's docstrings")
    with step("corpus"):
        texts = corpus(count)
    items = [
        {"text": t, "metadata": {"source": "stdlib", "n": i}, "namespace": "stdlib"}
        for i, t in enumerate(texts)
    ]

    with open_store() as mem:
        say(f"\n2. Storing them (each write is an event in {mem.home / 'events.sqlite'})")
        with step("ingest"):
            result = _ingest(mem, items, progress)
        say(
            f"   added {result['added']}, revised {result['revised']}, unchanged "
            f"{result['unchanged']} (writes are idempotent: a text already stored in its "
            f"namespace is not stored again), restored {result['restored']} (an original text "
            "restores its reconstruction exactly)"
        )
        rate = count / steps["ingest"] if steps["ingest"] else 0.0
        say(f"   {rate:.0f} fragments/s with {mem.embedder.name}, model load included")

        say("\n3. Semantic search (score = cosine similarity)")
        searches = []
        with step("search"):
            for query in QUERIES:
                started = time.perf_counter()
                hits = mem.search(query, k=3, namespace="stdlib")
                ms = (time.perf_counter() - started) * 1000
                searches.append(
                    {
                        "query": query,
                        "ms": round(ms, 1),
                        "hits": [{"id": h.id, "score": h.score, "text": h.text} for h in hits],
                    }
                )
                say(f"\n   ? {query}   [{ms:.0f} ms]")
                for h in hits:
                    say(f"     {h.score:.3f}  {_shorten(h.text, 96)}")

        say("\n4. Revising and deleting: new events, never an overwrite")
        with step("revise-delete"):
            first = mem.search(QUERIES[0], k=1, namespace="stdlib")[0]
            revised = mem.revise(first.id, metadata={**first.metadata, "reviewed": True})
            victim = mem.search(QUERIES[1], k=1, namespace="stdlib")[0]
            mem.delete(victim.id, reason="demo: shows that deletion is an event")
            history = mem.history(victim.id)
        say(
            f"   revised {first.id} to version {revised.version}; deleted {victim.id}, "
            "whose history is:"
        )
        for entry in history:
            say(f"     log position {entry.position:>6}  {entry.kind}")

        say("\n5. Rebuilding the cache, the FAISS index and the ledger from the log")
        with step("rebuild"):
            events = mem.rebuild()
        after = mem.search(QUERIES[2], k=3, namespace="stdlib")
        same = [h.id for h in after] == [h["id"] for h in searches[2]["hits"]]
        say(f"   replayed {events} events; the same query gives the same answer: {same}")
        stats = mem.stats()
        say(
            f"\n6. The store: {stats['live']} live fragments, log at position "
            f"{stats['log_position']}, {stats['bytes_on_disk'] / 1e6:.1f} MB on disk"
        )
    say(
        "\n7. Chaos: 30% of the cache files deleted, 5% corrupted, the index file dropped, the\n"
        "   process restarted; 4 threads keep querying while a dream cycle heals the store"
    )
    with step("chaos"):
        chaos = run_chaos(
            open_store,
            cache_delete=0.3,
            cache_corrupt=0.05,
            index="drop",
            seed=7,
            threads=4,
            queries=100,
        )
    say("   " + chaos_text(chaos).replace("\n", "\n   "))
    say(
        f"\n8. Bit rot in the log itself: the events holding {RECONSTRUCT_VICTIMS} random "
        "fragments' texts damaged on\n   disk and their cache files deleted, so no exact copy "
        "is left; a dream cycle rebuilds them\n"
        "   from their surviving embeddings and their nearest neighbours in the namespace, and\n"
        "   calibrates: how much of a text rebuilt so is likely real"
    )
    with step("reconstruct"), open_store() as mem:
        reconstruct = _reconstruct(mem, say)
    say("\nsteps (s): " + ", ".join(f"{k} {v}" for k, v in steps.items()))
    return {
        "home": str(stats["home"]),
        "count": count,
        "ingest": result,
        "steps": steps,
        "searches": searches,
        "rebuild_events": events,
        "rebuild_same_answer": same,
        "stats": stats,
        "chaos": chaos,
        "reconstruct": reconstruct,
    }


def _reconstruct(mem: Memory, say: Say) -> dict[str, Any]:
    # Demo-sized budgets, so that this step takes seconds (`carma bench reconstruct`
    # measures the real ones): the same for the repairs and for their calibration.
    healer, calibrator = mem.dreamer.healer, mem.dreamer.calibrator
    healer.reconstruct_evaluations, healer.refine_evaluations = 96, 48
    calibrator.sample_size, calibrator.refinements = 20, 1
    mem.dreamer.calibrate_budget_s, mem.dreamer.refine_budget_s = 120.0, 2.0
    # Victims drawn at random, as bit rot draws them: expected recall is an average over the
    # namespace's fragments, so it is checked here as an average over several.
    exact = sorted(
        (r for r in mem.export(namespace="stdlib") if r.status == "healthy"), key=lambda r: r.id
    )
    victims = random.Random(RECONSTRUCT_SEED).sample(exact, min(RECONSTRUCT_VICTIMS, len(exact)))
    destroy_bodies(mem, [v.id for v in victims])
    cycle = mem.dream()
    say(f"   found {cycle['found']}; repaired {cycle['repaired']}")
    calibration = cycle["calibration"].get("stdlib", {})
    if calibration.get("status") == "calibrated":
        say(
            f"   calibrated: {calibration['fragments']} exact fragments of the namespace hidden "
            f"and rebuilt the same way got back ~{calibration['mean_recall']:.0%} of their "
            f"words\n   at a mean fidelity of {calibration['mean_fidelity']:.2f}"
        )
    shown = []
    for original in victims:
        record = mem.get(original.id)
        measured = token_recall(original.text, record.text)
        shown.append(
            {
                "id": original.id,
                "original": original.text,
                "text": record.text,
                "status": record.status,
                "fidelity": record.fidelity,
                "expected_recall": record.expected_recall,
                "measured_recall": round(measured, 4),
            }
        )
        if len(shown) > RECONSTRUCT_SHOWN:
            continue
        say(f"\n   original:        {_shorten(original.text, 90)}")
        say(f"   ≈ reconstructed: {_shorten(record.text or '(lost)', 90)}")
        expected = "unknown" if record.expected_recall is None else f"~{record.expected_recall:.0%}"
        say(
            f"     {record.status}, fidelity {record.fidelity:.3f}, words expected {expected} "
            f"(this demo knows the original: {measured:.0%})"
        )
    stated = [f["expected_recall"] for f in shown if f["expected_recall"] is not None]
    if stated:
        measured_all = [f["measured_recall"] for f in shown if f["expected_recall"] is not None]
        say(
            f"\n   over all {len(shown)} rebuilt: ~{sum(stated) / len(stated):.0%} of words "
            f"expected on average, {sum(measured_all) / len(measured_all):.0%} measured"
        )
    say(
        "   (expected recall is the namespace's average at that fidelity, measured on its own\n"
        "   fragments: one text can fall far from it, long ones mostly below; `carma bench\n"
        "   reconstruct` checks the average on 300 and reports the spread)"
    )
    restored = mem.add_many([{"text": victims[0].text, "namespace": "stdlib"}]).restored
    say(
        f"\n   the original text of the first one, added again, restores it exactly: "
        f"{mem.get(victims[0].id).status} (restored {restored})"
    )
    health = mem.health()
    say(f"   health {health['score']:.1%}: approximate bodies count by their fidelity")
    mean = health["expected_recall"]["mean"]
    say(
        "   expected recall of the approximate bodies: "
        + ("unknown (not calibrated)" if mean is None else f"~{mean:.0%} on average")
    )
    return {"cycle": cycle, "fragments": shown, "health": health["score"]}


def _ingest(
    mem: Memory, items: list[dict[str, Any]], progress: ProgressBar, batch: int = 256
) -> dict[str, int]:
    totals = {"added": 0, "unchanged": 0, "revised": 0, "restored": 0}
    with progress("   embedding", len(items)) as advance:
        for start in range(0, len(items), batch):
            result = mem.add_many(items[start : start + batch])
            for key in totals:
                totals[key] += getattr(result, key)
            advance(len(result.ids))
    return totals


def _shorten(text: str, width: int) -> str:
    return textwrap.shorten(text, width, placeholder="…")

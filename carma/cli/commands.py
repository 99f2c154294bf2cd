"""`carma`: the command line, mirroring the Python API one to one.

Every command takes --home and --json. Exit codes: 0 ok, 1 a failure found in the store,
2 a usage error (bad input, unknown id). A user mistake prints one line, never a traceback.
"""

from __future__ import annotations

import json
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import click

import carma
from carma.bench import BENCHMARKS, FIGURES, SHARED_LOG_BENCHMARK
from carma.cli.context import (
    Context,
    calibration_progress,
    command,
    embedder_named,
    parse_json_option,
    progress_bar,
    resolve_existing_home,
)
from carma.cli.render import (
    calibration_text,
    counts_line,
    cycle_text,
    fragment_text,
    health_table,
    hits_table,
    log_line,
    recovery_text,
    shorten,
)
from carma.demo import chaos_text, run_chaos, run_demo
from carma.domain import CarmaError, Draft, InvalidInput
from carma.lines import InvalidLines, parse_json, position_or_moment
from carma.search import MODES


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120})
@click.version_option(package_name="carma")
def cli() -> None:
    """CARMA: a self-healing, event-sourced memory store for AI agents."""


@command(cli, "add")
@click.argument("text")
@click.option("--metadata", help="JSON object of flat values.")
@click.option("--namespace", default="default", show_default=True)
@click.option("--id", "key", help="Your own id (an existing id is revised: upsert).")
def add_cmd(ctx: Context, text: str, metadata: str | None, namespace: str, key: str | None):
    """Store one fragment; prints its id."""
    draft = Draft.of(text, parse_json_option(metadata, "--metadata"), namespace, key)
    with ctx.memory(create=True) as mem:
        result = mem.add_many([draft])
    outcome = next(k for k in ("added", "revised", "unchanged") if getattr(result, k))
    ctx.emit({"id": result.ids[0], "outcome": outcome}, result.ids[0])


@command(cli, "add-many")
@click.argument("texts", nargs=-1)
@click.option("--namespace", default="default", show_default=True)
@click.option("--metadata", help="JSON object applied to every text.")
def add_many_cmd(ctx: Context, texts: tuple[str, ...], namespace: str, metadata: str | None):
    """Store several texts in one transaction (all or none); '-' reads one per line of stdin."""
    items = list(texts)
    if items == ["-"]:
        items = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not items:
        raise InvalidInput("no texts given")
    meta = parse_json_option(metadata, "--metadata")
    drafts = [Draft.of(t, meta, namespace) for t in items]
    with ctx.memory(create=True) as mem, progress_bar("embedding", len(drafts)) as bar:
        result = mem.add_many(drafts, progress=bar)
    ctx.emit(result, lambda: "\n".join(result.ids))


@command(cli, "import")
@click.argument("source", type=click.File("r", encoding="utf-8"))
@click.option(
    "--skip-invalid", is_flag=True, help="Write the valid lines and count the others as rejected."
)
@click.option(
    "--events",
    "events",
    is_flag=True,
    help="SOURCE is an `export --events` file: append its events (all or none).",
)
@click.option(
    "--batch-size",
    default=256,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="With --skip-invalid: lines per transaction.",
)
def import_cmd(ctx: Context, source: Any, skip_invalid: bool, events: bool, batch_size: int):
    """Import JSON lines {"text", "metadata"?, "namespace"?, "id"?} from FILE or - (stdin).

    Every line is checked before anything is written; without --skip-invalid one bad line
    rejects the whole file and nothing changes. A line of `carma export` imports as it is.
    With --events, the lines of an `export --events` are appended to the log in one
    transaction (twice changes nothing).
    """
    if events:
        lines = [parse_json(line, f"line {n}") for n, line in enumerate(source, 1) if line.strip()]
        with ctx.memory(create=True) as mem, progress_bar("importing events", 1) as bar:
            counts = mem.import_events(lines)  # one transaction: the bar ends when it commits
            bar(1)
        ctx.emit(counts, lambda: f"appended {counts['appended']}, unchanged {counts['unchanged']}")
        return
    lines = source.readlines()
    try:
        with (
            ctx.memory(create=True) as mem,
            progress_bar("importing", sum(1 for line in lines if line.strip())) as bar,
        ):
            result = mem.import_lines(
                lines, skip_invalid=skip_invalid, batch_size=batch_size, progress=bar
            )
    except InvalidLines as exc:
        for problem in exc.problems[: InvalidLines.SHOWN]:
            click.echo(problem, err=True)
        more = (
            f" (and {len(exc.problems) - InvalidLines.SHOWN} more)"
            if len(exc.problems) > InvalidLines.SHOWN
            else ""
        )
        raise InvalidInput(
            f"{len(exc.problems)} invalid line(s){more}; nothing was imported "
            "(--skip-invalid imports the rest)"
        ) from None
    for problem in result.problems:
        click.echo(problem, err=True)
    counts = result.model_dump(include={"added", "unchanged", "revised", "restored", "rejected"})
    ctx.emit(counts, lambda: ", ".join(f"{k} {v}" for k, v in counts.items()))
    if result.rejected:
        sys.exit(1)


@command(cli, "export")
@click.option("--namespace", default=None)
@click.option(
    "--events",
    "events",
    is_flag=True,
    help="The whole event log as stored (a backup), instead of the live fragments.",
)
@click.option(
    "--without-keys",
    is_flag=True,
    help="With --events: leave out the fragments' keys (no body is readable).",
)
@click.option("-o", "--output", type=click.File("w", encoding="utf-8"), default="-")
def export_cmd(ctx: Context, namespace: str | None, events: bool, without_keys: bool, output: Any):
    """Write every live fragment as a JSON line (import's shape plus id, version, status,
    fidelity, expected_recall), or with --events every event of the log."""
    n = 0
    with ctx.memory() as mem:
        if events:
            label, total = "exporting events", mem.log.position()
            lines = mem.export_events(with_keys=not without_keys)
        else:
            label, total = "exporting", mem.stats()["live"]
            lines = mem.export_lines(namespace)
        with progress_bar(label, total) as bar:
            for line in lines:
                output.write(json.dumps(line, ensure_ascii=False) + "\n")
                n += 1
                bar(1)
    if output is not sys.stdout and not ctx.as_json:
        click.echo(f"exported {n} {'event' if events else 'fragment'}(s)", err=True)


@command(cli, "get")
@click.argument("id")
def get_cmd(ctx: Context, id: str):
    """Print one fragment."""
    with ctx.memory() as mem:
        record = mem.get(id)
    ctx.emit(record, lambda: fragment_text(record))


@command(cli, "search")
@click.argument("query")
@click.option("-k", default=5, show_default=True, type=int)
@click.option("--namespace", default=None, help="Only this namespace (default: all).")
@click.option(
    "--where",
    help='JSON metadata filter: {"lang": "en"} (equal), operators $eq $ne $gt $gte $lt $lte '
    '$in $nin $exists, combined with $and/$or, e.g. {"year": {"$gte": 2024}}.',
)
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default="semantic",
    show_default=True,
    help="semantic: by meaning. keyword: by words (ids, names). hybrid: both, fused.",
)
@click.option(
    "--as-of",
    "as_of",
    default=None,
    help="Search the fragments as they were at a log position or a time (ISO 8601).",
)
@click.option(
    "--approximate-keywords",
    is_flag=True,
    help="Let a reconstruction's words be keyword hits (the original may not hold them).",
)
def search_cmd(
    ctx: Context,
    query: str,
    k: int,
    namespace: str | None,
    where: str | None,
    mode: str,
    as_of: str | None,
    approximate_keywords: bool,
):
    """The k fragments that best answer QUERY (by meaning, by words, or both)."""
    moment = position_or_moment(as_of, "--as-of")
    with ctx.memory() as mem:
        hits = mem.search(
            query,
            k=k,
            namespace=namespace,
            where=parse_json_option(where, "--where"),
            mode=mode,
            as_of=moment,
            approximate_keywords=approximate_keywords,
        )
    ctx.emit(hits, lambda: hits_table(hits))


@command(cli, "revise")
@click.argument("id")
@click.option("--text", default=None)
@click.option("--metadata", default=None, help="JSON object; replaces the metadata.")
def revise_cmd(ctx: Context, id: str, text: str | None, metadata: str | None):
    """Change a fragment's text and/or metadata (the same content again records nothing)."""
    with ctx.memory() as mem:
        record = mem.revise(id, text=text, metadata=parse_json_option(metadata, "--metadata"))
    ctx.emit(record, lambda: f"{record.id} is at version {record.version}")


@command(cli, "delete")
@click.argument("id")
@click.option("--reason", default="", help="Kept in the log for audit.")
def delete_cmd(ctx: Context, id: str, reason: str):
    """Delete a fragment; its history stays in the log."""
    with ctx.memory() as mem:
        deleted = mem.delete(id, reason)
    ctx.emit(
        {"id": id, "deleted": deleted}, f"deleted {id}" if deleted else f"{id} was already deleted"
    )


@command(cli, "forget")
@click.argument("id")
@click.option("--reason", required=True, help="Why (kept in the history).")
def forget_cmd(ctx: Context, id: str, reason: str):
    """Forget a fragment for good: its body and embedding become unreadable everywhere."""
    with ctx.memory() as mem:
        forgotten = mem.forget(id, reason)
    ctx.emit(
        {"id": id, "forgotten": forgotten},
        f"forgot {id}" if forgotten else f"{id} was already forgotten",
    )


@command(cli, "history")
@click.argument("id")
def history_cmd(ctx: Context, id: str):
    """Every event of a fragment, with its log position and time."""
    with ctx.memory() as mem:
        entries = mem.history(id)
    ctx.emit(
        entries,
        lambda: "\n".join(
            f"{e.position:>8}  v{e.version:<3} {e.at:%Y-%m-%d %H:%M:%S}  {e.kind:<13} "
            + shorten(", ".join(f"{k}={v}" for k, v in e.detail.items() if v is not None), 90)
            for e in entries
        ),
    )


@command(cli, "log")
@click.option(
    "--since",
    type=click.IntRange(0, 2**63 - 1),
    default=1,
    show_default=True,
    help="First log position (included).",
)
@click.option(
    "--until", type=click.IntRange(0, 2**63 - 1), default=None, help="Last log position (included)."
)
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    help="Only these event kinds, e.g. --kind FragmentWritten (repeatable).",
)
def log_cmd(ctx: Context, since: int, until: int | None, kinds: tuple[str, ...]):
    """Stream the log: one line per event (--json: JSON lines). Exit 1 if an event is corrupt."""
    corrupt = 0
    with ctx.memory() as mem:
        for entry in mem.log_events(since, until, kinds):
            corrupt += entry["kind"] == "corrupt"
            if ctx.as_json:
                click.echo(json.dumps(entry, ensure_ascii=False))
            elif entry["kind"] == "corrupt":
                click.echo(f"{entry['position']:>8}  CORRUPT  {entry['error']}")
            else:
                click.echo(
                    f"{entry['position']:>8}  {entry['at'][:19]}  {entry['kind']:<22} "
                    f"{entry['aggregate'][:8]} v{entry['version']}  "
                    + shorten(json.dumps(entry["data"], ensure_ascii=False), 80)
                )
    if corrupt:
        sys.exit(1)


@command(cli, "verify")
def verify_cmd(ctx: Context):
    """Check the log's tamper-evident chain. Exit 1 at the first bad position."""
    with ctx.memory() as mem:
        with progress_bar("verifying", mem.log.position()) as bar:
            report = mem.verify(progress=bar)
    ctx.emit(
        {k: report[k] for k in ("ok", "events", "first_bad", "reason", "head", "head_position")},
        lambda: (
            (
                f"ok: {report['events']} events, chain head {report['head'][:16]}… at "
                f"position {report['head_position']} ({report['seconds']:.2f} s)"
            )
            if report["ok"]
            else f"TAMPERED at log position {report['first_bad']}: {report['reason']}"
        ),
    )
    if not report["ok"]:
        sys.exit(1)


@command(cli, "replay")
@click.option(
    "--until",
    "until",
    default=None,
    help="A log position, or a time (ISO 8601, e.g. 2026-11-26T10:00:00Z). Default: the whole log.",
)
@click.option("--into", "into", required=True, type=str, help="An empty folder for the new store.")
def replay_cmd(ctx: Context, until: str | None, into: str):
    """A new store holding the log up to a position or a moment: what the agent knew then."""
    moment = position_or_moment(until, "--until")
    with ctx.memory() as mem:
        with mem.replay(moment, into=into) as replica:
            stats = replica.stats()
    report = {"into": stats["home"], "position": stats["log_position"], "live": stats["live"]}
    ctx.emit(
        report,
        f"replayed the log up to position {report['position']} into "
        f"{report['into']}: {report['live']} live fragment(s)",
    )


@command(cli, "rebuild")
def rebuild_cmd(ctx: Context):
    """Drop the cache, the vector index and the ledger, and rebuild them from the log."""
    started = time.perf_counter()
    with ctx.memory() as mem:
        total = mem.log.position()
        with progress_bar("rebuilding", total) as bar:
            events = mem.rebuild(progress=bar)
        rebuilt_s = time.perf_counter() - started
        stats = mem.stats()
        # The graph is built behind the rebuild; a command that ends here waits for it (a
        # store closed first would build it when next opened).
        with progress_bar("building the graph", stats["index_graph_pending"]) as bar:
            whole = mem.wait_for_graph(progress=bar)
        pending = 0 if whole else mem.stats()["index_graph_pending"]
    report = {
        "events": events,
        "live": stats["live"],
        "seconds": round(rebuilt_s, 3),
        "graph_seconds": round(time.perf_counter() - started, 3),
        "graph_pending": pending,  # parts whose graph could not be built (searched exactly)
    }
    graph = (
        f"the index's graph whole at {report['graph_seconds']} s"
        if not pending
        else f"the index's graph not built for {pending} part(s), searched exactly meanwhile"
    )
    ctx.emit(
        report,
        f"rebuilt from {events} event(s): {stats['live']} live fragment(s) "
        f"in {report['seconds']} s ({graph})",
    )


@command(cli, "recover")
def recover_cmd(ctx: Context):
    """Build a new log from the copies that survive in the home when its log is lost
    (deleted, cut short or replaced). The damaged log is kept aside; the old history is
    declared lost in the new log; fragments with no exact text left are named, never made up."""
    report = carma.recover(ctx.home, embedder=embedder_named(ctx.embedder_name))
    ctx.emit(report, lambda: recovery_text(report))
    if report["unrecovered"]:
        sys.exit(1)


@command(cli, "stats")
def stats_cmd(ctx: Context):
    """Counts, positions and sizes."""
    with ctx.memory() as mem:
        stats = mem.stats()
    ctx.emit(stats, lambda: "\n".join(f"{k:<14} {json.dumps(v)}" for k, v in stats.items()))


DEEP_HELP = (
    "Read every event's checksum in the log now (by default a scrub reads the new "
    "events and a rolling slice of the old ones: all of them every 8 scrubs)."
)


@command(cli, "scrub")
@click.option("--deep", is_flag=True, help=DEEP_HELP)
def scrub_cmd(ctx: Context, deep: bool):
    """Compare every copy with the log; record each new finding once. Exit 1 if any is open."""
    with ctx.memory() as mem:
        report = mem.scrub(deep=deep)
        open_findings = mem.health()["by_fault"]
    ctx.emit(
        report,
        lambda: (
            counts_line("found", report["found"])
            + f"\nnew findings recorded: {report['recorded']}\n"
            + log_line(report)
        ),
    )
    if open_findings:
        sys.exit(1)


@command(cli, "heal")
def heal_cmd(ctx: Context):
    """Repair every recorded finding not yet repaired."""
    with ctx.memory() as mem:
        repaired = mem.heal()
    ctx.emit({"repaired": repaired}, lambda: counts_line("repaired", repaired))


@command(cli, "dream")
@click.option("--deep", is_flag=True, help=DEEP_HELP)
def dream_cmd(ctx: Context, deep: bool):
    """One scrub-and-heal cycle, recorded in the log; prints its report."""
    with ctx.memory() as mem:
        report = mem.dream(deep=deep)
    ctx.emit(report, lambda: cycle_text(report))


@command(cli, "health")
def health_cmd(ctx: Context):
    """Honest health: repaired fragments count by fidelity, unrepaired losses count 0."""
    with ctx.memory() as mem:
        report = mem.health()
    ctx.emit(report, lambda: health_table(report))


@command(cli, "calibrate")
@click.option("--namespace", default=None, help="Only this namespace (default: all).")
@click.option("--force", is_flag=True, help="Calibrate again even where it is current.")
def calibrate_cmd(ctx: Context, namespace: str | None, force: bool):
    """Measure how much of its text the reconstructor recovers, per namespace.

    A sample of up to 80 exact fragments is hidden and rebuilt as a repair would rebuild it;
    the share of words recovered at each fidelity is recorded in the log, and approximate
    fragments report the expected share at theirs. Dream cycles do this on their own where
    approximate bodies are; this command does it now, to the end."""
    with ctx.memory() as mem:
        report = mem.calibrate(namespace, force, progress=calibration_progress())
    ctx.emit(
        report,
        lambda: (
            "\n".join(f"{ns}: {calibration_text(c)}" for ns, c in report.items()) or "no namespace"
        ),
    )


@command(cli, "watch")
@click.option(
    "--every",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    help="Seconds between dream cycles.",
)
@click.option(
    "--cycles",
    type=click.IntRange(min=1),
    default=None,
    help="Stop after this many cycles (default: until interrupted).",
)
def watch_cmd(ctx: Context, every: float, cycles: int | None):
    """Keep the store healthy: run a dream cycle every --every seconds until Ctrl-C."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    done = 0
    with ctx.memory() as mem:
        while not stop.is_set():
            report = mem.dream(trigger="schedule")
            done += 1
            ctx.emit(report, lambda r=report: cycle_text(r))
            if cycles is not None and done >= cycles:
                break
            stop.wait(every)


@command(cli, "mcp")
@click.option(
    "--namespace",
    "namespaces",
    multiple=True,
    default=("default",),
    show_default=True,
    help="The namespace the assistant's memories live in; repeat it to open more (the first "
    "is the default). No other namespace can be reached.",
)
@click.option("--read-only", is_flag=True, help="Only recall, history and health.")
@click.option(
    "--transport",
    type=click.Choice(["stdio", "http"]),
    default="stdio",
    show_default=True,
    help="stdio: the client starts this process; http: streamable HTTP at /mcp.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="With --transport http.")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="With http."
)
def mcp_cmd(
    ctx: Context,
    namespaces: tuple[str, ...],
    read_only: bool,
    transport: str,
    host: str,
    port: int,
):
    """Serve the store to an assistant over MCP (the Model Context Protocol): tools remember,
    recall, revise, forget, history and health. Needs the mcp extra."""
    try:
        from carma.integrations.mcp import check_address, serve
    except ImportError as exc:
        raise CarmaError(str(exc)) from None
    check_address(transport, host)  # before the store is opened (or made)
    with ctx.memory(create=not read_only) as mem:
        serve(
            mem,
            namespaces=namespaces,
            read_only=read_only,
            transport=transport,
            host=host,
            port=port,
        )


@command(cli, "chaos")
@click.option(
    "--cache-delete",
    type=click.FloatRange(0, 1),
    default=0.3,
    show_default=True,
    help="Share of cache files to delete.",
)
@click.option(
    "--cache-corrupt",
    type=click.FloatRange(0, 1),
    default=0.05,
    show_default=True,
    help="Share of cache files to corrupt (flipped bytes or truncated).",
)
@click.option(
    "--index",
    "index_damage",
    type=click.Choice(["drop", "truncate", "keep"]),
    default="drop",
    show_default=True,
    help="What to do to the index file.",
)
@click.option(
    "--damage-file",
    "files",
    multiple=True,
    type=click.Choice(["ledger", "keys", "mirror"]),
    help="Also flip a page of this file: the health ledger, the key store, its mirror "
    "(repeatable).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option(
    "--queries",
    type=click.IntRange(1),
    default=200,
    show_default=True,
    help="Queries before and after the damage (during: until healed).",
)
def chaos_cmd(
    ctx: Context,
    cache_delete: float,
    cache_corrupt: float,
    index_damage: str,
    files: tuple[str, ...],
    seed: int,
    threads: int,
    queries: int,
):
    """Damage this store on disk for real, write to it and query it from several threads
    while a dream cycle heals it, and report. Exit 1 if any query or write failed, or a
    query answered differently."""
    # chaos damages an existing store only
    ctx.home = str(resolve_existing_home(ctx.home, ctx.database_url))
    report = run_chaos(
        ctx.open_store,
        cache_delete=cache_delete,
        cache_corrupt=cache_corrupt,
        index=index_damage,
        seed=seed,
        threads=threads,
        queries=queries,
        files=files,
        say=(lambda s: None) if ctx.as_json else (lambda s: click.echo(s, err=True)),
    )
    ctx.emit(report, lambda: chaos_text(report))
    writes = report["writes"]
    if (
        report["queries_failed"]
        or report["wrong_answers"]
        or writes["failed"]
        or writes["found_after"] != writes["tried"]
    ):
        sys.exit(1)


@command(cli, "demo")
@click.option("--count", default=2000, show_default=True, type=click.IntRange(10, 50_000))
def demo_cmd(ctx: Context, count: int):
    """Build a store from the standard library's docstrings and show what CARMA does."""
    if ctx.home is None:
        ctx.home = ".carma-demo"
    report = run_demo(
        ctx.open_store,
        ctx.home,
        count,
        say=(lambda s: None) if ctx.as_json else click.echo,
        progress=progress_bar,
    )
    if ctx.as_json:
        ctx.emit(report, "")


@command(cli, "serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65_535),
    default=8765,
    show_default=True,
    help="0: any free port (the address is printed).",
)
@click.option(
    "--dream-every",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds between background dream cycles (0: none).",
)
def serve_cmd(ctx: Context, host: str, port: int, dream_every: float):
    """Serve the store over HTTP: the API, keys scoped to namespaces, /metrics and the live
    dashboard at /, until Ctrl-C (requests under way finish first). With no key, it listens
    on loopback only (docs/server.md)."""
    try:
        from carma.server.service import serve
    except ImportError as exc:
        from carma.server import MISSING_EXTRA

        raise InvalidInput(MISSING_EXTRA.format(name=exc.name)) from None

    def started(info: dict[str, Any]) -> None:
        url = info["url"]
        ctx.emit(
            info,
            lambda: (
                f"CARMA serving {info['home']} at {url}/\n"
                f"  dashboard {url}/   API {url}/v1   docs {url}/docs   metrics {url}/metrics\n"
                + (
                    "  no key exists: listening on loopback only, every request may do "
                    "everything (carma keys create makes one)"
                    if info["open"]
                    else f"  {info['keys']} key(s): every request needs one (Bearer)"
                )
            ),
        )

    serve(ctx.open_store, host=host, port=port, dream_every=dream_every or None, say=started)


@cli.group("keys")
def keys_group() -> None:
    """Keys to `carma serve`, scoped to namespaces: create, list, revoke."""


def _keys() -> Any:
    from carma.server import keys

    return keys


@command(keys_group, "create")
@click.option(
    "--namespace", "namespaces", multiple=True, help="A namespace the key holds (repeatable)."
)
@click.option("--all-namespaces", is_flag=True, help="Every namespace, present and future.")
@click.option("--read", is_flag=True, help="get, search, history, export, health.")
@click.option("--write", is_flag=True, help="add, revise, delete, forget.")
@click.option("--admin", is_flag=True, help="dream, verify, /metrics, keys (within its scope).")
@click.option("--label", default="", help="What the key is for (shown by list).")
def keys_create_cmd(
    ctx: Context,
    namespaces: tuple[str, ...],
    all_namespaces: bool,
    read: bool,
    write: bool,
    admin: bool,
    label: str,
):
    """Issue a key; it is printed this once (only its digest is kept, in the log)."""
    if bool(namespaces) == all_namespaces:
        raise InvalidInput("give --namespace NS (one or more) or --all-namespaces")
    rights = [r for r, given in (("read", read), ("write", write), ("admin", admin)) if given]
    keys = _keys()
    with ctx.memory(create=True) as mem:
        key, key_id = keys.issue_key(mem, None if all_namespaces else namespaces, rights, label)
    ctx.emit(
        {"key": key, "id": key_id},
        f"{key}\n(key {key_id}: shown this once, keep it safe; carma keys revoke {key_id})",
    )


@command(keys_group, "list")
def keys_list_cmd(ctx: Context):
    """Every key the log records (never a secret): namespaces, rights, use, revocation."""
    keys = _keys()
    with ctx.memory() as mem:
        found = keys.list_keys(mem)
    ctx.emit(
        found,
        lambda: (
            "\n".join(
                f"{k['id']}  {'revoked' if k['revoked_at'] else 'active ':<7}  "
                f"{','.join(k['rights']):<16} "
                f"{'(all)' if k['namespaces'] is None else ','.join(k['namespaces'])}  "
                f"uses {k['uses']}  {k['label']}"
                for k in found
            )
            or "no key"
        ),
    )


@command(keys_group, "revoke")
@click.argument("key_id")
@click.option("--reason", default="", help="Kept in the log.")
def keys_revoke_cmd(ctx: Context, key_id: str, reason: str):
    """Revoke a key: every server on the log refuses it within a second."""
    keys = _keys()
    with ctx.memory() as mem:
        revoked = keys.revoke_key(mem, key_id, reason)
    ctx.emit(
        {"id": key_id, "revoked": revoked},
        f"revoked {key_id}" if revoked else f"{key_id} was revoked already",
    )


@cli.command("bench")
@click.argument("name", type=click.Choice(list(BENCHMARKS)))
@click.option(
    "-n",
    "n",
    type=click.IntRange(1, 10_000_000),
    default=None,
    help="Size (default: the benchmark's own).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Also write the JSON report here (default bench-results/NAME-TIME.json).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report.")
@click.option(
    "--database-url",
    default=None,
    metavar="URL",
    help="ingest only: PostgreSQL against SQLite in the same run (throughput, a "
    "follower's lag under two writers, a new process joining a 100k-event "
    "log), in a schema of its own that is dropped afterwards.",
)
@click.option(
    "--setting",
    type=click.Choice(["large", "small", "shipped"]),
    default=None,
    help="reconstruct only: large (default: 3 large namespaces of alike text), small (many "
    "small namespaces of varied text, figures per size band) or shipped (measure the "
    "calibration that ships with the package).",
)
def bench_cmd(
    name: str,
    n: int | None,
    out: str | None,
    as_json: bool,
    database_url: str | None,
    setting: str | None,
):
    """Measure CARMA against a bare baseline in the same run; figures are ratios."""
    if database_url is not None and name != "ingest":
        raise click.UsageError("--database-url goes with `bench ingest` only")
    if setting is not None and name != "reconstruct":
        raise click.UsageError("--setting goes with `bench reconstruct` only")
    settings = {} if setting is None else {"setting": setting}
    progress = lambda msg: click.echo(msg, err=True)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix=f"carma-bench-{name}-") as workdir:
        try:
            if database_url is not None:
                name, bench_shared = SHARED_LOG_BENCHMARK
                report = bench_shared(
                    n=n, workdir=Path(workdir), progress=progress, database_url=database_url
                )
            else:
                report = BENCHMARKS[name](n=n, workdir=Path(workdir), progress=progress, **settings)
        except CarmaError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
    text = json.dumps(report, indent=2)
    path = (
        Path(out)
        if out
        else Path("bench-results")
        / f"{name}{'-' + setting if setting else ''}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    click.echo(text if as_json else f"{name}: report written to {path}\n{text}")
    if name in FIGURES:
        figure = FIGURES[name](report, path.with_suffix(".png"))
        click.echo(
            f"{name}: figure written to {figure}"
            if figure
            else f"{name}: no figure (it needs matplotlib: pip install 'carma[plot]')",
            err=True,
        )


def main() -> None:
    cli(prog_name="carma")

"""`carma`: the command line, mirroring the Python API one to one.

Every command takes --home and --json. Exit codes: 0 ok, 1 a failure found in the store,
2 a usage error (bad input, unknown id). A user mistake prints one line, never a traceback.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from carma.memory import storage_errors
from domain import CarmaError, Draft, InvalidInput

EMBEDDERS = ("minilm", "hashing")


def _embedder(name: str | None):
    """None: the store's own embedder (the default model for a new store)."""
    from carma.embedding import HashingEmbedder, SentenceTransformerEmbedder

    if name is None:
        return None
    return HashingEmbedder() if name == "hashing" else SentenceTransformerEmbedder()


class Context:
    def __init__(self, home: str | None, as_json: bool, embedder: str | None,
                 database_url: str | None = None):
        self.home = home
        self.as_json = as_json
        self.embedder_name = embedder
        self.database_url = database_url

    def open_store(self) -> Any:
        import carma

        return carma.open(self.home, embedder=_embedder(self.embedder_name),
                          database_url=self.database_url)

    @contextmanager
    def memory(self, create: bool = False) -> Iterator[Any]:
        """The store at --home; only commands that write create one where there is none."""
        if not create:
            self.home = str(resolve_existing_home(self.home, self.database_url))
        with self.open_store() as mem:
            yield mem

    def emit(self, data: Any, text: str | Callable[[], str]) -> None:
        if self.as_json:
            click.echo(json.dumps(_plain(data), ensure_ascii=False))
        else:
            click.echo(text() if callable(text) else text)


def _plain(data: Any) -> Any:
    if hasattr(data, "model_dump"):
        return data.model_dump(mode="json")
    if isinstance(data, list):
        return [_plain(d) for d in data]
    if isinstance(data, dict):
        return {k: _plain(v) for k, v in data.items()}
    return data


def command(group: click.Group, name: str, **kwargs: Any):
    """A command with the options every command has, and CARMA's error handling."""

    def decorate(fn: Callable[..., Any]) -> click.Command:
        @group.command(name, **kwargs)
        @click.option("--home", type=str, default=None, envvar="CARMA_HOME",
                      help="Store folder (default $CARMA_HOME, else ./.carma).")
        @click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
        @click.option("--embedder", type=click.Choice(EMBEDDERS), default=None,
                      envvar="CARMA_EMBEDDER",
                      help="minilm: all-MiniLM-L6-v2 (semantic). hashing: lexical, no model. "
                           "Default: the store's own; minilm for a new store.")
        @click.option("--database-url", default=None, metavar="URL",
                      help="Keep the log in PostgreSQL, shared with other processes "
                           "(postgresql://user:password@host:5432/dbname[?schema=name]; "
                           "default $CARMA_DATABASE_URL for a new home). The home then holds "
                           "this process's projections of it.")
        @functools.wraps(fn)
        def wrapper(home: str | None, as_json: bool, embedder: str | None,
                    database_url: str | None, **params: Any) -> None:
            ctx = Context(home, as_json, embedder, database_url)
            try:
                fn(ctx, **params)
            except CarmaError as exc:
                click.echo(f"error: {exc}", err=True)
                sys.exit(exc.exit_code)
            except BrokenPipeError:
                sys.stderr.close()  # the reader went away (| head): not an error
            except UnicodeDecodeError as exc:
                click.echo(f"error: the input is not UTF-8 text ({exc.reason} at byte "
                           f"{exc.start})", err=True)
                sys.exit(2)
            except OSError as exc:  # an output file or a folder the command itself writes
                click.echo(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
                           err=True)
                sys.exit(1)

        return wrapper

    return decorate


@click.group(context_settings={"help_option_names": ["-h", "--help"],
                                "max_content_width": 120})
@click.version_option(package_name="carma")
def cli() -> None:
    """CARMA: a self-healing, event-sourced memory store for AI agents."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _json_object(value: str | None, what: str) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc.msg} at column {exc.colno}") from None


def _fragment_text(f: Any) -> str:
    meta = json.dumps(f.metadata, ensure_ascii=False) if f.metadata else "{}"
    return (f"id:        {f.id}\nnamespace: {f.namespace}\nversion:   {f.version}\n"
            f"status:    {_status(f)}\nmetadata:  {meta}\n\n{_body(f)}")


def _status(f: Any) -> str:
    if f.status == "approximate":
        recall = " · share of words unknown (namespace not calibrated)" \
            if f.expected_recall is None else f" · ~{f.expected_recall:.0%} of words expected"
        return f"≈ approximate · fidelity {f.fidelity:.2f}{recall} (a reconstruction, not the original)"
    if f.status == "lost":
        return "lost · nothing is left to rebuild its text from"
    return f.status


def _body(f: Any) -> str:
    if f.text is None:
        return "(text lost)"
    return f"≈ {f.text}" if f.status == "approximate" else f.text


@command(cli, "add")
@click.argument("text")
@click.option("--metadata", help="JSON object of flat values.")
@click.option("--namespace", default="default", show_default=True)
@click.option("--id", "key", help="Your own id (an existing id is revised: upsert).")
def add_cmd(ctx: Context, text: str, metadata: str | None, namespace: str, key: str | None):
    """Store one fragment; prints its id."""
    draft = Draft.of(text, _json_object(metadata, "--metadata"), namespace, key)
    with ctx.memory(create=True) as mem:
        result = mem.add_many([draft.model_dump()])
    outcome = next(k for k in ("added", "revised", "unchanged") if getattr(result, k))
    ctx.emit({"id": result.ids[0], "outcome": outcome}, result.ids[0])


@command(cli, "add-many")
@click.argument("texts", nargs=-1)
@click.option("--namespace", default="default", show_default=True)
@click.option("--metadata", help="JSON object applied to every text.")
def add_many_cmd(ctx: Context, texts: tuple[str, ...], namespace: str, metadata: str | None):
    """Store several texts in one transaction (all or none). '-' reads one text per line of stdin."""
    items = list(texts)
    if items == ["-"]:
        items = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not items:
        raise InvalidInput("no texts given")
    meta = _json_object(metadata, "--metadata")
    drafts = [Draft.of(t, meta, namespace).model_dump() for t in items]
    with ctx.memory(create=True) as mem, progress_bar("embedding", len(drafts)) as bar:
        result = mem.add_many(drafts, progress=bar)
    ctx.emit(result, lambda: "\n".join(result.ids))


@command(cli, "import")
@click.argument("source", type=click.File("r", encoding="utf-8"))
@click.option("--skip-invalid", is_flag=True,
              help="Write the valid lines and count the others as rejected.")
@click.option("--events", "events", is_flag=True,
              help="SOURCE is an `export --events` file: append its events (all or none).")
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(1, 10_000),
              help="With --skip-invalid: lines per transaction.")
def import_cmd(ctx: Context, source: Any, skip_invalid: bool, events: bool, batch_size: int):
    """Import JSON lines {"text", "metadata"?, "namespace"?, "id"?} from FILE or - (stdin).

    Every line is checked before anything is written; without --skip-invalid one bad line
    rejects the whole file and nothing changes. With --events, the lines of an
    `export --events` are appended to the log in one transaction (twice changes nothing).
    """
    if events:
        lines = [_json_object(line, f"line {n}") for n, line in enumerate(source, 1)
                 if line.strip()]
        with ctx.memory(create=True) as mem, progress_bar("importing events", 1) as bar:
            counts = mem.import_events(lines)  # one transaction: the bar ends when it commits
            bar(1)
        ctx.emit(counts, lambda: f"appended {counts['appended']}, unchanged "
                                 f"{counts['unchanged']}")
        return
    drafts, problems = [], []
    for number, line in enumerate(source, 1):
        if not line.strip():
            continue
        try:
            drafts.append(Draft.from_mapping(_import_line(_json_object(line, f"line {number}"))))
        except InvalidInput as exc:
            problems.append(f"line {number}: {exc}")
    if problems and not skip_invalid:
        for problem in problems[:10]:
            click.echo(problem, err=True)
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise InvalidInput(f"{len(problems)} invalid line(s){more}; nothing was imported "
                           "(--skip-invalid imports the rest)")
    counts = {"added": 0, "unchanged": 0, "revised": 0, "restored": 0,
              "rejected": len(problems)}
    with ctx.memory(create=True) as mem, progress_bar("importing", len(drafts)) as bar:
        if not skip_invalid:
            # All or nothing: one transaction, so a refusal by the log changes nothing.
            results = [mem.add_many([d.model_dump() for d in drafts], progress=bar)]
        else:
            results = []
            for start in range(0, len(drafts), batch_size):
                chunk = [d.model_dump() for d in drafts[start : start + batch_size]]
                try:
                    results.append(mem.add_many(chunk))
                except CarmaError:
                    for item in chunk:  # isolate the item the log refuses (a deleted id, say)
                        try:
                            results.append(mem.add_many([item]))
                        except CarmaError as exc:
                            label = item.get("id") or item["text"][:40]
                            click.echo(f"rejected {label!r}: {exc}", err=True)
                            counts["rejected"] += 1
                bar(len(chunk))
        for r in results:
            for k in ("added", "unchanged", "revised", "restored"):
                counts[k] += getattr(r, k)
    ctx.emit(counts, lambda: ", ".join(f"{k} {v}" for k, v in counts.items()))
    if counts["rejected"]:
        sys.exit(1)


EXPORT_ONLY = ("version", "status", "fidelity", "expected_recall", "content_hash")


def _import_line(line: Any) -> Any:
    """An import line, or a line of `carma export` (its added fields are dropped). An
    exported reconstruction is not an original text: importing it as one would launder an
    approximation into an exact fragment, so it is refused."""
    if not isinstance(line, dict) or "status" not in line:
        return line
    if line["status"] != "healthy":
        raise InvalidInput(f"the fragment was exported {line['status']!r}: only exact texts "
                           "can be imported")
    return {k: v for k, v in line.items() if k not in EXPORT_ONLY}


@command(cli, "export")
@click.option("--namespace", default=None)
@click.option("--events", "events", is_flag=True,
              help="The whole event log as stored (a backup), instead of the live fragments.")
@click.option("--without-keys", is_flag=True,
              help="With --events: leave out the fragments' keys (no body is readable).")
@click.option("-o", "--output", type=click.File("w", encoding="utf-8"), default="-")
def export_cmd(ctx: Context, namespace: str | None, events: bool, without_keys: bool,
               output: Any):
    """Write every live fragment as a JSON line (import's shape plus id, version, status,
    fidelity), or with --events every event of the log."""
    n = 0
    with ctx.memory() as mem:
        if events:
            with progress_bar("exporting events", mem.log.position()) as bar:
                for line in mem.export_events(with_keys=not without_keys):
                    output.write(json.dumps(line) + "\n")
                    n += 1
                    bar(1)
            if output is not sys.stdout and not ctx.as_json:
                click.echo(f"exported {n} event(s)", err=True)
            return
        total = mem.stats()["live"]
        with progress_bar("exporting", total) as bar:
            for record in mem.export(namespace):
                line = {"id": record.id, "text": record.text, "metadata": record.metadata,
                        "namespace": record.namespace, "version": record.version,
                        "status": record.status, "fidelity": record.fidelity,
                        "expected_recall": record.expected_recall}
                output.write(json.dumps(line, ensure_ascii=False) + "\n")
                n += 1
                bar(1)
    if output is not sys.stdout and not ctx.as_json:
        click.echo(f"exported {n} fragment(s)", err=True)


@command(cli, "get")
@click.argument("id")
def get_cmd(ctx: Context, id: str):
    """Print one fragment."""
    with ctx.memory() as mem:
        record = mem.get(id)
    ctx.emit(record, lambda: _fragment_text(record))


@command(cli, "search")
@click.argument("query")
@click.option("-k", default=5, show_default=True, type=int)
@click.option("--namespace", default=None, help="Only this namespace (default: all).")
@click.option("--where", help='JSON object: metadata values that must be equal, e.g. {"lang": "en"}.')
def search_cmd(ctx: Context, query: str, k: int, namespace: str | None, where: str | None):
    """The k fragments nearest in meaning to QUERY."""
    with ctx.memory() as mem:
        hits = mem.search(query, k=k, namespace=namespace, where=_json_object(where, "--where"))
    ctx.emit(hits, lambda: _hits_table(hits))


def _hits_table(hits: list[Any]) -> str:
    if not hits:
        return "no results"
    width = max(20, min(100, _terminal_width() - 40))
    lines = [f"{'score':>6}  {'id':<12}  {'namespace':<10}  text"]
    for h in hits:
        text = shorten(_body(h), width)
        lines.append(f"{h.score:6.3f}  {h.id[:12]:<12}  {h.namespace[:10]:<10}  {text}")
    return "\n".join(lines)


def _terminal_width() -> int:
    try:
        return os.get_terminal_size().columns
    except OSError:
        return 120


@command(cli, "revise")
@click.argument("id")
@click.option("--text", default=None)
@click.option("--metadata", default=None, help="JSON object; replaces the metadata.")
def revise_cmd(ctx: Context, id: str, text: str | None, metadata: str | None):
    """Change a fragment's text and/or metadata (the same content again records nothing)."""
    with ctx.memory() as mem:
        record = mem.revise(id, text=text, metadata=_json_object(metadata, "--metadata"))
    ctx.emit(record, lambda: f"{record.id} is at version {record.version}")


@command(cli, "delete")
@click.argument("id")
@click.option("--reason", default="", help="Kept in the log for audit.")
def delete_cmd(ctx: Context, id: str, reason: str):
    """Delete a fragment; its history stays in the log."""
    with ctx.memory() as mem:
        deleted = mem.delete(id, reason)
    ctx.emit({"id": id, "deleted": deleted},
             f"deleted {id}" if deleted else f"{id} was already deleted")


@command(cli, "forget")
@click.argument("id")
@click.option("--reason", required=True, help="Why (kept in the history).")
def forget_cmd(ctx: Context, id: str, reason: str):
    """Forget a fragment for good: its body and embedding become unreadable everywhere."""
    with ctx.memory() as mem:
        forgotten = mem.forget(id, reason)
    ctx.emit({"id": id, "forgotten": forgotten},
             f"forgot {id}" if forgotten else f"{id} was already forgotten")


@command(cli, "history")
@click.argument("id")
def history_cmd(ctx: Context, id: str):
    """Every event of a fragment, with its log position and time."""
    with ctx.memory() as mem:
        entries = mem.history(id)
    ctx.emit(entries, lambda: "\n".join(
        f"{e.position:>8}  v{e.version:<3} {e.at:%Y-%m-%d %H:%M:%S}  {e.kind:<13} "
        + shorten(", ".join(f"{k}={v}" for k, v in e.detail.items() if v is not None), 90)
        for e in entries))


@command(cli, "log")
@click.option("--since", type=click.IntRange(0, 2**63 - 1), default=1, show_default=True,
              help="First log position (included).")
@click.option("--until", type=click.IntRange(0, 2**63 - 1), default=None,
              help="Last log position (included).")
@click.option("--kind", "kinds", multiple=True,
              help="Only these event kinds, e.g. --kind FragmentWritten (repeatable).")
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
                click.echo(f"{entry['position']:>8}  {entry['at'][:19]}  {entry['kind']:<22} "
                           f"{entry['aggregate'][:8]} v{entry['version']}  "
                           + shorten(json.dumps(entry["data"], ensure_ascii=False), 80))
    if corrupt:
        sys.exit(1)


def shorten(text: str, width: int) -> str:
    """One line of at most `width` characters."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@command(cli, "verify")
def verify_cmd(ctx: Context):
    """Check the log's tamper-evident chain. Exit 1 at the first bad position."""
    with ctx.memory() as mem:
        with progress_bar("verifying", mem.log.position()) as bar:
            report = mem.verify(progress=bar)
    ctx.emit({k: report[k] for k in ("ok", "events", "first_bad", "reason", "head",
                                     "head_position")},
             lambda: (f"ok: {report['events']} events, chain head {report['head'][:16]}… at "
                      f"position {report['head_position']} ({report['seconds']:.2f} s)")
             if report["ok"] else
             f"TAMPERED at log position {report['first_bad']}: {report['reason']}")
    if not report["ok"]:
        sys.exit(1)


@command(cli, "replay")
@click.option("--until", "until", default=None,
              help="A log position, or a time (ISO 8601, e.g. 2026-11-26T10:00:00Z). "
                   "Default: the whole log.")
@click.option("--into", "into", required=True, type=str, help="An empty folder for the new store.")
def replay_cmd(ctx: Context, until: str | None, into: str):
    """A new store holding the log up to a position or a moment: what the agent knew then."""
    moment: int | datetime | None = None
    if until is not None:
        if until.isascii() and until.isdigit() and len(until) < 19:
            moment = int(until)
        else:
            try:
                moment = datetime.fromisoformat(until.replace("Z", "+00:00"))
            except ValueError:
                raise InvalidInput(f"--until {until!r} is neither a log position nor an ISO "
                                   "8601 time") from None
    with ctx.memory() as mem:
        with mem.replay(moment, into=into) as replica:
            stats = replica.stats()
    report = {"into": stats["home"], "position": stats["log_position"], "live": stats["live"]}
    ctx.emit(report, f"replayed the log up to position {report['position']} into "
                     f"{report['into']}: {report['live']} live fragment(s)")


@command(cli, "rebuild")
def rebuild_cmd(ctx: Context):
    """Drop the cache, the vector index and the ledger, and rebuild them from the log."""
    started = time.perf_counter()
    with ctx.memory() as mem:
        total = mem.log.position()
        with progress_bar("rebuilding", total) as bar:
            events = mem.rebuild(progress=bar)
        stats = mem.stats()
    report = {"events": events, "live": stats["live"], "seconds": round(time.perf_counter() - started, 3)}
    ctx.emit(report, f"rebuilt from {events} event(s): {stats['live']} live fragment(s) "
                     f"in {report['seconds']} s")


@command(cli, "stats")
def stats_cmd(ctx: Context):
    """Counts, positions and sizes."""
    with ctx.memory() as mem:
        stats = mem.stats()
    ctx.emit(stats, lambda: "\n".join(f"{k:<14} {json.dumps(v)}" for k, v in stats.items()))


DEEP_HELP = ("Read every event's checksum in the log now (by default a scrub reads the new "
             "events and a rolling slice of the old ones: all of them every 8 scrubs).")


@command(cli, "scrub")
@click.option("--deep", is_flag=True, help=DEEP_HELP)
def scrub_cmd(ctx: Context, deep: bool):
    """Compare every copy with the log; record each new finding once. Exit 1 if any is open."""
    with ctx.memory() as mem:
        report = mem.scrub(deep=deep)
        open_findings = mem.health()["by_fault"]
    ctx.emit(report, lambda: _counts_line("found", report["found"])
             + f"\nnew findings recorded: {report['recorded']}\n" + _log_line(report))
    if open_findings:
        sys.exit(1)


@command(cli, "heal")
def heal_cmd(ctx: Context):
    """Repair every recorded finding not yet repaired."""
    with ctx.memory() as mem:
        repaired = mem.heal()
    ctx.emit({"repaired": repaired}, lambda: _counts_line("repaired", repaired))


@command(cli, "dream")
@click.option("--deep", is_flag=True, help=DEEP_HELP)
def dream_cmd(ctx: Context, deep: bool):
    """One scrub-and-heal cycle, recorded in the log; prints its report."""
    with ctx.memory() as mem:
        report = mem.dream(deep=deep)
    ctx.emit(report, lambda: _cycle_text(report))


def _log_line(report: dict[str, Any]) -> str:
    checked = report.get("checked", {})
    if "log_events" not in checked:
        return ""
    how = "all of it" if checked["log_deep"] else "new events and a rolling slice"
    return f"log checksums: {checked['log_events']} positions read ({how})"


def _cycle_text(report: dict[str, Any]) -> str:
    calibration = "".join(f"calibration {ns}: {_calibration_text(c)}\n"
                          for ns, c in report.get("calibration", {}).items())
    return (f"dream cycle {report['id']} ({report['trigger']})\n"
            + _counts_line("found", report["found"]) + "\n"
            + _counts_line("repaired", report["repaired"]) + "\n" + calibration
            + (_log_line(report) + "\n" if "checked" in report else "")
            + f"health {report['health_before']:.1%} -> {report['health_after']:.1%} "
            f"in {report['seconds']['total']:.2f} s")


def _counts_line(label: str, counts: dict[str, int]) -> str:
    if not counts:
        return f"{label}: nothing"
    return f"{label}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


@command(cli, "health")
def health_cmd(ctx: Context):
    """Honest health: repaired fragments count by fidelity, unrepaired losses count 0."""
    with ctx.memory() as mem:
        report = mem.health()
    ctx.emit(report, lambda: _health_table(report))


def _health_table(h: dict[str, Any]) -> str:
    rows = [("health", f"{h['score']:.1%}  of {h['live']} live fragment(s)"),
            ("servable", f"{h['servable']:.1%}  (a body can be read, exact or approximate)")]
    rows += [(f"  {status}", str(n)) for status, n in h["by_status"].items()]
    rows += [("open findings", _inline(h["by_fault"]) or "none"),
             ("repairs", _inline(h["by_method"]) or "none")]
    if h["fidelity"]["mean"] is not None:
        rows.append(("fidelity", f"mean {h['fidelity']['mean']:.3f}, min {h['fidelity']['min']:.3f}"))
        expected = h["expected_recall"]
        rows.append(("expected recall",
                     ("unknown" if expected["mean"] is None else
                      f"mean ~{expected['mean']:.0%} of the original's words")
                     + (f" ({expected['not_calibrated']} not calibrated)"
                        if expected["not_calibrated"] else "")))
    for namespace, methods in h["calibration"].items():
        for method, c in methods.items():
            rows.append((f"  {namespace}", f"{method}: {_calibration_text(c)}"))
    rows.append(("lag", _inline(h["lag"])))
    for name, error in h.get("projection_errors", {}).items():
        # Said loudly: writes are still acknowledged (the log has them) and reads fall back
        # to the log, so nothing else would tell that a copy has stopped following it.
        rows.append(("BEHIND", f"{name} stopped following the log: {error} (it retries on "
                               "every read; reads are served from the log meanwhile)"))
    cycle = h["last_cycle"]
    rows.append(("last cycle", "never" if not cycle else
                 f"{cycle['completed_at'][:19]} {cycle['trigger']}: "
                 f"{cycle['health_before']:.1%} -> {cycle['health_after']:.1%}"))
    return "\n".join(f"{k:<14} {v}" for k, v in rows)


@command(cli, "calibrate")
@click.option("--namespace", default=None, help="Only this namespace (default: all).")
@click.option("--force", is_flag=True, help="Calibrate again even where it is current.")
def calibrate_cmd(ctx: Context, namespace: str | None, force: bool):
    """Measure how much of its text the reconstructor recovers, per namespace.

    A sample of up to 50 exact fragments is hidden and rebuilt as a repair would rebuild it;
    the share of words recovered at each fidelity is recorded in the log, and approximate
    fragments report the expected share at theirs. Dream cycles do this on their own where
    approximate bodies are; this command does it now, to the end."""
    with ctx.memory() as mem:
        report = mem.calibrate(namespace, force, progress=_calibration_progress())
    ctx.emit(report, lambda: "\n".join(f"{ns}: {_calibration_text(c)}"
                                       for ns, c in report.items()) or "no namespace")


def _calibration_text(c: dict[str, Any]) -> str:
    status = c["status"]
    if status in ("calibrated", "current") and "mean_recall" in c:
        return (f"{status} on {c['fragments']} of {c['exact_fragments']} exact fragments: "
                f"mean fidelity {c['mean_fidelity']:.2f}, ~{c['mean_recall']:.0%} of words "
                f"({c['mean_content_recall']:.0%} of content words) recovered")
    if status in ("too-small", "declined"):
        small = c.get("too_small", c)
        return (f"too small to calibrate ({small['exact_fragments']} exact fragments; "
                f"{small['needed']} needed)")
    if status == "calibrating":
        progress = c.get("progress", c)
        return f"calibrating ({progress.get('measured', 0)} of {progress.get('of', '?')})"
    return status


def _calibration_progress() -> Callable[[str, int, int], None]:
    """One line on stderr per namespace, rewritten in place (only on a terminal)."""
    if not sys.stderr.isatty():
        return lambda *_: None

    def show(namespace: str, measured: int, of: int) -> None:
        click.echo(f"\rcalibrating {namespace}: {measured}/{of}", file=sys.stderr,
                   nl=measured >= of)
    return show


def _inline(counts: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())


@command(cli, "watch")
@click.option("--every", type=click.FloatRange(min=0.1), default=60.0, show_default=True,
              help="Seconds between dream cycles.")
@click.option("--cycles", type=click.IntRange(min=1), default=None,
              help="Stop after this many cycles (default: until interrupted).")
def watch_cmd(ctx: Context, every: float, cycles: int | None):
    """Keep the store healthy: run a dream cycle every --every seconds until Ctrl-C."""
    import signal
    import threading

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    done = 0
    with ctx.memory() as mem:
        while not stop.is_set():
            with storage_errors("the dream cycle stopped"):
                report = mem.dreamer.dream("schedule")
            done += 1
            ctx.emit(report, lambda r=report: _cycle_text(r))
            if cycles is not None and done >= cycles:
                break
            stop.wait(every)


@command(cli, "chaos")
@click.option("--cache-delete", type=click.FloatRange(0, 1), default=0.3, show_default=True,
              help="Share of cache files to delete.")
@click.option("--cache-corrupt", type=click.FloatRange(0, 1), default=0.05, show_default=True,
              help="Share of cache files to corrupt (flipped bytes or truncated).")
@click.option("--index", "index_damage", type=click.Choice(["drop", "truncate", "keep"]),
              default="drop", show_default=True, help="What to do to the index file.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option("--queries", type=click.IntRange(1), default=200, show_default=True,
              help="Queries before and after the damage (during: until healed).")
def chaos_cmd(ctx: Context, cache_delete: float, cache_corrupt: float, index_damage: str,
              seed: int, threads: int, queries: int):
    """Damage this store on disk for real, query it from several threads while a dream cycle
    heals it, and report. Exit 1 if any query failed or answered differently."""
    from carma.chaos import run_chaos

    # chaos damages an existing store only
    ctx.home = str(resolve_existing_home(ctx.home, ctx.database_url))
    report = run_chaos(
        ctx.open_store,
        cache_delete=cache_delete, cache_corrupt=cache_corrupt, index=index_damage, seed=seed,
        threads=threads, queries=queries,
        say=(lambda s: None) if ctx.as_json else (lambda s: click.echo(s, err=True)))
    ctx.emit(report, lambda: chaos_text(report))
    if report["queries_failed"] or report["wrong_answers"]:
        sys.exit(1)


def resolve_existing_home(home: str | None, database_url: str | None = None) -> Path:
    """The home of an existing store: its own SQLite log, or a shared log in PostgreSQL
    (which a new home joins: its projections are built from the log)."""
    from carma.bootstrap import database_for, resolve_home
    from carma.database import BINDING

    path = resolve_home(home)
    if (path / "events.sqlite").is_file() or (path / BINDING).is_file():
        return path
    database = database_for(path, database_url)
    if database is None or not database.has_log():
        raise InvalidInput(f"no store at {path}" + ("" if database is None else
                                                    f" nor in {database.redacted}"))
    return path


def chaos_text(r: dict[str, Any]) -> str:
    lines = [f"chaos on {r['fragments']} fragments (seed {r['seed']}, {r['threads']} threads)",
             f"damage: {r['damage']}",
             f"{'phase':<8} {'queries':>8} {'failed':>7} {'wrong':>6} {'p50 ms':>8} {'p95 ms':>8}"]
    for name, p in r["phases"].items():
        lines.append(f"{name:<8} {p['queries']:>8} {p['failed']:>7} {p['wrong_answers']:>6} "
                     f"{p['p50_ms']:>8.1f} {p['p95_ms']:>8.1f}")
    h = r["health"]
    lines += [_counts_line("found", r["found"]), _counts_line("repaired", r["repaired"]),
              f"restart {r['reopen_seconds']:.2f} s, dream cycle {r['heal_seconds']:.2f} s "
              f"(repairs {r['cycle_phases_s']['heal']:.2f} s); health "
              f"{h['before_damage']:.1%} -> {h['as_found']:.1%} (as found) -> {h['after']:.1%}"]
    return "\n".join(lines)


@command(cli, "demo")
@click.option("--count", default=2000, show_default=True, type=click.IntRange(10, 50_000))
def demo_cmd(ctx: Context, count: int):
    """Build a store from the standard library's docstrings and show what CARMA does."""
    from carma.demo import run_demo

    if ctx.home is None:
        ctx.home = ".carma-demo"
    report = run_demo(ctx, count)
    if ctx.as_json:
        ctx.emit(report, "")


@cli.command("bench")
@click.argument("name", type=click.Choice(["ingest", "query", "overhead", "heal", "audit",
                                                 "reconstruct"]))
@click.option("-n", "n", type=click.IntRange(1, 10_000_000), default=None,
              help="Size (default: the benchmark's own).")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Also write the JSON report here (default bench-results/NAME-TIME.json).")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report.")
@click.option("--database-url", default=None, metavar="URL",
              help="ingest only: PostgreSQL against SQLite in the same run (throughput, a "
                   "follower's lag under two writers, a new process joining a 100k-event "
                   "log), in a schema of its own that is dropped afterwards.")
def bench_cmd(name: str, n: int | None, out: str | None, as_json: bool,
              database_url: str | None):
    """Measure CARMA against a bare baseline in the same run; figures are ratios."""
    import tempfile

    from carma.bench import BENCHMARKS

    if database_url is not None and name != "ingest":
        raise click.UsageError("--database-url goes with `bench ingest` only")
    progress = lambda msg: click.echo(msg, err=True)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix=f"carma-bench-{name}-") as workdir:
        if database_url is not None:
            from carma.bench_shared import bench_shared
            from carma.database import PostgresURL

            try:
                PostgresURL.parse(database_url)
            except InvalidInput as exc:
                raise click.UsageError(str(exc)) from None
            try:
                report = bench_shared(database_url=database_url, n=n, workdir=Path(workdir),
                                      progress=progress)
            except CarmaError as exc:
                click.echo(f"error: {exc}", err=True)
                sys.exit(exc.exit_code)
            name = "ingest-shared"
        else:
            report = BENCHMARKS[name](n=n, workdir=Path(workdir), progress=progress)
    text = json.dumps(report, indent=2)
    path = Path(out) if out else Path("bench-results") / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    click.echo(text if as_json else f"{name}: report written to {path}\n{text}")


@contextmanager
def progress_bar(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield lambda _n: None
        return
    with click.progressbar(length=max(total, 0), label=label, file=sys.stderr,
                           show_pos=True) as bar:
        yield bar.update


def main() -> None:
    cli(prog_name="carma")

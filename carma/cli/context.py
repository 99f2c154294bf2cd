"""What every command shares: the options every command has, CARMA's error handling, the
store the command works on, JSON arguments, and progress bars."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

import carma
from carma import config
from carma.domain import CarmaError, InvalidInput
from carma.home import Home
from carma.lines import parse_json
from carma.recovery import log_state


def embedder_named(name: str | None) -> carma.Embedder | None:
    """The embedder chosen by --embedder (else $CARMA_EMBEDDER); None: the store's own (the
    default model for a new store)."""
    name = config.embedder_name(name)
    if name is None:
        return None
    return carma.HashingEmbedder() if name == "hashing" else carma.SentenceTransformerEmbedder()


class Context:
    def __init__(
        self, home: str | None, as_json: bool, embedder: str | None, database_url: str | None = None
    ):
        self.home = home
        self.as_json = as_json
        self.embedder_name = embedder
        self.database_url = database_url

    def open_store(self) -> carma.Memory:
        return carma.open(
            self.home, embedder=embedder_named(self.embedder_name), database_url=self.database_url
        )

    @contextmanager
    def memory(self, create: bool = False) -> Iterator[carma.Memory]:
        """The store at --home; only commands that write create one where there is none."""
        if not create:
            self.home = str(resolve_existing_home(self.home, self.database_url))
        with self.open_store() as mem:
            yield mem

    def emit(self, data: Any, text: str | Callable[[], str]) -> None:
        if self.as_json:
            click.echo(json.dumps(plain(data), ensure_ascii=False))
        else:
            click.echo(text() if callable(text) else text)


def plain(data: Any) -> Any:
    if hasattr(data, "model_dump"):
        return data.model_dump(mode="json")
    if isinstance(data, list):
        return [plain(d) for d in data]
    if isinstance(data, dict):
        return {k: plain(v) for k, v in data.items()}
    return data


def command(group: click.Group, name: str, **kwargs: Any):
    """A command with the options every command has, and CARMA's error handling."""

    def decorate(fn: Callable[..., Any]) -> click.Command:
        @group.command(name, **kwargs)
        @click.option(
            "--home",
            type=str,
            default=None,
            help="Store folder (default $CARMA_HOME, else ./.carma).",
        )
        @click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
        @click.option(
            "--embedder",
            type=click.Choice(config.EMBEDDERS),
            default=None,
            help="minilm: all-MiniLM-L6-v2 (semantic). hashing: lexical, no model. "
            "Default: $CARMA_EMBEDDER, else the store's own; minilm for a new store.",
        )
        @click.option(
            "--database-url",
            default=None,
            metavar="URL",
            help="Keep the log in PostgreSQL, shared with other processes "
            "(postgresql://user:password@host:5432/dbname[?schema=name]; "
            "default $CARMA_DATABASE_URL for a new home). The home then holds "
            "this process's projections of it.",
        )
        @functools.wraps(fn)
        def wrapper(
            home: str | None,
            as_json: bool,
            embedder: str | None,
            database_url: str | None,
            **params: Any,
        ) -> None:
            ctx = Context(home, as_json, embedder, database_url)
            try:
                fn(ctx, **params)
            except CarmaError as exc:
                click.echo(f"error: {exc}", err=True)
                sys.exit(exc.exit_code)
            except BrokenPipeError:
                sys.stderr.close()  # the reader went away (| head): not an error
            except UnicodeDecodeError as exc:
                click.echo(
                    f"error: the input is not UTF-8 text ({exc.reason} at byte {exc.start})",
                    err=True,
                )
                sys.exit(2)
            except OSError as exc:  # an output file or a folder the command itself writes
                click.echo(
                    f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True
                )
                sys.exit(1)

        return wrapper

    return decorate


def parse_json_option(value: str | None, what: str) -> Any:
    """An option's JSON value (None when not given); InvalidInput naming the option."""
    return None if value is None else parse_json(value, what)


def calibration_progress() -> Callable[[str, int, int], None]:
    """One line on stderr per namespace, rewritten in place (only on a terminal)."""
    if not sys.stderr.isatty():
        return lambda *_: None

    def show(namespace: str, measured: int, of: int) -> None:
        click.echo(
            f"\rcalibrating {namespace}: {measured}/{of}", file=sys.stderr, nl=measured >= of
        )

    return show


def resolve_existing_home(home: str | None, database_url: str | None = None) -> Path:
    """The home of an existing store: its own SQLite log, or a shared log in PostgreSQL
    (which a new home joins: its projections are built from the log)."""
    path = config.home_path(home)
    if Home(path).holds_store or log_state(Home(path)).fault is not None:
        return path  # a store, or what survives of one whose log is lost (opening says so)
    database = config.database_for(Home(path), database_url)
    if database is None or not database.has_log():
        raise InvalidInput(
            f"no store at {path}" + ("" if database is None else f" nor in {database.redacted}")
        )
    return path


@contextmanager
def progress_bar(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield lambda _n: None
        return
    with click.progressbar(
        length=max(total, 0), label=label, file=sys.stderr, show_pos=True
    ) as bar:
        yield bar.update

"""The log in PostgreSQL, shared by many CARMA processes on many hosts
(`CARMA_DATABASE_URL` / `carma.open(database_url=)`): the `postgres` extra, and the only module
that imports its driver (psycopg).

The log is the `eventsourcing` library's own `eventsourcing.postgres` persistence; this module
holds what CARMA reads and writes beside it: the URL (whose password never appears in a
message), the recorder that chains each event it inserts, the raw reads that replay, the scrub
and audit need (`PostgresTables`), and the keys every process must share (`PostgresKeys`).

A home keeps the projections of one log. On PostgreSQL each process has a home of its own
(cache, vector index, health ledger), all following the one log in the database.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from uuid import UUID

import psycopg
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresFactory, PostgresProcessRecorder
from psycopg import sql

from carma.domain import InvalidInput, StorageError
from carma.log.chain import GENESIS, chain_links

# The library names its tables after the application ("carma"): carma_events,
# carma_snapshots, carma_tracking; CARMA's own sit beside them.
EVENTS, SNAPSHOTS, TRACKING = "carma_events", "carma_snapshots", "carma_tracking"
CHAIN, FRAGMENT_KEYS, CHAIN_KEY = "carma_event_chain", "carma_fragment_keys", "carma_chain_key"
FACTORY_TOPIC = "carma.log.postgres:LogPostgresFactory"  # the log's PERSISTENCE_MODULE
_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_SETTINGS = ("schema", "pool_size", "connect_timeout")


@dataclass(frozen=True)
class PostgresURL:
    """A parsed `postgresql://user:password@host:port/dbname?schema=name` URL."""

    user: str
    password: str
    host: str
    port: int
    dbname: str
    schema: str = "public"
    pool_size: int = 2
    connect_timeout: int = 10

    @classmethod
    def parse(cls, url: str) -> PostgresURL:
        if not isinstance(url, str) or not url.strip():
            raise InvalidInput("the database URL is empty")
        try:
            parts = urlsplit(url.strip())
            port = parts.port or 5432
        except ValueError:
            raise InvalidInput(f"not a database URL: {redact(url)}") from None
        if parts.scheme not in ("postgresql", "postgres"):
            raise InvalidInput(
                f"a database URL starts with postgresql://, not "
                f"{parts.scheme or 'nothing'}:// ({redact(url)})"
            )
        dbname = unquote(parts.path.lstrip("/"))
        if not parts.hostname or not dbname or not parts.username:
            raise InvalidInput(
                "a database URL names a user, a host and a database: "
                f"postgresql://user:password@host:5432/dbname ({redact(url)})"
            )
        query = parse_qs(parts.query, keep_blank_values=True)
        unknown = sorted(set(query) - set(_SETTINGS))
        if unknown:
            raise InvalidInput(
                f"unknown database URL setting(s): {', '.join(unknown)} "
                f"(known: {', '.join(_SETTINGS)})"
            )
        settings: dict[str, Any] = {}
        for name, values in query.items():
            value = values[-1]
            if name == "schema":
                if not _SCHEMA.fullmatch(value):
                    raise InvalidInput(f"schema {value!r}: lower-case letters, digits and _")
                settings[name] = value
            else:
                if not value.isdigit() or not 1 <= int(value) <= 1000:
                    raise InvalidInput(f"{name} is a whole number from 1 to 1000")
                settings[name] = int(value)
        return cls(
            user=unquote(parts.username),
            password=unquote(parts.password or ""),
            host=parts.hostname,
            port=port,
            dbname=dbname,
            **settings,
        )

    @property
    def redacted(self) -> str:
        """The URL as it may be shown: never the password."""
        secret = ":***" if self.password else ""
        return f"postgresql://{self.user}{secret}@{self.host}:{self.port}/{self.dbname}" + (
            "" if self.schema == "public" else f"?schema={self.schema}"
        )

    @property
    def place(self) -> dict[str, Any]:
        """Which log this is, as a home records it: no secret."""
        return {
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
            "schema": self.schema,
            "user": self.user,
        }

    def settings(self) -> dict[str, str]:
        """The `eventsourcing.postgres` settings of the log's application."""
        return {
            "PERSISTENCE_MODULE": FACTORY_TOPIC,
            "POSTGRES_DBNAME": self.dbname,
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_USER": self.user,
            "POSTGRES_PASSWORD": self.password,
            "POSTGRES_SCHEMA": self.schema,
            "POSTGRES_POOL_SIZE": str(self.pool_size),
            "POSTGRES_MAX_OVERFLOW": "6",
            "POSTGRES_CONNECT_TIMEOUT": str(self.connect_timeout),
            # Writers queue for the table lock that keeps positions in commit order.
            "POSTGRES_LOCK_TIMEOUT": "30",
            "POSTGRES_PRE_PING": "yes",  # a restarted server is reconnected to, not an error
            # CARMA chains each event in the inserting transaction: no database functions.
            "POSTGRES_ENABLE_DB_FUNCTIONS": "no",
        }

    def connect(self) -> Any:
        """A connection of its own, for what the library does not do (the schema)."""
        try:
            return psycopg.connect(
                dbname=self.dbname,
                host=self.host,
                port=self.port,
                user=self.user,
                password=self.password,
                connect_timeout=self.connect_timeout,
                autocommit=True,
            )
        except psycopg.Error as exc:
            raise StorageError(
                f"cannot reach the database at {self.redacted}: {_reason(exc, self.password)}"
            ) from None

    def has_log(self) -> bool:
        """Whether the schema holds a CARMA log with events (a new home may join it)."""
        with self.connect() as conn:
            found = conn.execute("SELECT to_regclass(%s)", [f"{self.schema}.{EVENTS}"]).fetchone()[
                0
            ]
            return (
                found is not None
                and conn.execute(
                    sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(
                        sql.Identifier(self.schema, EVENTS)
                    )
                ).fetchone()[0]
            )

    @contextmanager
    def setup_lock(self) -> Iterator[None]:
        """Held while a process creates the log's schema and tables: PostgreSQL's "IF NOT
        EXISTS" does not stop two processes that start at once from colliding ("tuple
        concurrently updated"), so they take turns (a session advisory lock)."""
        with self.connect() as conn:
            conn.execute("SELECT pg_advisory_lock(hashtext(%s))", [f"carma:{self.schema}"])
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", [f"carma:{self.schema}"])

    def create_schema(self) -> None:
        with self.connect() as conn:
            conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema))
            )


def redact(url: str) -> str:
    """A URL with any password replaced, for messages about a URL that did not parse."""
    return re.sub(r"(//[^/:@]*:)[^@/]*@", r"\1***@", str(url))


def _reason(exc: BaseException, password: str) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.replace(password, "***") if password else text


class LogPostgresFactory(PostgresFactory):
    """The library's PostgreSQL persistence, with the log's own recorder and raw reads."""

    def log_recorder(self) -> ChainedPostgresRecorder:
        return ChainedPostgresRecorder(
            self.datastore,
            events_table_name=EVENTS,
            tracking_table_name=TRACKING,
            chain_table_name=CHAIN,
        )

    def log_tables(self) -> PostgresTables:
        return PostgresTables(self.datastore)


class ChainedPostgresRecorder(PostgresProcessRecorder):
    """The library's PostgreSQL process recorder, which also chains each event it inserts.
    The chain is extended once the inserted events' positions are known, in the same
    transaction and under the table lock the library takes to keep positions in commit order:
    many processes writing at once extend one chain, in that order.

    Durability: a commit is the acknowledgement, so it must wait for the WAL to be flushed.
    Where the server or the role runs with `synchronous_commit = off`, the log's inserting
    transactions set it back to `on` for themselves (any other level is durable already)."""

    key: bytes = b""
    restore_synchronous_commit = False  # found off where the log connects: set on per write

    def __init__(
        self,
        datastore: Any,
        *,
        events_table_name: str,
        tracking_table_name: str,
        chain_table_name: str,
    ):
        super().__init__(
            datastore, events_table_name=events_table_name, tracking_table_name=tracking_table_name
        )
        self.chain_table = sql.Identifier(datastore.schema, chain_table_name)
        self.sql_create_statements.append(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (position bigint PRIMARY KEY, mac bytea NOT NULL)"
            ).format(self.chain_table)
        )

    def create_table(self) -> None:
        super().create_table()
        with self.datastore.transaction(commit=False) as curs:
            curs.execute("SHOW synchronous_commit")
            self.restore_synchronous_commit = curs.fetchone()["synchronous_commit"] == "off"

    def _fetch_ids_after_insert_events(
        self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        positions = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        if not stored_events:
            return positions
        if self.restore_synchronous_commit:
            curs.execute("SET LOCAL synchronous_commit TO on")
        if not self.key:
            raise StorageError(
                "the log's chain key is lost: it is kept in the database's "
                "carma_chain_key table; restore it from a backup"
            )
        curs.execute(
            sql.SQL("SELECT mac FROM {} ORDER BY position DESC LIMIT 1").format(self.chain_table)
        )
        row = curs.fetchone()
        curs.executemany(
            sql.SQL("INSERT INTO {} (position, mac) VALUES (%s, %s)").format(self.chain_table),
            chain_links(
                self.key, bytes(row["mac"]) if row else GENESIS, positions or [], stored_events
            ),
        )
        return positions


class PostgresTables:
    """The same reads of the PostgreSQL log (positions are notification ids: a sequence,
    which a rolled-back transaction leaves gaps in)."""

    def __init__(self, datastore: Any):
        self.datastore = datastore
        self.schema = datastore.schema

    def _rows(self, query: Any, params: list[Any]) -> list[tuple]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(query, params)
            return [tuple(_hex(v) for v in r.values()) for r in c.fetchall()]

    def _sql(self, text: str, *tables: str) -> Any:
        return sql.SQL(text).format(*(sql.Identifier(self.schema, t) for t in tables))

    def snapshots_and_events(self, uuids: list[UUID]) -> tuple[list[tuple], list[tuple]]:
        columns = "originator_id, originator_version, topic, state"
        return (
            self._rows(
                self._sql(
                    f"SELECT {columns} FROM {{}} WHERE originator_id ="
                    " ANY(%s) ORDER BY originator_id, originator_version DESC",
                    SNAPSHOTS,
                ),
                [uuids],
            ),
            self._rows(
                self._sql(
                    f"SELECT {columns} FROM {{}} WHERE originator_id ="
                    " ANY(%s) ORDER BY originator_id, originator_version",
                    EVENTS,
                ),
                [uuids],
            ),
        )

    def stored_at(self, uuid: UUID, version: int) -> list[tuple[str, bytes]]:
        return self._rows(
            self._sql(
                "SELECT topic, state FROM {} WHERE originator_id = %s AND originator_version = %s",
                EVENTS,
            ),
            [uuid, version],
        )

    def scan(self, after: int, limit: int, upto: int | None = None) -> list[tuple]:
        return self._rows(
            self._sql(
                "SELECT notification_id, originator_id, originator_version, topic, state FROM {}"
                " WHERE notification_id > %s AND notification_id <= %s"
                " ORDER BY notification_id LIMIT %s",
                EVENTS,
            ),
            [after, _up_to(upto), limit],
        )

    def chained(self) -> tuple[set[int], Iterator[tuple]]:
        positions = {r[0] for r in self._rows(self._sql("SELECT position FROM {}", CHAIN), [])}

        def rows() -> Iterator[tuple]:
            after = 0
            while True:
                page = self._rows(
                    self._sql(
                        "SELECT e.notification_id, e.originator_id, e.originator_version, e.topic,"
                        " e.state, c.mac FROM {} e LEFT JOIN {} c ON c.position = e.notification_id"
                        " WHERE e.notification_id > %s ORDER BY e.notification_id LIMIT 5000",
                        EVENTS,
                        CHAIN,
                    ),
                    [after],
                )
                yield from page
                if len(page) < 5000:
                    return
                after = page[-1][0]

        return positions, rows()

    def overwrite(self, uuid: UUID, version: int, state: bytes) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                self._sql(
                    "UPDATE {} SET state = %s WHERE originator_id = %s AND originator_version = %s",
                    EVENTS,
                ),
                [state, uuid, version],
            )


def _hex(value: Any) -> Any:
    return value.hex if isinstance(value, UUID) else value


# -- keys every process must share ---------------------------------------------------------------


class PostgresKeys:
    """On PostgreSQL, the per-fragment keys (crypto-shredding: see carma.log.keys) and the chain
    key live in the database, since every process that reads a fragment needs its key.
    PostgreSQL's own durability and replication keep them; a destroyed key is deleted in the
    same database as the events it sealed (VACUUM then reclaims its bytes)."""

    def __init__(self, datastore: Any):
        self.datastore = datastore
        self.schema = datastore.schema
        self._lock = threading.Lock()
        with datastore.transaction(commit=True) as c:
            c.execute(
                self._sql(
                    "CREATE TABLE IF NOT EXISTS {} (uuid text PRIMARY KEY, key bytea NOT NULL)",
                    FRAGMENT_KEYS,
                )
            )
            c.execute(
                self._sql(
                    "CREATE TABLE IF NOT EXISTS {} (id int PRIMARY KEY"
                    " CHECK (id = 1), key bytea NOT NULL)",
                    CHAIN_KEY,
                )
            )

    def _sql(self, text: str, *tables: str) -> Any:
        return sql.SQL(text).format(*(sql.Identifier(self.schema, t) for t in tables))

    # The chain's key: made by the first process, read by every other.
    def chain_key(self, create: bool) -> bytes | None:
        with self.datastore.transaction(commit=True) as c:
            if create:
                c.execute(
                    self._sql(
                        "INSERT INTO {} (id, key) VALUES (1, %s) ON CONFLICT (id) DO NOTHING",
                        CHAIN_KEY,
                    ),
                    [os.urandom(32)],
                )
            c.execute(self._sql("SELECT key FROM {} WHERE id = 1", CHAIN_KEY))
            row = c.fetchone()
        return bytes(row["key"]) if row else None

    # The FragmentKeys interface (carma.log.keys), on one shared table.
    def key_for(self, uuid: str, create: bool = False) -> bytes | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(self._sql("SELECT key FROM {} WHERE uuid = %s", FRAGMENT_KEYS), [uuid])
            row = c.fetchone()
        if row:
            return bytes(row["key"])
        if not create:
            return None
        self.create_many([uuid])
        return self.key_for(uuid)

    def keys_for(self, uuids: list[str]) -> dict[str, bytes | None]:
        found: dict[str, bytes] = {}
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                self._sql("SELECT uuid, key FROM {} WHERE uuid = ANY(%s)", FRAGMENT_KEYS), [uuids]
            )
            found.update((r["uuid"], bytes(r["key"])) for r in c.fetchall())
        return {u: found.get(u) for u in uuids}

    def create_many(self, uuids: list[str]) -> None:
        if uuids:
            self._insert([(u, os.urandom(32)) for u in uuids])

    def adopt(self, uuid: str, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("a fragment key has 32 bytes")
        self._insert([(uuid, key)])

    def _insert(self, rows: list[tuple[str, bytes]]) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.executemany(
                self._sql(
                    "INSERT INTO {} (uuid, key) VALUES (%s, %s) ON CONFLICT (uuid) DO NOTHING",
                    FRAGMENT_KEYS,
                ),
                rows,
            )

    def destroy(self, uuid: str) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(self._sql("DELETE FROM {} WHERE uuid = %s", FRAGMENT_KEYS), [uuid])
        if self.key_for(uuid) is not None:
            raise StorageError("a fragment key could not be destroyed")

    def all(self) -> dict[str, bytes]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(self._sql("SELECT uuid, key FROM {}", FRAGMENT_KEYS))
            return {r["uuid"]: bytes(r["key"]) for r in c.fetchall()}

    def restore_copies(self) -> int:
        return 0  # one copy, kept by the database (its replicas are its own business)

    def close(self) -> None:
        pass  # the log's connection pool is closed with the log


def _up_to(upto: int | None) -> int:
    """A scan's upper bound: positions are 64-bit integers in both dialects."""
    return 2**63 - 1 if upto is None else upto

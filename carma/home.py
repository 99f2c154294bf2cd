"""A store's home: the folder that holds its log (unless the log is shared in PostgreSQL) and
this process's projections of it. This module owns every name in it:

    events.sqlite         the log (SQLite), when the home keeps its own
    database.json         the PostgreSQL log the home follows instead (no secret), and the
                          name of the home's replica of it
    replica               in a replay of a shared log: the replica it was taken from
    cache/                one file per live fragment (FragmentCache)
    index/                the vector index (VectorIndex)
    ledger.sqlite         the health ledger (HealthLedger)
    keys/, keys.mirror/   the fragments' keys and the chain's key, in two copies
    access.sqlite         `carma serve`'s counters of each access key's use (the keys
                          themselves are in the log, as digests)
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from carma.domain import SOLE_REPLICA, InvalidInput, Replica

EVENTS = "events.sqlite"
BINDING = "database.json"
REPLICA = "replica"
CACHE = "cache"
INDEX = "index"
LEDGER = "ledger.sqlite"
KEYS, KEYS_MIRROR = "keys", "keys.mirror"
ACCESS = "access.sqlite"


@dataclass(frozen=True)
class Home:
    """The home at `path` (absolute), and the place of each of its files."""

    path: Path

    @property
    def events(self) -> Path:
        return self.path / EVENTS

    @property
    def cache(self) -> Path:
        return self.path / CACHE

    @property
    def index(self) -> Path:
        return self.path / INDEX

    @property
    def ledger(self) -> Path:
        return self.path / LEDGER

    @property
    def access(self) -> Path:
        return self.path / ACCESS

    @property
    def binding(self) -> Path:
        return self.path / BINDING

    @property
    def replica_file(self) -> Path:
        return self.path / REPLICA

    @property
    def key_folders(self) -> tuple[Path, Path]:
        """The two folders that hold a copy each of every key."""
        return self.path / KEYS, self.path / KEYS_MIRROR

    def key_copies(self, name: str) -> tuple[Path, Path]:
        """A key file's two copies."""
        return self.path / KEYS / name, self.path / KEYS_MIRROR / name

    @property
    def has_own_log(self) -> bool:
        """Whether the home keeps its log in its own SQLite file."""
        return self.events.exists()

    @property
    def holds_store(self) -> bool:
        """Whether a store lives here: its own log, or a binding to a shared one."""
        return self.events.is_file() or self.binding.is_file()

    def prepare(self) -> None:
        """Create the home with owner-only permissions; refuse a file or an unwritable folder."""
        if self.path.exists() and not self.path.is_dir():
            raise InvalidInput(f"home {self.path} exists and is not a folder")
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidInput(f"cannot create home {self.path}: {exc.strerror}") from None
        if not os.access(self.path, os.R_OK | os.W_OK | os.X_OK):
            raise InvalidInput(f"home {self.path} is not readable and writable by this user")

    def bind(self, place: dict[str, Any] | None, redacted: str = "") -> Replica:
        """A home follows one log for its whole life: a home with a SQLite log cannot be
        pointed at PostgreSQL, nor one that follows a PostgreSQL log at another database.
        `place`: which PostgreSQL log (host, port, dbname, schema, user; None: the home's own
        SQLite file). Returns the home's replica: the unnamed one of a SQLite store, or on a
        shared log a name of its own (made once, kept in the binding), under which its
        copies' findings are recorded."""
        if place is None:
            if self.binding.is_file():
                bound = json.loads(self.binding.read_text())
                raise InvalidInput(
                    f"the store at {self.path} keeps its log in PostgreSQL "
                    f"({bound['user']}@{bound['host']}:{bound['port']}/{bound['dbname']}, "
                    f"schema {bound['schema']}): give its URL "
                    "(CARMA_DATABASE_URL or --database-url)"
                )
            # A replay of a shared log reads it as its replica did.
            named = self.replica_file
            return Replica(named.read_text().strip()) if named.is_file() else SOLE_REPLICA
        if self.has_own_log:
            raise InvalidInput(
                f"the store at {self.path} keeps its log in its own SQLite file; "
                "a database URL cannot move it (export it, then import it into "
                "a store on PostgreSQL)"
            )
        if self.binding.is_file():
            bound = json.loads(self.binding.read_text())
            replica = bound.pop("replica", "")
            if bound != place:
                raise InvalidInput(
                    f"the store at {self.path} follows another log ({bound['host']}:"
                    f"{bound['port']}/{bound['dbname']}, schema {bound['schema']}), not "
                    f"{redacted}: give each log its own home"
                )
            return Replica(replica)
        host = re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().lower()).strip("-")[:24]
        replica = Replica(f"{host or 'host'}-{secrets.token_hex(4)}")
        temporary = self.binding.with_suffix(".tmp")
        temporary.write_text(json.dumps({**place, "replica": replica.name}, indent=2) + "\n")
        os.replace(temporary, self.binding)
        return replica

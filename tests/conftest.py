import hashlib
import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from uuid import UUID

import pytest
from hypothesis import HealthCheck, settings

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.pop("CARMA_HOME", None)
os.environ.pop("CARMA_EMBEDDER", None)
os.environ.pop("CARMA_DATABASE_URL", None)  # each test says which log it wants (see below)

# CI runs the default profile; `pytest --hypothesis-profile=long` runs 25x more examples.
_RELAXED = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture]
settings.register_profile(
    "default",
    max_examples=40,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=_RELAXED,
)
settings.register_profile(
    "long", max_examples=1000, stateful_step_count=80, deadline=None, suppress_health_check=_RELAXED
)
# In CI the same examples every run (hypothesis's own "ci" profile would replace ours).
settings.register_profile(
    "ci", parent=settings.get_profile("default"), derandomize=True, database=None
)
settings.load_profile("ci" if os.environ.get("CI") else "default")

import carma  # noqa: E402
import carma.config  # noqa: E402
from carma.embedding import HashingEmbedder  # noqa: E402
from carma.home import Home  # noqa: E402

# -- the backend: every test of these suites runs on a SQLite log and on a PostgreSQL one --------
#
# On PostgreSQL each home a test opens without a database URL gets a fresh schema of its own
# (t_<hash of the home's path>), so two homes are two stores, as two SQLite homes are, and the
# same home opened twice is the same store. Schemas are dropped when the test ends.

BACKEND_SUITES = ("integration", "property", "reliability")
TEST_DATABASE_VARIABLE = "CARMA_TEST_DATABASE_URL"
REQUIRE_VARIABLE = "CARMA_REQUIRE_POSTGRES"
_SALT = secrets.token_hex(4)  # a schema name is never reused from an earlier session
_schemas: set[str] = set()  # created (or about to be) by this session, not yet dropped


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "sqlite_only(reason): the test is about the SQLite file itself; it does not "
        "run on PostgreSQL",
    )
    config.addinivalue_line(
        "markers",
        "postgres_only(reason): the test is about PostgreSQL itself; it does not run on SQLite",
    )
    config.addinivalue_line(
        "markers",
        "postgres_xfail(reason): a known CARMA bug on PostgreSQL; the postgres run "
        "is xfail(strict=True)",
    )


def pytest_generate_tests(metafunc):
    if "backend" not in metafunc.fixturenames:
        return
    suite = Path(str(metafunc.definition.path)).relative_to(Path(__file__).parent).parts[0]
    if suite not in BACKEND_SUITES:
        return
    postgres: Any = "postgres"
    # The real model's tests stay on SQLite, as tests/realmodel does: the model is what they test.
    if metafunc.definition.get_closest_marker(
        "sqlite_only"
    ) or metafunc.definition.get_closest_marker("realmodel"):
        backends = ["sqlite"]
    elif metafunc.definition.get_closest_marker("postgres_only"):
        backends = ["postgres"]
    else:
        xfail = metafunc.definition.get_closest_marker("postgres_xfail")
        if xfail:
            postgres = pytest.param(
                "postgres",
                marks=pytest.mark.xfail(
                    strict=True, reason=xfail.kwargs.get("reason") or xfail.args[0]
                ),
            )
        backends = ["sqlite", postgres]
    metafunc.parametrize("backend", backends, indirect=True, scope="module")


def _schema_for(home: Path) -> str:
    return "t_" + hashlib.sha1(f"{_SALT}:{home}".encode()).hexdigest()[:16]


def _resolved(home: str | os.PathLike[str]) -> Path:
    return Path(home).expanduser().resolve()


class Backend:
    """Which log the test's stores keep: "sqlite" (the home's own file) or "postgres"."""

    missing: str | None = None  # why a required PostgreSQL server is not there

    def __init__(self, name: str, url: str | None = None):
        self.name = name
        parts = urlsplit(url or "")
        self.base_url = urlunsplit(parts._replace(query="")) if url else None  # for psycopg
        # CARMA's own settings in the URL (pool_size, ...) go with every store's URL.
        self.settings = {k: v for k, v in parse_qsl(parts.query) if k != "schema"}

    def __repr__(self) -> str:
        return self.name

    @property
    def postgres(self) -> bool:
        return self.name == "postgres"

    def url_for(self, home: str | os.PathLike[str]) -> str | None:
        """The database URL of a home's log (None: its SQLite file). On PostgreSQL a home
        bound to a schema keeps it (a copied home follows the same log)."""
        if not self.postgres:
            return None
        home = _resolved(home)
        binding = home / "database.json"
        if binding.is_file():
            schema = json.loads(binding.read_text())["schema"]
        else:
            schema = _schema_for(home)
        _schemas.add(schema)
        return f"{self.base_url}?{urlencode({**self.settings, 'schema': schema})}"

    def env(self, home: str | os.PathLike[str]) -> dict[str, str]:
        """The environment for a child process that opens `home` (tests/reliability)."""
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        url = self.url_for(home)
        if url is not None:
            env["CARMA_DATABASE_URL"] = url
        return env

    def database_for(self, original: Any) -> Any:
        def database_for(home: Home, url: str | None):
            if url is None and not home.has_own_log:
                schema = _schema_for(home.path)
                if schema in _schemas and not home.binding.is_file():
                    _drop([schema], self.base_url)  # a new store where a removed one was
                url = self.url_for(home.path)
            return original(home, url)

        return database_for


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """A PostgreSQL run that is required (CARMA_REQUIRE_POSTGRES=1) and has no server fails,
    as a test, instead of being skipped."""
    chosen = pyfuncitem.funcargs.get("backend")
    if isinstance(chosen, Backend) and chosen.missing:
        pytest.fail(chosen.missing, pytrace=False)


def _drop(schemas, base_url: str | None) -> None:
    if not schemas or base_url is None:
        return
    import psycopg
    from psycopg import sql

    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '20s'")
        for schema in sorted(schemas):
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
            _schemas.discard(schema)


@pytest.fixture(scope="module", autouse=True)
def backend(request) -> Iterator[Backend]:
    name = getattr(request, "param", "sqlite")
    if name == "sqlite":
        yield Backend("sqlite")
        return
    url = os.environ.get(TEST_DATABASE_VARIABLE)
    if not url:
        message = (
            f"{TEST_DATABASE_VARIABLE} is not set: start a throwaway server with "
            f'`eval "$(.ci/postgres start)"`'
        )
        if os.environ.get(REQUIRE_VARIABLE) != "1":
            pytest.skip(message)
        unavailable = Backend("postgres")
        unavailable.missing = f"{REQUIRE_VARIABLE}=1 but {message}"
        yield unavailable  # each test fails, in pytest_pyfunc_call
        return
    chosen = Backend("postgres", url)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(carma.config, "database_for", chosen.database_for(carma.config.database_for))
        yield chosen
        _drop(set(_schemas), chosen.base_url)


@pytest.fixture(autouse=True)
def _schemas_of_the_test(backend: Backend) -> Iterator[None]:
    """Every schema a test created is dropped when it ends (its stores are closed by then);
    a module's own store keeps its schema until the module ends."""
    before = set(_schemas)
    yield
    if backend.postgres:
        _drop(_schemas - before, backend.base_url)


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def embedder() -> HashingEmbedder:
    return HashingEmbedder(dimension=64)


@pytest.fixture
def mem(home: Path, embedder: HashingEmbedder):
    with carma.open(home, embedder=embedder) as m:
        yield m


# -- the stored log, on either backend ----------------------------------------------------------


@contextmanager
def raw_log(target: Any) -> Iterator[Any]:
    """The log of an open store (a Memory), or of the store at a home path, opened for raw
    reads and writes only: `.tables` (carma.log.postgres) and `.position()`. None: no store."""
    if hasattr(target, "log"):
        yield target.log
        return
    home = _resolved(target)
    if not (home / "events.sqlite").exists() and not (home / "database.json").is_file():
        yield None
        return
    from carma.log import CHAIN_KEY_SETTING, MemoryLog
    from carma.log.sqlite import FACTORY_TOPIC

    database = carma.config.database_for(Home(home), None)
    persistence = (
        database.settings()
        if database is not None
        else {
            "PERSISTENCE_MODULE": FACTORY_TOPIC,
            "SQLITE_DBNAME": str(home / "events.sqlite"),
            "SQLITE_LOCK_TIMEOUT": "30",
        }
    )
    # No keys, no cipher: nothing is decoded, only stored rows are read and written.
    log = MemoryLog(
        env={
            **persistence,
            CHAIN_KEY_SETTING: "",
            "CIPHER_TOPIC": "",
            "CIPHER_KEY": "",
            "COMPRESSOR_TOPIC": "",
        }
    )
    try:
        yield log
    finally:
        log.close()


def stored_rows(target: Any) -> list[tuple]:
    """Every stored event in log order: (position, originator id hex, version, topic, state)."""
    with raw_log(target) as log:
        if log is None:
            return []
        rows: list[tuple] = []
        while True:
            page = log.tables.scan(rows[-1][0] if rows else 0, 5000)
            rows.extend((p, o, v, t, bytes(s)) for p, o, v, t, s in page)
            if len(page) < 5000:
                return rows


def log_length(target: Any) -> int:
    """How many events the store's log holds (a Memory, or a home path; 0 without a store).
    A count, not the last position: positions on PostgreSQL may have gaps."""
    return len(stored_rows(target))


def damage_event(target: Any, uuid: UUID | str, version: int, damage) -> bool:
    """Replace the stored bytes of one event with damage(its bytes), as bit rot or an
    attacker would; False if there is no such event."""
    uuid = uuid if isinstance(uuid, UUID) else UUID(str(uuid))
    with raw_log(target) as log:
        found = log.tables.stored_at(uuid, version)
        if not found:
            return False
        ((_, state),) = found
        log.tables.overwrite(uuid, version, bytes(damage(bytes(state))))
        return True


def snapshot_count(target: Any, uuid: UUID | str | None = None) -> int:
    """How many snapshots the log holds (of one aggregate, or in all)."""
    with raw_log(target) as log:
        tables = log.tables
        if uuid is not None:
            uuid = uuid if isinstance(uuid, UUID) else UUID(str(uuid))
            return len(tables.snapshots_and_events([uuid])[0])
        if hasattr(tables, "schema"):  # PostgreSQL
            from carma.log.postgres import SNAPSHOTS

            (row,) = tables._rows(tables._sql("SELECT count(*) FROM {}", SNAPSHOTS), [])
            return row[0]
        (row,) = tables._rows("SELECT count(*) FROM stored_snapshots", [])
        return row[0]


def stored_bytes(target: Any) -> bytes:
    """Every byte the log's database holds for the store: its SQLite files, or every value of
    every table in its PostgreSQL schema (for checks that a secret is nowhere in it)."""
    with raw_log(target) as log:
        if log is None:
            return b""
        tables = log.tables
        if not hasattr(tables, "schema"):
            return b"".join(p.read_bytes() for p in tables.path.parent.glob("events.sqlite*"))
        from psycopg import sql

        with tables.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                [tables.schema],
            )
            names = [r["table_name"] for r in c.fetchall()]
            chunks = []
            for name in names:
                c.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(tables.schema, name)))
                for row in c.fetchall():
                    for value in row.values():
                        chunks.append(
                            bytes(value)
                            if isinstance(value, (bytes, memoryview))
                            else str(value).encode()
                        )
        return b"".join(chunks)


def store_state(mem) -> dict:
    """Everything the projections hold, in a comparable form."""
    files = {p.relative_to(mem.cache.root).as_posix(): p.read_bytes() for p in mem.cache.files()}
    ids = sorted(int(i) for i in mem.index.ids())
    vectors = {i: mem.index.vector(i).tobytes() for i in ids}
    return {"ledger": mem.ledger.dump(), "cache": files, "index": vectors}


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 3 MiB file system (tmpfs), so that the disk really fills up."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for the disk-full test: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)

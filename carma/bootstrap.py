"""The composition root: the one place that wires infrastructure to CARMA's parts."""

from __future__ import annotations

import base64
import binascii
import os
import threading
from contextlib import nullcontext
from pathlib import Path

from eventsourcing.persistence import MapperDeserialisationError

from carma.chain import ChainKey
from carma.database import DATABASE_URL_VARIABLE, PostgresKeys, PostgresURL, bind_home
from carma.embedding import Embedder, SentenceTransformerEmbedder, embedder_for
from carma.keys import FragmentKeys
from carma.log import CHAIN_KEY_SETTING, MemoryLog
from domain import DIMENSION_MAX, InvalidInput
from healing import Calibrator, Dreamer, Healer, Reconstructor, Scrubber
from healing.calibrator import CALIBRATE_BUDGET_S
from healing.dreamer import REFINE_BUDGET_S
from healing.gradient import METHOD as GRADIENT
from healing.gradient import GradientReconstructor
from healing.reconstructor import METHOD as BLEND
from healing.scrubber import LOG_PASSES
from projections import FragmentCache, HealthLedger, ProjectionRunner, VectorIndex

DEFAULT_HOME = ".carma"


def resolve_home(path: str | os.PathLike[str] | None) -> Path:
    raw = path if path is not None else os.environ.get("CARMA_HOME") or DEFAULT_HOME
    if isinstance(raw, str) and ("\x00" in raw or not raw.strip()):
        raise InvalidInput(f"home {raw!r} is not a usable path")
    return Path(raw).expanduser().resolve()


def prepare_home(home: Path) -> None:
    """Create the home with owner-only permissions; refuse a file or an unwritable folder."""
    if home.exists() and not home.is_dir():
        raise InvalidInput(f"home {home} exists and is not a folder")
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInput(f"cannot create home {home}: {exc.strerror}") from None
    if not os.access(home, os.R_OK | os.W_OK | os.X_OK):
        raise InvalidInput(f"home {home} is not readable and writable by this user")


CIPHER_KEY_VARIABLE = "CARMA_CIPHER_KEY"
RECONSTRUCTOR_VARIABLE = "CARMA_RECONSTRUCTOR"
RECONSTRUCTORS = (BLEND, GRADIENT)


def reconstructor_for(name: str | None, embedder: Embedder) -> Reconstructor:
    """The semantic reconstructor by name (default $CARMA_RECONSTRUCTOR, else the readable
    neighbour blend); the gradient-guided search needs a transformer to differentiate."""
    name = name or os.environ.get(RECONSTRUCTOR_VARIABLE) or BLEND
    if name == BLEND:
        return Reconstructor(embedder.embed)
    if name == GRADIENT:
        token_model = getattr(embedder, "token_model", None)
        if token_model is None:
            raise InvalidInput(f"the {GRADIENT} reconstructor needs a transformer model "
                               f"embedder (the default one); {embedder.name} has no gradient")
        return GradientReconstructor(embedder.embed, token_model)
    raise InvalidInput(f"unknown reconstructor {name!r}; known: {', '.join(RECONSTRUCTORS)}")


def cipher_key_from(value: str | None) -> str | None:
    """The key for encryption at rest: base64 of 16, 24 or 32 bytes, or None for none."""
    if value is None:
        value = os.environ.get(CIPHER_KEY_VARIABLE) or None
    if value is None:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) not in (16, 24, 32):
        raise InvalidInput(f"{CIPHER_KEY_VARIABLE} must be base64 of 16, 24 or 32 random bytes "
                           "(e.g. `python -c \"import os,base64;print(base64.b64encode("
                           "os.urandom(32)).decode())\"`)")
    return value


def database_for(home: Path, url: str | None) -> PostgresURL | None:
    """The PostgreSQL log asked for (the argument, else $CARMA_DATABASE_URL), or None for
    the home's own SQLite file. The environment's URL is a default for new stores: a home
    that holds a SQLite log keeps it (a URL given outright for it is refused). An empty
    URL asks for the home's own SQLite file whatever the environment says."""
    if url == "":
        return None
    if url is None:
        url = os.environ.get(DATABASE_URL_VARIABLE) or None
        if url is not None and (home / "events.sqlite").exists():
            return None
    return None if url is None else PostgresURL.parse(url)


def open_log(home: Path, cipher_key: str | None = None,
             database: PostgresURL | None = None) -> tuple[MemoryLog, bytes | None]:
    """The log, with its chain key: a SQLite file in the home, or the PostgreSQL database
    every process of the store shares (then its keys are shared there too)."""
    if database is None:
        # A new store gets a chain key; an existing one must still have one of its copies.
        chain_key = ChainKey(home).load(create=not (home / "events.sqlite").exists())
        persistence = {"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                       "SQLITE_DBNAME": str(home / "events.sqlite"),
                       "SQLITE_LOCK_TIMEOUT": "30"}
    else:
        chain_key = None  # kept in the database: read once its tables exist
        persistence = database.settings()
    log = MemoryLog(env={
        **persistence,
        CHAIN_KEY_SETTING: chain_key.hex() if chain_key else "",
        # The library's own AES-GCM cipher when a key is given; never settings that happen
        # to be in the process's environment for another application.
        "CIPHER_TOPIC": "eventsourcing.cryptography:AESCipher" if cipher_key else "",
        "CIPHER_KEY": cipher_key or "",
        "COMPRESSOR_TOPIC": "",
    })
    # Attached before the first read: a sealed body read without its key reads as forgotten.
    if database is None:
        log.mapper.keys = FragmentKeys(home)
    else:
        keys = PostgresKeys(log.recorder.datastore)  # type: ignore[attr-defined]
        log.mapper.keys = keys  # type: ignore[assignment]
        # The first process makes the key; a log with events and no key has lost it.
        chain_key = keys.chain_key(create=log.position() == 0)
        log.recorder.key = chain_key or b""  # type: ignore[attr-defined]
    return log, chain_key


def default_embedder() -> Embedder:
    return SentenceTransformerEmbedder()


def bootstrap(home: Path, embedder: Embedder | None = None, dream_every: float | None = None,
              new_projections: bool = False, cipher_key: str | None = None,
              refine_budget: float = REFINE_BUDGET_S,
              calibrate_budget: float = CALIBRATE_BUDGET_S, reconstructor: str | None = None,
              database: PostgresURL | None = None, log_passes: int = LOG_PASSES):
    """Wire a Memory over the home: log, projections, healing and embedder. `database`: a
    PostgreSQL log shared with other processes (the home then holds this process's
    projections of it); None: the home's own SQLite log."""
    from carma.memory import Memory

    # Processes that start at once on one PostgreSQL log create its tables in turn; an
    # unreachable server says so here, before anything changes.
    with database.setup_lock() if database is not None else nullcontext():
        if database is not None:
            database.create_schema()
        prepare_home(home)
        replica = bind_home(home, database)
        log, chain_key = open_log(home, cipher_key, database)
    try:
        try:
            profile = log.profile()  # the first read: it tells a wrong key at once
        except MapperDeserialisationError:
            raise InvalidInput(
                "cannot read this store's log: it is encrypted and "
                f"{CIPHER_KEY_VARIABLE} is not set" if cipher_key is None else
                f"cannot read this store's log with this {CIPHER_KEY_VARIABLE}: the key is "
                "wrong, or the store is not encrypted") from None
        if embedder is None:  # the store's own, where CARMA knows it; else the default
            embedder = (profile and embedder_for(profile.model, profile.dimension)) \
                or default_embedder()
        if not (isinstance(embedder.dimension, int) and 0 < embedder.dimension <= DIMENSION_MAX):
            raise InvalidInput(f"an embedder's dimension must be 1 to {DIMENSION_MAX}, not "
                               f"{embedder.dimension!r}")
        log.check_profile(embedder.name, embedder.dimension)
        cache = FragmentCache(home / "cache")
        index = VectorIndex(home / "index", embedder.dimension)
        ledger = HealthLedger(home / "ledger.sqlite", replica)
    except BaseException:
        log.close()
        raise
    runner = ProjectionRunner(log.read, log.position, [ledger, cache, index])
    lock = threading.RLock()  # guards the in-memory index and the ledger's connection

    def catch_up() -> int:
        with lock:
            return runner.catch_up()

    def health() -> dict:
        with lock:
            return ledger.health()

    scrubber = Scrubber(cache, index, ledger, lock, log.position, refresh=catch_up,
                        unreadable=log.unreadable, answered=log.answered_damage,
                        log_passes=log_passes)
    try:
        rebuilds = reconstructor_for(reconstructor, embedder)
    except BaseException:
        ledger.close()
        log.close()
        raise
    healer = Healer(log, cache, index, ledger, lock, rebuilds, after_batch=catch_up,
                    replica=replica)
    dreamer = Dreamer(log, scrubber, healer, catch_up, health,
                      restore_keys=log.mapper.keys.restore_copies,
                      refine_budget_s=refine_budget,
                      calibrator=Calibrator(log, healer, ledger, lock),
                      calibrate_budget_s=calibrate_budget)
    try:
        memory = Memory(home=home, log=log, embedder=embedder, cache=cache, index=index,
                        ledger=ledger, runner=runner, dreamer=dreamer, lock=lock,
                        chain_key=chain_key, new_projections=new_projections,
                        cipher_key=cipher_key, database=database)
    except BaseException:
        ledger.close()
        log.close()
        raise
    if dream_every is not None:
        memory.start_dreaming(dream_every)
    return memory

"""The composition root: the one place that wires infrastructure to CARMA's parts."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from carma.chain import ChainKey
from carma.embedding import Embedder, SentenceTransformerEmbedder, embedder_for
from carma.log import CHAIN_KEY_SETTING, MemoryLog
from domain import DIMENSION_MAX, InvalidInput
from healing import Dreamer, Healer, Scrubber
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


def open_log(home: Path, chain_key: bytes | None) -> MemoryLog:
    return MemoryLog(env={
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(home / "events.sqlite"),
        "SQLITE_LOCK_TIMEOUT": "30",
        CHAIN_KEY_SETTING: chain_key.hex() if chain_key else "",
    })


def default_embedder() -> Embedder:
    return SentenceTransformerEmbedder()


def bootstrap(home: Path, embedder: Embedder | None = None, dream_every: float | None = None,
              new_projections: bool = False):
    """Wire a Memory over the home: log, projections, healing and embedder."""
    from carma.memory import Memory

    prepare_home(home)
    # A new store gets a chain key; an existing one must still have one of its two copies.
    chain_key = ChainKey(home).load(create=not (home / "events.sqlite").exists())
    log = open_log(home, chain_key)
    try:
        if embedder is None:  # the store's own, where CARMA knows it; else the default
            profile = log.profile()
            embedder = (profile and embedder_for(profile.model, profile.dimension)) \
                or default_embedder()
        if not (isinstance(embedder.dimension, int) and 0 < embedder.dimension <= DIMENSION_MAX):
            raise InvalidInput(f"an embedder's dimension must be 1 to {DIMENSION_MAX}, not "
                               f"{embedder.dimension!r}")
        log.check_profile(embedder.name, embedder.dimension)
        cache = FragmentCache(home / "cache")
        index = VectorIndex(home / "index", embedder.dimension)
        ledger = HealthLedger(home / "ledger.sqlite")
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

    scrubber = Scrubber(cache, index, ledger, lock, log.position, refresh=catch_up)
    healer = Healer(log, cache, index, lock, after_batch=catch_up)
    dreamer = Dreamer(log, scrubber, healer, lock, catch_up, health)
    try:
        memory = Memory(home=home, log=log, embedder=embedder, cache=cache, index=index,
                        ledger=ledger, runner=runner, dreamer=dreamer, lock=lock,
                        chain_key=chain_key, new_projections=new_projections)
    except BaseException:
        ledger.close()
        log.close()
        raise
    if dream_every is not None:
        memory.start_dreaming(dream_every)
    return memory

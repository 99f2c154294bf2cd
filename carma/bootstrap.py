"""The composition root: the one place that wires infrastructure to CARMA's parts."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from contextlib import nullcontext
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from eventsourcing.persistence import MapperDeserialisationError

from carma import allocator, config, recovery
from carma.config import CIPHER_KEY_VARIABLE, Options
from carma.copies import HomeFiles, open_ledger
from carma.domain import DIMENSION_MAX, InvalidInput, StoreProfile
from carma.embedding import Embedder, SentenceTransformerEmbedder, VectorsOnly, embedder_for
from carma.healing import Calibrator, Dreamer, Healer, Reconstructor, Scrubber
from carma.healing.automatic import METHOD as AUTOMATIC
from carma.healing.automatic import AutomaticReconstructor
from carma.healing.calibrator import CALIBRATE_BUDGET_S
from carma.healing.dreamer import REFINE_BUDGET_S
from carma.healing.gradient import METHOD as GRADIENT
from carma.healing.gradient import GradientReconstructor
from carma.healing.reconstructor import METHOD as BLEND
from carma.healing.scrubber import LOG_PASSES
from carma.home import Home
from carma.log import CHAIN_KEY_SETTING, MemoryLog, sqlite, storage_errors
from carma.log.chain import ChainKey
from carma.log.keys import FragmentKeys
from carma.memory import Memory
from carma.projections import FragmentCache, ProjectionRunner, VectorIndex
from carma.projections.index import APPROXIMATE_ABOVE

if TYPE_CHECKING:
    from carma.log.postgres import PostgresURL

RECONSTRUCTORS = (AUTOMATIC, BLEND, GRADIENT)


def reconstructor_for(name: str | None, embedder: Embedder) -> Reconstructor:
    """The semantic reconstructor by name (None: automatic). The automatic one chooses per
    fragment between the neighbour blend and the gradient-guided search, which needs a
    transformer to differentiate: with an embedder that has none, the blend is the only
    method there is, and automatic means it."""
    name = name or AUTOMATIC
    token_model = getattr(embedder, "token_model", None)
    if name == AUTOMATIC:
        if token_model is None:
            return Reconstructor(embedder.embed)
        return AutomaticReconstructor(embedder.embed, token_model)
    if name == BLEND:
        return Reconstructor(embedder.embed)
    if name == GRADIENT:
        if token_model is None:
            raise InvalidInput(
                f"the {GRADIENT} reconstructor needs a transformer model "
                f"embedder (the default one); {embedder.name} has no gradient"
            )
        return GradientReconstructor(embedder.embed, token_model)
    raise InvalidInput(f"unknown reconstructor {name!r}; known: {', '.join(RECONSTRUCTORS)}")


# A calibration of each reconstruction method measured on public text that ships with the
# package (`carma bench reconstruct --setting shipped`, docs/reconstruction.md): a namespace
# with no calibration of its own yet, or too small for one, reads its expected recall there.
SHIPPED_CALIBRATION = "data/shipped-calibration.json"


def shipped_calibration(embedder: Embedder, reconstructor: Reconstructor | None) -> dict | None:
    """The shipped calibration for this model and reconstruction method, if there is one
    (the calibrator also checks it describes the reconstructor's budgets as they are)."""
    if reconstructor is None:
        return None
    source = resources.files("carma").joinpath(SHIPPED_CALIBRATION)
    if not source.is_file():
        return None
    for entry in json.loads(source.read_text(encoding="utf-8"))["calibrations"]:
        if entry["model"] == embedder.name and entry["method"] == reconstructor.method:
            return entry
    return None


def open_log(
    home: Home, cipher_key: str | None = None, database: PostgresURL | None = None
) -> tuple[MemoryLog, bytes | None]:
    """The log, with its chain key: a SQLite file in the home, or the PostgreSQL database
    every process of the store shares (then its keys are shared there too)."""
    if database is None:
        # A new store gets a chain key; an existing one must still have one of its copies.
        chain_key = ChainKey(home.key_copies("chain.key")).load(create=not home.has_own_log)
        persistence = {
            "PERSISTENCE_MODULE": sqlite.FACTORY_TOPIC,
            "SQLITE_DBNAME": str(home.events),
            "SQLITE_LOCK_TIMEOUT": "30",
        }
    else:
        chain_key = None  # kept in the database: read once its tables exist
        persistence = database.settings()
    log = MemoryLog(
        env={
            **persistence,
            CHAIN_KEY_SETTING: chain_key.hex() if chain_key else "",
            # The library's own AES-GCM cipher when a key is given; never settings that happen
            # to be in the process's environment for another application.
            "CIPHER_TOPIC": "eventsourcing.cryptography:AESCipher" if cipher_key else "",
            "CIPHER_KEY": cipher_key or "",
            "COMPRESSOR_TOPIC": "",
        }
    )
    # Attached before the first read: a sealed body read without its key reads as forgotten.
    if database is None:
        log.mapper.keys = FragmentKeys(home.key_copies("fragments.sqlite"))
    else:
        keys = config.postgres().PostgresKeys(log.recorder.datastore)
        log.mapper.keys = keys
        # The first process makes the key; a log with events and no key has lost it.
        chain_key = keys.chain_key(create=log.position() == 0)
        log.recorder.key = chain_key or b""  # type: ignore[attr-defined]
    return log, chain_key


def default_embedder() -> Embedder:
    return SentenceTransformerEmbedder()


def _embedder(
    given: Embedder | None, profile: StoreProfile | None, dimension: int | None
) -> Embedder:
    """The embedder asked for; else the store's own (its model where CARMA has it, else none:
    its vectors are given); else, for a new store, no text model when only a dimension is
    given, the default model otherwise."""
    chosen = given
    if chosen is None and profile is not None:
        chosen = embedder_for(profile.model, profile.dimension)
    if chosen is None:
        chosen = VectorsOnly(dimension) if dimension is not None else default_embedder()
    if dimension is not None and chosen.dimension != dimension:
        raise InvalidInput(
            f"dimension={dimension} but the store's vectors are {chosen.dimension}-d"
            if given is None
            else f"dimension={dimension} but the embedder makes {chosen.dimension}-d vectors"
        )
    return chosen


def open_memory(
    path: str | Path | None,
    *,
    embedder: Embedder | None,
    cipher_key: str | None,
    reconstructor: str | None,
    database_url: str | None,
    options: Options,
) -> Memory:
    """`carma.open`: every argument checked (and the environment read) before anything
    changes, then the store wired."""
    # (the process's large blocks unmapped when freed: see carma.allocator)
    allocator.give_back_large_blocks()
    chosen = config.reconstructor(reconstructor, RECONSTRUCTORS)
    if chosen is not None and embedder is not None:
        reconstructor_for(chosen, embedder)  # a wrong pairing is refused before any change
    home = Home(config.home_path(path))
    key = config.cipher_key(cipher_key)
    database = config.database_for(home, database_url)
    with storage_errors(f"cannot open the store at {home.path}"):
        return bootstrap(
            home, embedder, options, cipher_key=key, reconstructor=chosen, database=database
        )


def bootstrap(
    home: Home,
    embedder: Embedder | None = None,
    options: Options | None = None,
    *,
    new_projections: bool = False,
    cipher_key: str | None = None,
    reconstructor: str | None = None,
    database: PostgresURL | None = None,
) -> Memory:
    """Wire a Memory over the home: log, projections, healing and embedder. `database`: a
    PostgreSQL log shared with other processes (the home then holds this process's
    projections of it); None: the home's own SQLite log."""
    options = options or Options()
    # Processes that start at once on one PostgreSQL log create its tables in turn; an
    # unreachable server says so here, before anything changes.
    with database.setup_lock() if database is not None else nullcontext():
        if database is not None:
            database.create_schema()
        home.prepare()
        if database is None and not home.binding.is_file():
            # A lost log is said so, before a new one is begun. A home bound to PostgreSQL
            # has no SQLite log to lose: opened without its URL, bind() below says so.
            recovery.check_log(home)
        replica = home.bind(
            None if database is None else database.place,
            "" if database is None else database.redacted,
        )
        log, chain_key = open_log(home, cipher_key, database)
    try:
        try:
            profile = log.profile()  # the first read: it tells a wrong key at once
        except MapperDeserialisationError:
            raise InvalidInput(
                "cannot read this store's log: it is encrypted and "
                f"{CIPHER_KEY_VARIABLE} is not set"
                if cipher_key is None
                else f"cannot read this store's log with this {CIPHER_KEY_VARIABLE}: the key is "
                "wrong, or the store is not encrypted"
            ) from None
        embedder = _embedder(embedder, profile, options.dimension)
        if not (isinstance(embedder.dimension, int) and 0 < embedder.dimension <= DIMENSION_MAX):
            raise InvalidInput(
                f"an embedder's dimension must be 1 to {DIMENSION_MAX}, not {embedder.dimension!r}"
            )
        log.check_profile(embedder.name, embedder.dimension)
        cache = FragmentCache(home.cache)
        index = VectorIndex(
            home.index,
            embedder.dimension,
            approximate_above=(
                APPROXIMATE_ABOVE
                if options.approximate_above is None
                else options.approximate_above
            ),
        )
        ledger, ledger_damage = open_ledger(home.ledger, replica)
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

    scrubber = Scrubber(
        cache,
        index,
        ledger,
        lock,
        log.position,
        refresh=catch_up,
        unreadable=log.unreadable,
        answered=log.answered_damage,
        log_passes=options.log_passes or LOG_PASSES,
        logged_embeddings=log.embeddings,
    )
    try:
        # Semantic reconstruction needs a text model; without one, bodies with no exact copy
        # left stay lost (and health says why).
        rebuilds = (
            None
            if isinstance(embedder, VectorsOnly)
            else reconstructor_for(reconstructor, embedder)
        )
    except BaseException:
        ledger.close()
        log.close()
        raise
    healer = Healer(
        log, cache, index, ledger, lock, rebuilds, after_batch=catch_up, replica=replica
    )
    files = HomeFiles(log, ledger, runner, lock, replica, catch_up)
    dreamer = Dreamer(
        log,
        scrubber,
        healer,
        catch_up,
        health,
        restore_keys=log.mapper.keys.restore_copies,
        refine_budget_s=_or(options.refine_budget, REFINE_BUDGET_S),
        calibrator=Calibrator(
            log, healer, ledger, lock, shipped=lambda: shipped_calibration(embedder, rebuilds)
        ),
        calibrate_budget_s=_or(options.calibrate_budget, CALIBRATE_BUDGET_S),
        files=files,
    )
    try:
        memory = Memory(
            home=home.path,
            log=log,
            embedder=embedder,
            cache=cache,
            index=index,
            ledger=ledger,
            runner=runner,
            dreamer=dreamer,
            lock=lock,
            chain_key=chain_key,
            new_projections=new_projections,
            database=database,
            open_replay=replay_opener(embedder, cipher_key, reconstructor),
        )
    except BaseException:
        ledger.close()
        log.close()
        raise
    files.note_opened_damaged(ledger_damage)
    if options.dream_every is not None:
        memory.start_dreaming(options.dream_every)
    return memory


def replay_opener(
    embedder: Embedder, cipher_key: str | None, reconstructor: str | None
) -> Callable[[Path], Memory]:
    """How a store opens the copy of its log that a replay made: its own home, the same
    embedder, key and reconstructor, projections built afresh."""

    def open_replay(target: Path) -> Memory:
        return bootstrap(
            Home(target),
            embedder,
            new_projections=True,
            cipher_key=cipher_key,
            reconstructor=reconstructor,
        )

    return open_replay


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def recover_store(
    path: str | Path | None, *, embedder: Embedder | None, cipher_key: str | None
) -> dict:
    """`carma.recover`: a new log for a home whose log is lost, from its surviving copies
    (carma.recovery), then its projections rebuilt from that log."""
    home = Home(config.home_path(path))
    key = config.cipher_key(cipher_key)
    embedder = embedder or default_embedder()
    header_dimension = recovery.survivors_dimension(home)
    if header_dimension not in (None, embedder.dimension):
        raise InvalidInput(
            f"the surviving index holds {header_dimension}-d vectors; {embedder.name} makes "
            f"{embedder.dimension}-d ones: give the embedder the store was made with"
        )
    with storage_errors(f"cannot recover the store at {home.path}"):
        report = recovery.recover(home, embedder, lambda h: open_log(h, key))
        with bootstrap(home, embedder, new_projections=True, cipher_key=key) as memory:
            memory.rebuild()
            report["live"] = memory.stats()["live"]
    return report

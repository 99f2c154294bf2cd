"""Every setting CARMA takes: the environment variables it reads (no other module reads one)
and the validation of every option of `carma.open`. A bad value is an InvalidInput naming it,
raised before anything changes."""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carma.domain import DIMENSION_MAX, InvalidInput
from carma.home import Home

if TYPE_CHECKING:
    from carma.log.postgres import PostgresURL

HOME_VARIABLE = "CARMA_HOME"
DATABASE_URL_VARIABLE = "CARMA_DATABASE_URL"
CIPHER_KEY_VARIABLE = "CARMA_CIPHER_KEY"
RECONSTRUCTOR_VARIABLE = "CARMA_RECONSTRUCTOR"
EMBEDDER_VARIABLE = "CARMA_EMBEDDER"

#: Every variable CARMA reads, and what it sets (docs/configuration.md explains each one).
ENVIRONMENT = {
    HOME_VARIABLE: "the store's folder when none is given (default ./.carma)",
    DATABASE_URL_VARIABLE: "a PostgreSQL log shared by many processes, for new homes",
    CIPHER_KEY_VARIABLE: "encrypt the log at rest (base64 of 16, 24 or 32 bytes)",
    RECONSTRUCTOR_VARIABLE: "how bodies with no exact copy left are rebuilt",
    EMBEDDER_VARIABLE: "the CLI's embedder for a new store: minilm or hashing",
}

DEFAULT_HOME = ".carma"
EMBEDDERS = ("minilm", "hashing")
BUDGET_MAX_S = 86_400
LOG_PASSES_MAX = 10_000


def _environment(name: str) -> str | None:
    return os.environ.get(name) or None


def home_path(path: str | os.PathLike[str] | None) -> Path:
    """The home asked for (the argument, else $CARMA_HOME, else ./.carma), absolute."""
    raw = path if path is not None else _environment(HOME_VARIABLE) or DEFAULT_HOME
    if isinstance(raw, str) and ("\x00" in raw or not raw.strip()):
        raise InvalidInput(f"home {raw!r} is not a usable path")
    if not isinstance(raw, (str, os.PathLike)):
        raise InvalidInput(f"home must be a path, not {type(raw).__name__}")
    return Path(raw).expanduser().resolve()


def cipher_key(value: str | None) -> str | None:
    """The key for encryption at rest (the argument, else $CARMA_CIPHER_KEY): base64 of 16,
    24 or 32 bytes, or None for none."""
    value = value if value is not None else _environment(CIPHER_KEY_VARIABLE)
    if value is None:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raw = b""
    if len(raw) not in (16, 24, 32):
        raise InvalidInput(
            f"{CIPHER_KEY_VARIABLE} must be base64 of 16, 24 or 32 random bytes "
            '(e.g. `python -c "import os,base64;print(base64.b64encode('
            'os.urandom(32)).decode())"`)'
        )
    return value


def database_for(home: Home, url: str | None) -> PostgresURL | None:
    """The PostgreSQL log asked for (the argument, else $CARMA_DATABASE_URL), or None for the
    home's own SQLite file. The environment's URL is a default for new stores: a home that
    holds a SQLite log keeps it (a URL given outright for it is refused). An empty URL asks
    for the home's own SQLite file whatever the environment says."""
    if url == "":
        return None
    if url is None:
        url = _environment(DATABASE_URL_VARIABLE)
        if url is not None and home.has_own_log:
            return None
    if url is None:
        return None
    return postgres().PostgresURL.parse(url)


def postgres() -> Any:
    """The PostgreSQL support (carma.log.postgres), or a clear error where the `postgres`
    extra is not installed."""
    try:
        import carma.log.postgres
    except ImportError as exc:
        raise InvalidInput(
            f"a PostgreSQL log needs the postgres extra ({exc.name} is not "
            "installed): pip install 'carma[postgres]'"
        ) from None
    return carma.log.postgres


def reconstructor(value: str | None, known: tuple[str, ...]) -> str | None:
    """The reconstructor asked for (the argument, else $CARMA_RECONSTRUCTOR), one of `known`,
    or None for the default."""
    chosen = value if value is not None else _environment(RECONSTRUCTOR_VARIABLE)
    if chosen is not None and chosen not in known:
        raise InvalidInput(f"unknown reconstructor {chosen!r}; known: {', '.join(known)}")
    return chosen


def embedder_name(value: str | None) -> str | None:
    """The CLI's embedder by name (the option, else $CARMA_EMBEDDER), or None for the
    store's own."""
    chosen = value if value is not None else _environment(EMBEDDER_VARIABLE)
    if chosen is not None and chosen not in EMBEDDERS:
        raise InvalidInput(f"unknown embedder {chosen!r}; known: {', '.join(EMBEDDERS)}")
    return chosen


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


@dataclass(frozen=True)
class Options:
    """The options of `carma.open`, each checked: None keeps its default."""

    dream_every: float | None = None
    refine_budget: float | None = None
    calibrate_budget: float | None = None
    log_passes: int | None = None
    dimension: int | None = None  # a store with no text model: its vectors are given
    approximate_above: int | None = None  # live fragments past which the HNSW graph answers

    def __post_init__(self) -> None:
        every = self.dream_every
        if every is not None and (not _is_number(every) or not every > 0):
            raise InvalidInput("dream_every must be a positive number of seconds")
        for name in ("refine_budget", "calibrate_budget"):
            budget = getattr(self, name)
            if budget is not None and (not _is_number(budget) or not 0 <= budget <= BUDGET_MAX_S):
                raise InvalidInput(f"{name} must be a number of seconds from 0 to {BUDGET_MAX_S}")
        passes = self.log_passes
        if passes is not None and (
            isinstance(passes, bool)
            or not isinstance(passes, int)
            or not 1 <= passes <= LOG_PASSES_MAX
        ):
            raise InvalidInput(
                f"log_passes must be a whole number of scrubs from 1 to {LOG_PASSES_MAX}"
            )
        dimension = self.dimension
        if dimension is not None and (
            isinstance(dimension, bool)
            or not isinstance(dimension, int)
            or not 1 <= dimension <= DIMENSION_MAX
        ):
            raise InvalidInput(f"dimension must be a whole number from 1 to {DIMENSION_MAX}")
        above = self.approximate_above
        if above is not None and (
            isinstance(above, bool) or not isinstance(above, int) or not 0 <= above <= 10**12
        ):
            raise InvalidInput("approximate_above must be a whole number of fragments, 0 or more")

    def given(self) -> dict[str, Any]:
        """The options set, by name."""
        return {k: v for k, v in vars(self).items() if v is not None}

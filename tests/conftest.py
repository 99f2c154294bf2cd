import os
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.pop("CARMA_HOME", None)
os.environ.pop("CARMA_EMBEDDER", None)

# CI runs the default profile; `pytest --hypothesis-profile=long` runs 25x more examples.
_RELAXED = [HealthCheck.too_slow, HealthCheck.filter_too_much,
            HealthCheck.function_scoped_fixture]
settings.register_profile("default", max_examples=40, stateful_step_count=40, deadline=None,
                          suppress_health_check=_RELAXED)
settings.register_profile("long", max_examples=1000, stateful_step_count=80, deadline=None,
                          suppress_health_check=_RELAXED)
# In CI the same examples every run (hypothesis's own "ci" profile would replace ours).
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True,
                          database=None)
settings.load_profile("ci" if os.environ.get("CI") else "default")

import carma  # noqa: E402
from carma.embedding import HashingEmbedder  # noqa: E402


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


def log_length(home: Path) -> int:
    """How many events the store's log holds, read with plain sqlite3."""
    path = home / "events.sqlite"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM stored_events").fetchone()[0]


def store_state(mem) -> dict:
    """Everything the projections hold, in a comparable form."""
    files = {
        p.relative_to(mem.cache.root).as_posix(): p.read_bytes() for p in mem.cache.files()
    }
    ids = sorted(int(i) for i in mem.index.ids())
    vectors = {i: mem.index.vector(i).tobytes() for i in ids}
    return {"ledger": mem.ledger.dump(), "cache": files, "index": vectors}

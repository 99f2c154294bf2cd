"""`make test` starts a throwaway PostgreSQL server for the shared-log suites when none is
given (.ci/with-postgres), and stops it when it ends; a server it did not start stays up."""

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    not list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")) or os.geteuid() != 0,
    reason="needs Debian's PostgreSQL packages and root (as CI has)",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _running(folder: Path) -> bool:
    (pg_ctl,) = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))[-1:]
    done = subprocess.run(
        ["runuser", "-u", "postgres", "--", str(pg_ctl), "-D", str(folder), "status"],
        capture_output=True,
    )
    return done.returncode == 0


@pytest.fixture
def server_env():
    # Under /tmp, not pytest's folder: the postgres user must be able to reach it.
    parent = Path(tempfile.mkdtemp(prefix="carma-pg-test-"))
    parent.chmod(0o755)
    folder = parent / "pg"
    env = {k: v for k, v in os.environ.items() if k != "CARMA_TEST_DATABASE_URL"}
    env.update(CARMA_PG_DIR=str(folder), CARMA_PG_PORT=str(_free_port()))
    yield folder, env
    subprocess.run([str(ROOT / ".ci/postgres"), "stop"], env=env, capture_output=True)
    shutil.rmtree(parent, ignore_errors=True)


def test_a_server_the_run_started_is_stopped_when_it_ends(server_env):
    folder, env = server_env
    done = subprocess.run(
        [str(ROOT / ".ci/with-postgres"), "sh", "-c", 'echo "$CARMA_TEST_DATABASE_URL"; exit 3'],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 3  # the command's own status
    assert done.stdout.startswith("postgresql://carma@127.0.0.1:")
    assert (folder / "PG_VERSION").exists() and not _running(folder)


def test_a_server_already_running_is_left_running(server_env):
    folder, env = server_env
    started = subprocess.run(
        [str(ROOT / ".ci/postgres"), "start"], env=env, capture_output=True, text=True
    )
    assert started.returncode == 0 and "CARMA_PG_STARTED=1" in started.stdout
    done = subprocess.run([str(ROOT / ".ci/with-postgres"), "true"], env=env)
    assert done.returncode == 0 and _running(folder)

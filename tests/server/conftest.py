"""A real `carma serve` process on a free loopback port, and a small client for it.

The servers here use the small deterministic HashingEmbedder (`--embedder hashing`): what is
tested is the service, not the model."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

SERVE = [sys.executable, "-c", "from carma.cli import main; main()"]
# Debian's chromium package (.ci/run installs it); Playwright's own browser builds are not
# used. The flags keep it from reaching for the network it does not have.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START_S = 60  # a busy two-core machine imports torch & co. slowly
STOP_S = 60


def carma_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`carma ARGS` in a child process (as a user runs it)."""
    return subprocess.run(
        [*SERVE, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        timeout=120,
    )


def issue(home: Path, *args: str, env: dict[str, str] | None = None) -> tuple[str, str]:
    """A key made with `carma keys create ARGS --json`: (key, id)."""
    done = carma_cli("keys", "create", "--home", str(home), "--json", *args, env=env)
    assert done.returncode == 0, done.stderr
    made = json.loads(done.stdout)
    return made["key"], made["id"]


@dataclass
class Server:
    url: str
    home: Path
    process: subprocess.Popen
    started: dict[str, Any]
    stderr: list[str] = field(default_factory=list)

    def client(self, key: str | None = None, timeout: float = 60) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(STOP_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError("the server did not stop within a minute of SIGTERM") from None


def _first_line(process: subprocess.Popen, deadline: float) -> str:
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            if selector.select(timeout=0.2):
                line = process.stdout.readline()
                if line.strip():
                    return line
    finally:
        selector.close()
    err = process.stderr.read() if process.poll() is not None else "(still running)"
    raise AssertionError(f"`carma serve` did not start: {err}")


@contextmanager
def running_server(
    home: Path,
    *args: str,
    env: dict[str, str] | None = None,
    embedder: str = "hashing",
) -> Iterator[Server]:
    """`carma serve --home HOME --port 0 ARGS` until the block ends (then SIGTERM: it must
    stop cleanly, with status 0)."""
    process = subprocess.Popen(
        [*SERVE, "serve", "--home", str(home), "--port", "0", "--json", "--embedder", embedder]
        + list(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )
    try:
        started = json.loads(_first_line(process, time.monotonic() + START_S))
        server = Server(started["url"], home, process, started)
        wait_for(lambda: _answers(server), "the server answers /healthz")
        yield server
        status = server.stop()
        assert status == 0, f"the server exited with {status}: {process.stderr.read()}"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _answers(server: Server) -> bool:
    try:
        return httpx.get(server.url + "/healthz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    """Poll a condition until it holds (returns its value) or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.05)


@pytest.fixture
def server_home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright launches Debian's chromium (never skipped: CI installs it)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)")
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}

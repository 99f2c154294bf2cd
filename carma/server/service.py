"""`carma serve`: the store opened once, the address checked (no key: loopback only),
uvicorn run until SIGINT or SIGTERM, and a clean stop: the socket closes, requests under way
finish and are answered, background dream cycles stop, the store closes (its index saved).
Every write is acknowledged only once its transaction has committed to the log, so a stop
loses no acknowledged write."""

from __future__ import annotations

import signal
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

import carma
from carma.addresses import is_loopback
from carma.domain import InvalidInput
from carma.server.app import create_app
from carma.server.keys import KeyRing


class _Server(uvicorn.Server):
    """uvicorn's server, stopping gracefully on SIGINT or SIGTERM and then returning:
    uvicorn raises the signal again once it has stopped, which would end the process
    before the store is closed."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one), or InvalidInput saying why not."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65_535:
        raise InvalidInput("the port is a whole number from 0 to 65535")
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InvalidInput(f"cannot listen on {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(
    open_memory: Callable[[], carma.Memory],
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    dream_every: float | None = 60.0,
    say: Callable[[dict[str, Any]], None] = lambda started: None,
    log_level: str = "warning",
) -> None:
    """Serve the store `open_memory()` opens until SIGINT or SIGTERM. `say` is told once the
    socket listens: {"url", "home", "keys", "open", "dream_every"}."""
    # One process answers every client: a thread that waits for the interpreter's lock gets
    # it sooner (the default is 5 ms), which took the median search under 8 clients from
    # about 32 to 20 ms in `carma bench serve`.
    sys.setswitchinterval(0.0005)
    loopback = is_loopback(host)
    mem = open_memory()
    try:
        ring = KeyRing(mem)
        ring.refresh()
        if not loopback and not ring.any_active:
            raise InvalidInput(
                f"refusing to listen on {host} with no key: anyone who reaches it could read "
                "and change every memory. Create a key first (carma keys create --namespace "
                "NS --read), or listen on 127.0.0.1"
            )
        sock = bind(host, port)
        app = create_app(mem, loopback=loopback, dream_every=dream_every)
        config = uvicorn.Config(
            app,
            log_level=log_level,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=30,
        )
        server = _Server(config)
        say(
            {
                "url": url_of(sock),
                "home": str(mem.home),
                "keys": sum(k.active for k in ring.keys()),
                "open": loopback and not ring.any_active,
                "dream_every": dream_every,
            }
        )
        server.run(sockets=[sock])
    finally:
        mem.close()

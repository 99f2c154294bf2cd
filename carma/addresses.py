"""Which addresses a server may bind without keys: the loopback ones only, where no other
machine can reach it (`carma serve` without a key, `carma mcp` over HTTP, which has none)."""

from __future__ import annotations

import ipaddress

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False

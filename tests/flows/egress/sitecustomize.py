"""An audit hook that records, and refuses, every socket target outside this machine.

tests/flows/test_no_egress.py puts this folder on ``PYTHONPATH``, so every Python
process of the run under test (the CLI, the ephemeral Prefect server it starts,
anything else) imports it at startup and appends one JSON line per event to the
file named by ``SENTINEL_EGRESS_LOG``: ``start`` (pid, argv) once, then each
``socket.connect``, ``bind``, ``sendto``/``sendmsg``, ``getaddrinfo`` and
``gethostbyname``/``gethostbyaddr``, with its target and whether it stays on this
machine (the loopback network, ``localhost``, a unix socket). A target that does
not is refused (``PermissionError``) after it is written down, so the test itself
never sends anything out.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import sys
from typing import Any

LOG = os.environ.get("SENTINEL_EGRESS_LOG")
LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def _is_local(host: Any) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback."""
    if host is None:  # getaddrinfo(None, port): the loopback address, no lookup
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    name = str(host).split("%", 1)[0].rstrip(".").lower()
    if name in LOCAL_NAMES:
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _target(event: str, args: tuple[Any, ...]) -> tuple[Any, bool] | None:
    """The event's target and whether it stays local; ``None`` for other events."""
    if event in ("socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg"):
        sock, address = args[0], args[1]
        if address is None:  # sendmsg on a connected socket: its connect was recorded
            return None
        if getattr(sock, "family", None) == getattr(socket, "AF_UNIX", None):
            return str(address), True
        if isinstance(address, tuple) and address:
            return list(address[:2]), _is_local(address[0])
        return repr(address), False
    if event == "socket.getaddrinfo":
        return [args[0], args[1]], _is_local(args[0])
    if event in ("socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr"):
        return args[0], _is_local(args[0])
    return None


def _write(record: dict[str, Any]) -> None:
    assert LOG is not None
    with open(LOG, "a", encoding="utf-8") as log:
        log.write(json.dumps(record, default=repr) + "\n")


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if not event.startswith("socket."):
        return
    found = _target(event, args)
    if found is None:
        return
    target, local = found
    _write({"pid": os.getpid(), "event": event, "target": target, "local": local})
    if not local:
        raise PermissionError(f"tests/flows/egress: {event} to {target!r} refused")


if LOG:
    _write({"pid": os.getpid(), "event": "start", "argv": sys.argv})
    sys.addaudithook(_hook)

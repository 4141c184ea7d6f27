"""
Health and readiness, for load balancers, orchestrators and systemd.

    - C{GET /healthz}: 200 C{ok} while the process answers at all.
    - C{GET /readyz}: 200 C{ready} once the engine has started and every
      listener is bound; 503 with the reason (one sentence) before that
      and once the daemon is stopping.

Both are served on the admin listener without the cookie (they say
nothing secret). L{notifySystemd} tells systemd (C{Type=notify}) the
same: C{READY=1} once ready, C{STOPPING=1} as the daemon stops.
"""

from __future__ import annotations

import os
import socket
from typing import Mapping, Optional

from twisted.logger import Logger
from twisted.web.resource import Resource

_log = Logger()


class Readiness:
    """
    Whether the daemon is ready: C{reason} is None when it is, else the
    sentence that says why not.
    """

    def __init__(self):
        self.reason: Optional[str] = "The engine has not started yet."

    def notReady(self, reason: str) -> None:
        self.reason = reason

    def ready(self) -> None:
        self.reason = None


def _plain(request, status: int, text: str) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    request.setHeader(b"Cache-Control", b"no-store")
    return (text + "\n").encode("utf-8")


class HealthResource(Resource):
    """C{GET /healthz}: the process answers."""

    isLeaf = True

    def render_GET(self, request):
        return _plain(request, 200, "ok")

    render_HEAD = render_GET


class ReadyResource(Resource):
    """C{GET /readyz}: 200 when ready, else 503 with the reason."""

    isLeaf = True

    def __init__(self, readiness: Readiness):
        Resource.__init__(self)
        self._readiness = readiness

    def render_GET(self, request):
        reason = self._readiness.reason
        if reason is None:
            return _plain(request, 200, "ready")
        return _plain(request, 503, reason)

    render_HEAD = render_GET


def notifySystemd(state: str, environ: Optional[Mapping[str, str]] = None) -> bool:
    """
    Send C{state} (C{"READY=1"}, C{"STOPPING=1"}) to systemd's notification
    socket, named by C{$NOTIFY_SOCKET} (a path, or C{@name} in the
    abstract namespace), as C{sd_notify(3)} does: one datagram.

    @return: whether it was sent (False without C{$NOTIFY_SOCKET}, or
        when the socket refuses it: that is logged, not raised).
    """
    address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(state.encode("utf-8"), address)
    except OSError as e:
        _log.warn("Could not tell systemd {state}: {error}", state=state, error=e)
        return False
    return True

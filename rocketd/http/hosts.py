"""
The request's C{Host} header: which values are a host, and what stands in
for one that is not.

Both faces write absolute URIs from C{Host}, and Klein hands it to
werkzeug, which refuses (C{BadHost}) a name that does not encode as IDNA
(C{a..b}, a label of 64 characters). A C{Host} that is not one plain host
name or address with an optional port is never used: the listening
address takes its place before any resource sees the request.
"""

from __future__ import annotations

import ipaddress
import re

# A DNS name (labels of 1 to 63 letters, digits, "-" or "_", an optional
# final dot) or an IPv4 address, or a bracketed IPv6 address; then an
# optional port.
_HOST = re.compile(
    rb"^(?P<name>(?:[A-Za-z0-9_-]{1,63}\.)*[A-Za-z0-9_-]{1,63}\.?|\[(?P<ipv6>[0-9A-Fa-f:.]+)\])(?::(?P<port>[0-9]{1,5}))?$"
)

#: The longest DNS name (without its final dot).
_MAX_NAME = 253


def validHost(value: bytes) -> bool:
    """
    Whether a C{Host} value is a host rocketd may use and echo: a DNS name
    (every label 1 to 63 characters, 253 at most in all) or an IPv4
    address, or a bracketed IPv6 address, with an optional port (0 to
    65535).
    """
    if len(value) > _MAX_NAME + 8:
        return False
    match = _HOST.match(value)
    if match is None:
        return False
    port = match.group("port")
    if port is not None and int(port) > 65535:
        return False
    ipv6 = match.group("ipv6")
    if ipv6 is not None:
        try:
            ipaddress.IPv6Address(ipv6.decode("ascii"))
        except ValueError:
            return False
        return True
    return len(match.group("name").rstrip(b".")) <= _MAX_NAME


def listeningHost(request) -> bytes:
    """
    The C{Host} value that names where the request arrived: the listening
    address and port (C{127.0.0.1:8080}, C{[::1]:8080}), or C{localhost}
    for a listener with no IP address (a unix socket).
    """
    address = request.getHost()
    name = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if not isinstance(name, str) or not name:
        return b"localhost"
    if ":" in name:
        name = f"[{name.split('%', 1)[0]}]"
    return (f"{name}:{port}" if port else name).encode("ascii")


def neutraliseHost(request) -> bool:
    """
    Make the request's C{Host} one that every resource can use: when the
    request has several C{Host} headers, or one that L{validHost} refuses,
    replace them with L{listeningHost}. A request without C{Host}
    (HTTP/1.0) is left so.

    @return: whether the header was replaced.
    """
    values = request.requestHeaders.getRawHeaders(b"host")
    if values is None or (len(values) == 1 and validHost(values[0])):
        return False
    request.requestHeaders.setRawHeaders(b"host", [listeningHost(request)])
    return True

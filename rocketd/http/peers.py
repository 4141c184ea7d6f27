"""Who is on the other end of a request."""

import functools
import ipaddress

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress


def isLoopback(request) -> bool:
    """
    Whether the request's client is on this machine: a loopback IPv4 or
    IPv6 address (an IPv4-mapped IPv6 one included), or a unix socket.
    """
    peer = request.getClientAddress()
    if isinstance(peer, UNIXAddress):
        return True
    if not isinstance(peer, (IPv4Address, IPv6Address)):
        return False
    return _loopbackHost(peer.host)


@functools.lru_cache(maxsize=1024)
def _loopbackHost(host: str) -> bool:
    # Parsed once per address (it ran on every RestMS request).
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback

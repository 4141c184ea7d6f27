"""Tests for L{rocketd.http.peers}."""

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.trial.unittest import TestCase
from twisted.web.test.requesthelper import DummyRequest

from rocketd.http.peers import isLoopback


def requestFrom(address):
    request = DummyRequest([b""])
    request.client = address
    return request


class IsLoopbackTests(TestCase):
    def test_loopback(self):
        for address in (
            IPv4Address("TCP", "127.0.0.1", 1),
            IPv4Address("TCP", "127.8.9.10", 1),
            IPv6Address("TCP", "::1", 1),
            IPv6Address("TCP", "::ffff:127.0.0.1", 1),
            UNIXAddress(b"/run/rocketd.sock"),
        ):
            self.assertTrue(isLoopback(requestFrom(address)), address)

    def test_remote(self):
        for address in (
            IPv4Address("TCP", "192.0.2.1", 1),
            IPv4Address("TCP", "0.0.0.0", 1),
            IPv6Address("TCP", "2001:db8::1", 1),
            IPv6Address("TCP", "::ffff:192.0.2.1", 1),
            IPv4Address("TCP", "not an address", 1),
        ):
            self.assertFalse(isLoopback(requestFrom(address)), address)

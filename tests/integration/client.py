"""
A small HTTP client for the integration tests: one request per
connection (as curl does), with a deadline on every read.
"""

from __future__ import annotations

import base64
import http.client
import json
import urllib.parse

DEADLINE = 10.0


def basic(user: str, password: str) -> str:
    """The value of an HTTP Basic C{Authorization} header."""
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


class Response:
    """A whole response: status, headers (lower-case names), body."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        return self.headers.get(name.lower())

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.body[:300])


class Client:
    """Requests to a daemon's listener, one connection each."""

    response = Response

    def __init__(self, url):
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname, parts.port

    def connect(self, timeout=DEADLINE):
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def send(self, connection, method, target, body=None, headers=None):
        """Send one request on C{connection}; return the whole response, and close."""
        if target.startswith("http"):
            target = urllib.parse.urlsplit(target)._replace(scheme="", netloc="").geturl()
        try:
            connection.request(method, target, body=body, headers=headers or {})
            response = connection.getresponse()
            return self.response(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            connection.close()

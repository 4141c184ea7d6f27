"""
C{rocketctl}: manage a running rocketd's vhosts, channels and workers
through its admin API.

    rocketctl [--admin URL] [--cookie-file PATH | --state-dir DIR] COMMAND ...

The admin cookie is read from C{--cookie-file}, else from
C{--state-dir}/admin.cookie, else from C{$ROCKETD_COOKIE_FILE}, else from
C{/var/lib/rocketd/admin.cookie}; the admin URL from C{--admin}, else
C{$ROCKETD_ADMIN}, else C{http://127.0.0.1:8082}.

Output is made for scripts: one item a line, fields separated by one space.
Every error prints C{error: <sentence>} on standard error and exits 1.

The admin commands need no reactor: their client is synchronous and uses
only the standard library. The message commands (C{publish},
C{subscribe}, C{fire}, C{workers-tail}: L{rocketd.admin.messages}) run
L{rocketd.client} on the reactor.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from typing import Callable, Dict, Mapping, Optional, Sequence, TextIO

from rocketd.admin.messages import COMMANDS as MESSAGE_COMMANDS
from rocketd.admin.messages import DEFAULT_URL, addCommands

#: The admin listener's address when nothing else is said.
DEFAULT_ADMIN = "http://127.0.0.1:8082"
#: The daemon's state directory when nothing else is said.
DEFAULT_STATE_DIR = "/var/lib/rocketd"
#: The cookie file's name in the state directory.
COOKIE_FILE = "admin.cookie"
#: The header that carries the cookie.
COOKIE_HEADER = "X-Rocketd-Cookie"
#: Seconds to wait for the admin API.
DEFAULT_TIMEOUT = 30.0


class CommandError(Exception):
    """A failure to report as C{error: <sentence>}; the argument is the sentence."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are L{CommandError}s (exit 1, not 2)."""

    def error(self, message):
        raise CommandError("%s (see %s --help)" % (message, self.prog))


def _buildParser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rocketctl",
        description="Manage the vhosts, channels and workers of a running rocketd.",
    )
    parser.add_argument(
        "--admin",
        metavar="URL",
        help="the admin API (default: $ROCKETD_ADMIN or %s)" % (DEFAULT_ADMIN,),
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--cookie-file",
        metavar="PATH",
        help="the admin cookie file (default: $ROCKETD_COOKIE_FILE or STATE_DIR/%s)" % (COOKIE_FILE,),
    )
    source.add_argument(
        "--state-dir",
        metavar="DIR",
        help="rocketd's state directory, which holds %s (default: %s)" % (COOKIE_FILE, DEFAULT_STATE_DIR),
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="how long to wait for the admin API (default: %(default)s)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name, help, *args):
        sub = commands.add_parser(name, help=help, description=help)
        for arg, argHelp in args:
            sub.add_argument(arg, help=argHelp)

    vhost = ("vhost", "the vhost path, e.g. /moon or /apps/chat")
    channel = ("channel", "the channel name")
    command("add-vhost", "create a vhost; print its path and its token, one per line", vhost)
    command("list-vhosts", "print the path of every vhost, one per line")
    command("show-vhost", "print a vhost's path, token and channel count", vhost)
    command("delete-vhost", "delete a vhost with its channels and workers", vhost)
    command("regenerate-token", "give a vhost a new token and print it", vhost)
    command("list-channels", "print a vhost's channels: name and subscribers", vhost)
    command("add-channel", "open a channel in a vhost", vhost, channel)
    command("delete-channel", "close a channel of a vhost", vhost, channel)
    command("list-workers", "print a vhost's backend workers: id, filter, connection time", vhost)
    # The message commands (rocketd.admin.messages) speak to the main
    # listener with rocketd.client.
    parser.add_argument("--url", metavar="URL", help="the main listener, for the message commands "
                        "(default: $ROCKETD_URL or %s)" % (DEFAULT_URL,))
    parser.add_argument("--token", metavar="TOKEN", help="the vhost's token, for fire and workers-tail "
                        "(default: $ROCKETD_TOKEN, else read from the admin API)")
    addCommands(lambda name, help: commands.add_parser(name, help=help, description=help))
    return parser


def _vhostURLPath(path: str) -> str:
    """
    @return: the admin URL path of the vhost C{path} (with or without its
        leading slash).
    """
    segments = [s for s in path.strip().split("/") if s]
    if not segments:
        raise CommandError("a vhost path is needed, such as /moon")
    return "/vhosts/" + "/".join(urllib.parse.quote(s, safe="") for s in segments)


def _channelURLPath(vhost: str, name: str) -> str:
    if not name or "/" in name:
        raise CommandError("invalid channel name %r" % (name,))
    return _vhostURLPath(vhost) + "/channels/" + urllib.parse.quote(name, safe="")


def _readCookie(path: str) -> str:
    try:
        with open(path, "rb") as f:
            cookie = f.read().decode("ascii", "replace").strip()
    except FileNotFoundError:
        raise CommandError(
            "there is no admin cookie file %s (give rocketd's state directory with --state-dir, "
            "or the file with --cookie-file)" % (path,)
        )
    except PermissionError:
        raise CommandError(
            "cannot read the admin cookie file %s: permission denied (run rocketctl as rocketd's user)"
            % (path,)
        )
    except OSError as e:
        raise CommandError("cannot read the admin cookie file %s: %s" % (path, e.strerror or e))
    if not cookie:
        raise CommandError("the admin cookie file %s is empty" % (path,))
    return cookie


def _cookiePath(options, environ: Mapping[str, str]) -> str:
    if options.cookie_file:
        return options.cookie_file
    if options.state_dir:
        return os.path.join(options.state_dir, COOKIE_FILE)
    if environ.get("ROCKETD_COOKIE_FILE"):
        return environ["ROCKETD_COOKIE_FILE"]
    return os.path.join(DEFAULT_STATE_DIR, COOKIE_FILE)


def _adminURL(options, environ: Mapping[str, str]) -> str:
    url = options.admin or environ.get("ROCKETD_ADMIN") or DEFAULT_ADMIN
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CommandError("the admin URL %s is not an http:// or https:// URL" % (url,))
    return url.rstrip("/")


def _reason(error: BaseException) -> str:
    """A short account of why a connection failed."""
    if isinstance(error, urllib.error.URLError):
        if not isinstance(error.reason, BaseException):
            return str(error.reason)
        error = error.reason
    if isinstance(error, ConnectionRefusedError):
        return "connection refused (is rocketd running, with its admin listener there?)"
    if isinstance(error, TimeoutError):
        return "no answer in time"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or error.__class__.__name__


class AdminClient:
    """
    A synchronous client of the admin API.

    @param url: the admin API's base URL.
    @param cookie: the admin cookie.
    @param opener: what sends requests: an object with
        C{open(request, timeout=...)} as L{urllib.request.OpenerDirector}.
    """

    def __init__(self, url: str, cookie: str, opener, timeout: float = DEFAULT_TIMEOUT):
        self.url = url
        self._cookie = cookie
        self._opener = opener
        self._timeout = timeout

    def call(self, method: str, path: str):
        """
        @return: the decoded JSON body of a 2xx answer.
        @raise CommandError: for an error answer or no answer.
        """
        request = urllib.request.Request(
            self.url + path,
            method=method,
            headers={COOKIE_HEADER: self._cookie, "Accept": "application/json"},
        )
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as e:
            raise CommandError(self._errorSentence(e))
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            raise CommandError("cannot reach the admin API at %s: %s" % (self.url, _reason(e)))
        try:
            return json.loads(body)
        except ValueError:
            raise CommandError("the admin API at %s answered something that is not JSON" % (self.url,))

    def _errorSentence(self, error: urllib.error.HTTPError) -> str:
        try:
            message = json.loads(error.read())["error"]
        except Exception:
            message = None
        if not isinstance(message, str) or not message:
            return "the admin API at %s answered %s %s" % (self.url, error.code, error.reason)
        if error.code == 401:
            return "%s (is the cookie file the one of the rocketd at %s?)" % (message, self.url)
        return message


def _formatTime(seconds) -> str:
    try:
        moment = datetime.fromtimestamp(float(seconds), timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return str(seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# Commands: each takes (client, options, out) and prints its result.


def _addVhost(client, options, out):
    body = client.call("POST", _vhostURLPath(options.vhost))
    out.write("%s\n%s\n" % (body["path"], body["token"]))


def _listVhosts(client, options, out):
    for vhost in client.call("GET", "/vhosts")["vhosts"]:
        out.write("%s\n" % (vhost["path"],))


def _showVhost(client, options, out):
    body = client.call("GET", _vhostURLPath(options.vhost))
    out.write("path: %s\n" % (body["path"],))
    out.write("token: %s\n" % (body["token"],))
    out.write("channels: %s\n" % (body["channels"],))
    if "slowClientsClosed" in body:
        out.write("slow clients closed: %s\n" % (body["slowClientsClosed"],))
    out.write("declared: %s\n" % ("yes" if body.get("declared") else "no",))


def _deleteVhost(client, options, out):
    client.call("DELETE", _vhostURLPath(options.vhost))


def _regenerateToken(client, options, out):
    out.write("%s\n" % (client.call("PUT", _vhostURLPath(options.vhost) + "/token")["token"],))


def _listChannels(client, options, out):
    for channel in client.call("GET", _vhostURLPath(options.vhost) + "/channels")["channels"]:
        out.write("%s %s\n" % (channel["name"], channel["subscribers"]))


def _addChannel(client, options, out):
    client.call("POST", _channelURLPath(options.vhost, options.channel))


def _deleteChannel(client, options, out):
    client.call("DELETE", _channelURLPath(options.vhost, options.channel))


def _listWorkers(client, options, out):
    for worker in client.call("GET", _vhostURLPath(options.vhost) + "/workers")["workers"]:
        out.write("%s %s %s\n" % (worker["id"], worker["filter"], _formatTime(worker["connected"])))


_COMMANDS: Dict[str, Callable] = {
    "add-vhost": _addVhost,
    "list-vhosts": _listVhosts,
    "show-vhost": _showVhost,
    "delete-vhost": _deleteVhost,
    "regenerate-token": _regenerateToken,
    "list-channels": _listChannels,
    "add-channel": _addChannel,
    "delete-channel": _deleteChannel,
    "list-workers": _listWorkers,
}


def _defaultOpener():
    # The admin API is local and its cookie is a secret: never send it
    # through a proxy from the environment.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def main(
    argv: Optional[Sequence[str]] = None,
    *,
    environ: Optional[Mapping[str, str]] = None,
    stdout: Optional[TextIO] = None,
    stderr: Optional[TextIO] = None,
    opener=None,
) -> int:
    """
    Run C{rocketctl}.

    @param argv: the arguments (without the program name); default
        C{sys.argv[1:]}.
    @param environ: the environment; default C{os.environ}.
    @param stdout: where results go; default C{sys.stdout}.
    @param stderr: where errors go; default C{sys.stderr}.
    @param opener: what sends HTTP requests (see L{AdminClient}); default a
        L{urllib.request} opener that uses no proxy.
    @return: the exit status: 0, or 1 after an error.
    """
    environ = os.environ if environ is None else environ
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    parser = _buildParser()
    try:
        try:
            options = parser.parse_args(argv)
        except SystemExit as e:  # --help
            return e.code if isinstance(e.code, int) else 0
        if options.command is None:
            raise CommandError("a command is needed (see rocketctl --help)")
        if options.timeout <= 0:
            raise CommandError("the timeout must be more than 0 seconds")
        url = _adminURL(options, environ)
        if options.command in MESSAGE_COMMANDS:
            from rocketd.admin.messages import run

            def token(vhost):
                cookie = _readCookie(_cookiePath(options, environ))
                client = AdminClient(url, cookie, opener or _defaultOpener(), timeout=options.timeout)
                return client.call("GET", _vhostURLPath(vhost))["token"]

            return run(options, environ, sys.stdin, stdout, token, CommandError)
        cookie = _readCookie(_cookiePath(options, environ))
        client = AdminClient(url, cookie, opener or _defaultOpener(), timeout=options.timeout)
        _COMMANDS[options.command](client, options, stdout)
    except CommandError as e:
        stderr.write("error: %s\n" % (e.args[0],))
        return 1
    except (KeyError, TypeError) as e:
        stderr.write("error: the admin API answered a body this rocketctl does not understand (%s)\n" % (e,))
        return 1
    stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

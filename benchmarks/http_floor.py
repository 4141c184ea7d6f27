"""
The framework's floor: how many POSTs per second a bare twisted.web
resource, and a bare Klein route, answer on this machine, driven by the
suite's load client exactly as W2 drives rocketd (same payload, same
keep-alive connections, the server pinned to one core). No request can
cost rocketd less than this, so it says what CPython and Twisted leave
for rocketd's own code.

    python benchmarks/http_floor.py [--messages 20000] [--connections 8]

It prints requests/s and server CPU microseconds per request for each
server. The servers are children of this process, on free loopback
ports, stopped by their pids.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import driver
from benchmarks.servers import HOST, Server, _httpStatus, _stop, freePort, serverCpu

#: The server programs: the same body (read it, answer 202 with C{{}}) on
#: bare twisted.web and on Klein; argv[1] is the port.
PROGRAMS = {
    "twisted.web": """
import sys
from twisted.internet import reactor, endpoints
from twisted.web import server, resource
class Events(resource.Resource):
    isLeaf = True
    def render_POST(self, request):
        request.content.read()
        request.setResponseCode(202)
        request.setHeader(b"content-type", b"application/json")
        return b"{}"
    render_GET = render_POST
site = server.Site(Events(), parsePOSTFormSubmission=False)
site.log = lambda request: None
endpoints.serverFromString(reactor, "tcp:%s:interface=127.0.0.1" % sys.argv[1]).listen(site)
reactor.run()
""",
    "klein": """
import sys
from klein import Klein
from twisted.internet import reactor, endpoints
from twisted.web import server
app = Klein()
@app.route("/<path:rest>", methods=["POST", "GET"])
def events(request, rest):
    request.content.read()
    request.setResponseCode(202)
    request.setHeader(b"content-type", b"application/json")
    return b"{}"
site = server.Site(app.resource(), parsePOSTFormSubmission=False)
site.log = lambda request: None
endpoints.serverFromString(reactor, "tcp:%s:interface=127.0.0.1" % sys.argv[1]).listen(site)
reactor.run()
""",
}


class ScriptServer(Server):
    """One of L{PROGRAMS}, run with this interpreter."""

    def __init__(self, workdir: str, name: str, cpu=None):
        Server.__init__(self, workdir, cpu)
        self.name = name
        self.logPath = os.path.join(workdir, "server.log")

    def pids(self):
        return [self.process.pid]

    def start(self) -> None:
        os.makedirs(self.workdir, exist_ok=True)
        self.port = freePort()
        with open(self.logPath, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", PROGRAMS[self.name], str(self.port)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, preexec_fn=self._pin,
            )
        deadline = time.monotonic() + 20
        while _httpStatus(self.port, "/floor") != 202:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not start:\n{self.logTail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process, 15, 10.0, self.name)


def measure(name: str, messages: int, connections: int, size: int, workdir: str, profile=None) -> dict:
    """@return: requests/s, server CPU us per request, loads, for one server program."""
    server = ScriptServer(os.path.join(workdir, name.replace(".", "-")), name, serverCpu())
    server.start()
    try:
        spec = {"host": HOST, "port": server.port, "connections": connections, "path": "/bench/channels/c/events",
                "headers": {"Content-Type": "application/json"}, "bodyPrefix": '{"trigger":{"event":"m","data":{"p":"',
                "bodySuffix": '"}}}', "ok": [202]}
        warm = {"count": 500, "size": size, "seconds": 60, "publish": dict(spec, connections=2)}
        driver.drive(server, [warm], workdir, 120)
        m = driver.drive(server, [{"count": messages, "size": size, "seconds": 120, "publish": spec}], workdir, 300,
                         profile=profile and os.path.join(profile, f"floor-{name}.txt"))
    finally:
        server.stop()
    published = m.total("published")
    elapsed = max(1, m.lastResponse - m.firstPublish) / 1e9
    return {
        "requestsPerSecond": published / elapsed,
        "cpuPerRequest": m.serverCpu / published * 1e6 if published else float("nan"),
        "serverLoad": m.serverLoad,
        "clientLoad": m.clientLoad,
        "otherLoad": m.otherLoad,
        "problems": m.problems,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    p.add_argument("--messages", type=int, default=20000)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--size", type=int, default=100)
    p.add_argument("--profile", metavar="DIR", help="record py-spy profiles of the servers into DIR")
    args = p.parse_args(argv)
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="rocketd-floor-")
    for name in PROGRAMS:
        r = measure(name, args.messages, args.connections, args.size, workdir, args.profile)
        print(f"{name:<12} {r['requestsPerSecond']:8,.0f} req/s  {r['cpuPerRequest']:6.0f} us CPU/request  "
              f"[load: server {r['serverLoad']:.2f}, client {r['clientLoad']:.2f}, other {r['otherLoad']:.2f}]"
              + (f"  INVALID: {r['problems']}" if r["problems"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

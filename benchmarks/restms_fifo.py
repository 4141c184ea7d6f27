"""
RestMS fifo round trips per second against a real daemon.

One round trip is the cycle a RestMS consumer runs: POST a message to a
feed, GET the pipe's asynclet (which answers at once, the message having
arrived), DELETE the message; the next asynclet's URI comes from the
C{Link: rel="next"} header, so no extra request is needed.

    python benchmarks/restms_fifo.py [--count N] [--seconds S] [--pipes P]
                                     [--url http://127.0.0.1:PORT]

Without --url it starts C{twistd -n rocketd} on a free loopback port and
stops it afterwards. The loop is bounded by --count and by --seconds.
With several pipes, each pipe has its own client connection and the pipes
take turns (one round trip each per turn). It prints the figures, and
fails (exit 1) if any message is lost, duplicated or corrupt.
"""

import argparse
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

XML = "application/restms+xml"
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


def freePort():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    """A keep-alive HTTP/1.1 connection speaking RestMS XML."""

    def __init__(self, base):
        u = urllib.parse.urlsplit(base)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)

    def request(self, method, path, body=None, headers=None):
        path = urllib.parse.urlsplit(path).path if path.startswith("http") else path
        self.conn.request(method, path, body=body, headers=headers or {})
        response = self.conn.getresponse()
        data = response.read()
        return response.status, response, data


def _attr(doc, element, name):
    m = re.search(r"<%s\b[^>]*\b%s=\"([^\"]*)\"" % (element, name), doc)
    return m.group(1) if m else None


def setUp(client, feedName, pipes):
    status, r, _ = client.request(
        "POST", "/restms/domain/", b'<restms><feed type="fanout"/></restms>',
        {"Content-Type": XML, "Slug": feedName})
    assert status in (200, 201), status
    result = []
    for _ in range(pipes):
        status, r, body = client.request(
            "POST", "/restms/domain/", b'<restms><pipe type="fifo"/></restms>', {"Content-Type": XML})
        assert status == 201, (status, body)
        pipe = r.getheader("Location")
        status, r, body = client.request(
            "POST", pipe, ('<restms><join address="*" feed="/restms/feed/%s"/></restms>' % feedName).encode(),
            {"Content-Type": XML})
        assert status in (200, 201), (status, body)
        status, r, body = client.request("GET", pipe)
        asynclet = re.search(r'<message\b[^>]*href="([^"]+)"[^>]*async="1"', body.decode())
        assert asynclet, body
        result.append([pipe, asynclet.group(1)])
    return result


def run(base, count, seconds, pipes):
    publisher = Client(base)
    feedName = "bench-%d" % os.getpid()
    pipeState = setUp(publisher, feedName, pipes)
    consumers = [Client(base) for _ in pipeState]
    received = [0] * pipes
    errors = 0
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while done < count and time.perf_counter() < deadline:
        body = ('<restms><message address="a"><content type="text/plain">m%d</content></message></restms>'
                % done).encode()
        status, _, _ = publisher.request("POST", "/restms/feed/" + feedName, body, {"Content-Type": XML})
        if status != 200:
            errors += 1
        for i, (consumer, state) in enumerate(zip(consumers, pipeState)):
            status, r, doc = consumer.request("GET", state[1])
            if status != 200 or (b">m%d<" % done) not in doc and (b"m%d" % done) not in doc:
                errors += 1
                continue
            received[i] += 1
            status, _, _ = consumer.request("DELETE", state[1])
            if status != 200:
                errors += 1
            link = r.getheader("Link") or ""
            m = _LINK_NEXT.search(link)
            if not m:
                errors += 1
                break
            state[1] = m.group(1)
        done += 1
    elapsed = time.perf_counter() - start
    return done, elapsed, received, errors


def startDaemon():
    port = freePort()
    state = tempfile.mkdtemp(prefix="rocketd-bench-")
    log = open(os.path.join(state, "stdout.log"), "wb")
    argv = [sys.executable, "-c", "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()",
            "-n", "--pidfile=", "--logfile", os.path.join(state, "twistd.log"),
            "rocketd", "--listen", "tcp:%d:interface=127.0.0.1" % port,
            "--admin", "tcp:%d:interface=127.0.0.1" % freePort(), "--state-dir", state]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                     env.get("PYTHONPATH")]))
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = "http://127.0.0.1:%d" % port
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, base, state
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("rocketd did not start; see %s" % state)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=5000, help="round trips per pipe at most (default 5000)")
    p.add_argument("--seconds", type=float, default=30.0, help="time limit (default 30)")
    p.add_argument("--pipes", type=int, default=1, help="pipes joined to the feed (default 1)")
    p.add_argument("--url", help="an already running daemon")
    args = p.parse_args(argv)
    proc = state = None
    base = args.url
    if base is None:
        proc, base, state = startDaemon()
    try:
        done, elapsed, received, errors = run(base, args.count, args.seconds, args.pipes)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
            shutil.rmtree(state, ignore_errors=True)
    trips = sum(received)
    print("pipes=%d published=%d round_trips=%d errors=%d elapsed=%.2fs" % (args.pipes, done, trips, errors, elapsed))
    print("published/s=%.0f round_trips/s=%.0f" % (done / elapsed, trips / elapsed))
    return 1 if errors or trips != done * args.pipes else 0


if __name__ == "__main__":
    sys.exit(main())

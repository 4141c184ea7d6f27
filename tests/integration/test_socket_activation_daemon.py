"""
systemd socket activation, as etc/rocketd.socket sets it up: the daemon
takes its main listener from the socket it is passed (LISTEN_FDS,
LISTEN_PID, fd 3; Twisted's C{systemd:} endpoint), and a connection made
while the daemon is down waits in that socket's queue and is answered by
the next daemon: the port is held across a restart.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from .daemon import HOST, TWISTD, freePort, twistdEnvironment

DEADLINE = 20.0

#: Puts the passed socket at fd 3 and sets LISTEN_PID to this process's
#: pid (kept by exec), as systemd does, then runs twistd.
WRAPPER = (
    "import os, sys; fd = int(sys.argv[1]); os.dup2(fd, 3); os.close(fd); "
    "os.environ['LISTEN_PID'] = str(os.getpid()); os.environ['LISTEN_FDS'] = '1'; os.environ['LISTEN_FDNAMES'] = 'rocketd.socket'; "
    "os.execv(sys.argv[2], sys.argv[2:])"
)


def spawn(listener, stateDir, log):
    argv = [
        sys.executable, "-c", WRAPPER, str(listener.fileno()), *TWISTD, "--nodaemon", "--pidfile=", "rocketd",
        "--listen", "systemd:domain=INET:index=0", "--admin", f"tcp:{freePort()}:interface={HOST}",
        "--state-dir", stateDir,
    ]
    return subprocess.Popen(argv, env=twistdEnvironment(), stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, pass_fds=(listener.fileno(),))


def get(port, path=b"/restms/domain/", timeout=DEADLINE):
    """One GET; @return: the raw answer (until the server closes)."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(b"GET " + path + b" HTTP/1.0\r\nHost: x\r\n\r\n")
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


def stop(process):
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(DEADLINE)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_portHeldAcrossRestart(tmp_path):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((HOST, 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    state = str(tmp_path / "state")
    with open(tmp_path / "rocketd.log", "ab") as log:
        first = spawn(listener, state, log)
        try:
            # The socket is bound already: the first request waits in its
            # queue until the daemon serves it.
            assert get(port).startswith(b"HTTP/1.0 200"), (tmp_path / "rocketd.log").read_text()
        finally:
            stop(first)
        # Down: a connection is still accepted by the kernel and waits.
        waiting = socket.create_connection((HOST, port), timeout=DEADLINE)
        waiting.sendall(b"GET /restms/domain/ HTTP/1.0\r\nHost: x\r\n\r\n")
        second = spawn(listener, state, log)
        try:
            answer = waiting.recv(65536)
            assert answer.startswith(b"HTTP/1.0 200"), (answer, (tmp_path / "rocketd.log").read_text())
        finally:
            waiting.close()
            stop(second)
    listener.close()

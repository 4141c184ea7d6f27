"""
The WebRocket backend benchmark at tiny counts, so its code can't rot: it
starts its own daemon, and fails on any lost, duplicated or reordered
event.
"""

import os
import subprocess
import sys

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "webrocket_backend.py")


def test_webrocketBackendBenchmark():
    result = subprocess.run(
        [sys.executable, SCRIPT, "--count", "200", "--seconds", "10", "--connections", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "fire-event: requests=200 failed=0" in result.stdout
    assert "sse-worker: triggered=200 failed=0 received=200 unique_in_order=True" in result.stdout

"""
The README's test command installs rocketd editable into C{.venv}; after
it, the environment's own scripts work as a newcomer types them, from any
directory and without C{PYTHONPATH}: C{twistd} finds the rocketd plugin,
and C{trial tests} imports the checkout's tests. (C{.ci/newcomer} runs
the README's run and test commands in both orders on a fresh clone.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from importlib import metadata
from unittest import SkipTest

from twisted.trial.unittest import TestCase

from rocketd.tap import Options

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The directory of this environment's scripts (twistd, trial).
BIN = os.path.dirname(sys.executable)
#: The longest one script run may take.
TIMEOUT = 120


def editableCheckout() -> str | None:
    """
    @return: the directory rocketd is installed editable from, or None if
        it is not installed, or not editable.
    """
    # The checkout's own rocketd.egg-info (left by a build) may come first.
    for distribution in metadata.distributions(name="rocketd"):
        text = distribution.read_text("direct_url.json")
        if text:
            info = json.loads(text)
            if info.get("dir_info", {}).get("editable") and info.get("url", "").startswith("file://"):
                return info["url"][len("file://"):]
    return None


def runScript(name: str, *args: str, cwd: str) -> subprocess.CompletedProcess:
    """
    Run this environment's script C{name} as a shell would: no
    C{PYTHONPATH}, in C{cwd}.

    @raise SkipTest: the environment has no such script.
    """
    script = os.path.join(BIN, name)
    if not os.path.exists(script):
        raise SkipTest(f"{script} does not exist: the tests do not run from a virtual environment with rocketd installed")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [script, *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT
    )


class EditableInstallTests(TestCase):
    """After C{pip install -e '.[test]'}, the scripts see the checkout."""

    def setUp(self):
        checkout = editableCheckout()
        if checkout is None or os.path.realpath(checkout) != os.path.realpath(ROOT):
            raise SkipTest(f"rocketd is not installed editable from {ROOT} (the README's test command does that)")

    def test_twistdFindsThePlugin(self):
        """C{twistd rocketd --help}, from another directory, lists rocketd's own options."""
        process = runScript("twistd", "rocketd", "--help", cwd=tempfile.gettempdir())
        output = process.stdout + process.stderr
        self.assertEqual(process.returncode, 0, output)
        self.assertIn("Usage: twistd [options] rocketd [options]", output)
        for name in ("state-dir", "listen", "admin", "config"):
            self.assertIn(f"--{name}=", output)
        self.assertTrue(Options.longdesc.split()[0] in output, output)

    def test_trialImportsTests(self):
        """C{trial tests} and C{trial tests/} from the checkout find the tests (C{-n}: without running them)."""
        for target in ("tests", "tests/"):
            process = runScript("trial", "-n", target, cwd=ROOT)
            output = process.stdout + process.stderr
            self.assertEqual(process.returncode, 0, f"trial -n {target}: {output[-3000:]}")
            self.assertIn("PASSED", output[-3000:])
            self.assertIn("tests.test_install\n  EditableInstallTests\n", output)

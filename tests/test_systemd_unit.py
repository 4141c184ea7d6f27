"""
The shipped systemd unit, C{etc/rocketd.service}, runs the twistd of the
virtual environment the README's production install makes
(C{/opt/rocketd}), and C{systemd-analyze verify} accepts it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from unittest import SkipTest

from twisted.trial.unittest import TestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNIT = os.path.join(ROOT, "etc", "rocketd.service")
#: Where the README's production install puts rocketd's environment.
VENV = "/opt/rocketd"
TWISTD = f"{VENV}/bin/twistd"
#: This test environment's twistd, standing in for the production one.
LOCAL_TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")


def readUnit() -> str:
    with open(UNIT, encoding="utf-8") as f:
        return f.read()


def execStart(unit: str) -> list:
    """@return: the unit's one C{ExecStart} command line, split into words."""
    lines = re.findall(r"^ExecStart=(.*)$", unit, re.MULTILINE)
    if len(lines) != 1:
        raise AssertionError(f"{UNIT} has {len(lines)} ExecStart lines, not one")
    return shlex.split(lines[0])


class UnitTests(TestCase):
    def test_runsTheVenvTwistd(self):
        """ExecStart runs /opt/rocketd/bin/twistd in the foreground with the config; the header says how to make it."""
        unit = readUnit()
        argv = execStart(unit)
        self.assertEqual(argv[0], TWISTD)
        self.assertEqual(argv[1:], ["--nodaemon", "--pidfile=", "rocketd", "--config", "/etc/rocketd/rocketd.conf"])
        self.assertIn(f"python3 -m venv {VENV} && {VENV}/bin/pip install .", unit)
        self.assertNotIn("/usr/bin/twistd", unit)

    def test_theDocsAgree(self):
        """The README and rocketd(8) give the same place and the same install command."""
        with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
            readme = f.read()
        self.assertIn(f"`python3 -m venv {VENV} && {VENV}/bin/pip install .`", readme)
        self.assertIn(f"`{TWISTD} --nodaemon --pidfile= rocketd --config /etc/rocketd/rocketd.conf`", readme)
        with open(os.path.join(ROOT, "man", "rocketd.8"), encoding="utf-8") as f:
            page = f.read().replace("\\-", "-")
        self.assertIn(f"python3 -m venv {VENV} && {VENV}/bin/pip install .", page)
        self.assertIn(f"{TWISTD} --nodaemon --pidfile= rocketd --config /etc/rocketd/rocketd.conf", page)

    def test_commandLine(self):
        """The twistd options and plugin name of ExecStart are understood (by this environment's twistd)."""
        if not os.path.exists(LOCAL_TWISTD):
            raise SkipTest(f"{LOCAL_TWISTD} does not exist: the tests do not run from a virtual environment")
        argv = execStart(readUnit())
        plugin = argv.index("rocketd")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["PYTHONPATH"] = ROOT
        process = subprocess.run(
            [LOCAL_TWISTD, *argv[1:plugin + 1], "--help"],
            cwd="/", env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
        )
        self.assertEqual(process.returncode, 0, process.stdout + process.stderr)
        self.assertIn("--state-dir=", process.stdout)


class VerifyTests(TestCase):
    """C{systemd-analyze verify} on the unit, with ExecStart pointed at this environment's twistd."""

    def setUp(self):
        self.analyze = shutil.which("systemd-analyze")
        if self.analyze is None:
            raise SkipTest("systemd-analyze is not installed (Debian: apt-get install systemd)")
        try:
            version = subprocess.run([self.analyze, "--version"], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as e:
            raise SkipTest(f"systemd-analyze cannot run here: {e}")
        if version.returncode != 0:
            raise SkipTest(f"systemd-analyze cannot run here: {version.stderr.strip()}")
        if not os.path.exists(LOCAL_TWISTD):
            raise SkipTest(f"{LOCAL_TWISTD} does not exist: nothing to stand in for {TWISTD}")

    def verify(self, unitText: str) -> subprocess.CompletedProcess:
        """
        Run C{systemd-analyze verify} on C{unitText}, saved as
        C{rocketd.service} in a fresh directory. C{--man=no}: the man pages
        of C{Documentation=} are installed with the package, not here.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "rocketd.service")
        with open(path, "w", encoding="utf-8") as f:
            f.write(unitText)
        return subprocess.run(
            [self.analyze, "verify", "--man=no", path],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
        )

    def test_verify(self):
        """The unit, with this environment's twistd in ExecStart, verifies without a word."""
        unit = readUnit()
        self.assertEqual(execStart(unit)[0], TWISTD)
        process = self.verify(unit.replace(f"ExecStart={TWISTD} ", f"ExecStart={LOCAL_TWISTD} ", 1))
        self.assertEqual((process.returncode, process.stdout + process.stderr), (0, ""))

    def test_verifyCanFail(self):
        """systemd-analyze here does catch a command that does not exist, and a misspelt directive."""
        unit = readUnit().replace(f"ExecStart={TWISTD} ", "ExecStart=/nonexistent/bin/twistd ", 1)
        process = self.verify(unit)
        self.assertNotEqual(process.returncode, 0)
        self.assertIn("/nonexistent/bin/twistd", process.stderr)
        process = self.verify(readUnit().replace("NoNewPrivileges=", "NoNewPrivilege=", 1))
        self.assertIn("NoNewPrivilege", process.stderr)

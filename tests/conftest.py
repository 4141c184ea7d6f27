"""
Run the tests from a scratch directory, as trial does, so that
C{TestCase.mktemp()} and other relative paths write nothing into the
checkout.
"""

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _scratchWorkingDirectory(tmp_path_factory):
    before = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    try:
        yield
    finally:
        os.chdir(before)

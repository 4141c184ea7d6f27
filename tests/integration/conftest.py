"""Fixtures for the integration tests."""

import pytest

from .daemon import Daemon


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """
    A running daemon on the defaults (and free loopback ports), one per
    test module; stopped when the module's tests are done.
    """
    rocketd = Daemon()
    rocketd.start(stateDir=str(tmp_path_factory.mktemp("rocketd")))
    yield rocketd
    rocketd.close()

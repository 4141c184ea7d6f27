"""
Integration tests: the real daemon (C{twistd rocketd}) in a child process,
on loopback ports, driven over real sockets. See L{tests.integration.daemon}.
"""

"""
Tests for L{rocketd.tap}: the C{twistd rocketd} options and
L{rocketd.tap.makeService}.
"""

from __future__ import annotations

import io
import os
import sys

from twisted.application.service import Application, IService
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import ILogObserver, Logger
from twisted.python import usage
from twisted.scripts.twistd import ServerOptions
from twisted.trial.unittest import TestCase
from twisted.web.server import Site

import rocketd.app
from rocketd.config import Config
from rocketd.tap import Options, makeService


class OptionsTestCase(TestCase):
    def parse(self, *argv) -> Options:
        options = Options()
        options.parseOptions(list(argv))
        return options

    def writeConfig(self, text: str) -> str:
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path


class OptionsTests(OptionsTestCase):
    def test_defaults(self):
        """With no option and no file, the config is the default one."""
        self.assertEqual(self.parse().config, Config())

    def test_everyOption(self):
        """Each option sets its setting, typed."""
        state = os.path.abspath(self.mktemp())
        options = self.parse(
            "--listen=tcp:9000",
            "--admin=tcp:9001:interface=127.0.0.1",
            "--state-dir",
            state,
            "--engine=memory",
            "--long-poll=2.5",
            "--max-body=100",
            "--pipe-depth=5",
            "--heartbeat=4",
            "--log-level=debug",
            "--rabbitmq-url=amqp://u:p@broker:5673/vh",
        )
        self.assertEqual(
            options.config,
            Config(
                listen="tcp:9000",
                admin="tcp:9001:interface=127.0.0.1",
                state_dir=state,
                long_poll=2.5,
                max_body=100,
                pipe_depth=5,
                heartbeat=4.0,
                log_level="debug",
                rabbitmq_url="amqp://u:p@broker:5673/vh",
            ),
        )

    def test_shortOptions(self):
        """C{-c} names the config file and C{-l} the main listener."""
        path = self.writeConfig("[restms]\nlong_poll = 3\n")
        config = self.parse("-c", path, "-l", "tcp:9002").config
        self.assertEqual(config, Config(listen="tcp:9002", long_poll=3.0))

    def test_precedence(self):
        """An option beats the file, which beats the default."""
        path = self.writeConfig("[rocketd]\nlisten = tcp:9000\n[restms]\nlong_poll = 5\nheartbeat = 6\n")
        config = self.parse("--config", path, "--listen", "tcp:9100", "--heartbeat", "7").config
        self.assertEqual(config.listen, "tcp:9100")
        self.assertEqual(config.heartbeat, 7.0)
        self.assertEqual(config.long_poll, 5.0)
        self.assertEqual(config.max_body, Config().max_body)
        self.assertEqual(config.admin, Config().admin)

    def test_badValue(self):
        """
        A bad option value is a usage error whose message says which option
        and why, in one line.
        """
        for argv, fragments in [
            (["--long-poll", "soon"], ["--long-poll", "'soon'", "not a number"]),
            (["--max-body", "0"], ["--max-body", "greater than zero"]),
            (["--pipe-depth", "many"], ["--pipe-depth", "'many'"]),
            (["--listen", "tcp:http"], ["--listen", "tcp:http", "not a valid server endpoint"]),
            (["--admin", "nowhere:1"], ["--admin", "nowhere"]),
            (["--engine", "carrier"], ["--engine", "'carrier'", "memory"]),
            (["--log-level", "loud"], ["--log-level", "'loud'"]),
        ]:
            options = Options()
            error = self.assertRaises(usage.UsageError, options.parseOptions, argv)
            message = str(error)
            self.assertNotIn("\n", message)
            for fragment in fragments:
                self.assertIn(fragment, message)
            # twistd prints the usage above the error: the sentence is enough.
            self.assertEqual(options.getUsage(), "")

    def test_badFile(self):
        """A config file mistake is a usage error naming the file and key."""
        path = os.path.abspath(self.writeConfig("[restms]\nlong_pol = 5\n"))
        error = self.assertRaises(usage.UsageError, self.parse, "-c", path)
        self.assertIn(path, str(error))
        self.assertIn("'long_pol'", str(error))

    def test_missingFile(self):
        """A config file that does not exist is a usage error naming it."""
        path = os.path.abspath(self.mktemp())
        error = self.assertRaises(usage.UsageError, self.parse, "--config", path)
        self.assertIn(path, str(error))
        self.assertIn("does not exist", str(error))

    def test_help(self):
        """The help names every option with its default."""
        help = Options().getUsage()
        for text in ("--config", "--listen", "tcp:8080", "--admin", "--state-dir", "/var/lib/rocketd"):
            self.assertIn(text, help)


class MakeServiceTests(OptionsTestCase):
    def makeService(self, *argv, reactor=None):
        state = self.mktemp()
        options = self.parse("--state-dir", state, *argv)
        service = makeService(options, reactor if reactor is not None else MemoryReactorClock())
        return service, state

    def test_listens(self):
        """
        The service, started, listens on the main and admin endpoints with
        web sites (behind their connection limits), and stops listening
        when stopped.
        """
        reactor = MemoryReactorClock()
        service, state = self.makeService(
            "--listen=tcp:9080:interface=127.0.0.1",
            "--admin=tcp:9082:interface=127.0.0.2",
            reactor=reactor,
        )
        self.assertTrue(IService.providedBy(service))
        self.assertEqual(reactor.tcpServers, [])
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        listening = sorted((port, interface) for port, factory, backlog, interface in reactor.tcpServers)
        self.assertEqual(listening, [(9080, "127.0.0.1"), (9082, "127.0.0.2")])
        for port, factory, backlog, interface in reactor.tcpServers:
            # The main listener's site is behind the front door.
            self.assertIsInstance(getattr(factory.wrappedFactory, "site", factory.wrappedFactory), Site)
        self.assertTrue(os.path.isdir(state))

    def test_defaultReactor(self):
        """Without a reactor, the global one is used."""
        from twisted.internet import reactor

        built = []
        fake = lambda config, reactor: built.append((config, reactor)) or "service"
        self.patch(rocketd.app, "makeRocketdService", fake)
        options = self.parse("--state-dir", self.mktemp())
        self.assertEqual(makeService(options), "service")
        self.assertEqual(built, [(options.config, reactor)])


def twistdOptions():
    """
    @return: C{twistd}'s options as C{twistd -n rocketd} leaves them: log
        to standard output.
    """
    options = ServerOptions()
    options["nodaemon"] = True
    options["logfile"] = "-"
    return options


class LogLevelTests(OptionsTestCase):
    """
    Under C{twistd}, the service gives the application a log observer that
    writes where C{twistd} would, dropping events below the configured
    level.
    """

    def twistdService(self, *argv):
        options = self.parse("--state-dir", self.mktemp(), *argv)
        options.parent = twistdOptions()
        return makeService(options, MemoryReactorClock())

    def test_filters(self):
        """Events below the level are dropped; the others are written."""
        stdout = io.StringIO()
        self.patch(sys, "stdout", stdout)
        service = self.twistdService("--log-level", "warn")
        application = Application("rocketd")
        service.setServiceParent(application)
        observer = application.getComponent(ILogObserver)
        self.assertIsNotNone(observer)
        log = Logger(namespace="rocketd.test", observer=observer)
        log.info("quiet {word}", word="info")
        log.warn("loud {word}", word="warning")
        log.error("louder")
        written = stdout.getvalue()
        self.assertNotIn("quiet", written)
        self.assertIn("loud warning", written)
        self.assertIn("louder", written)

    def test_defaultLevel(self):
        """The default level, info, drops debug events."""
        stdout = io.StringIO()
        self.patch(sys, "stdout", stdout)
        service = self.twistdService()
        application = Application("rocketd")
        service.setServiceParent(application)
        log = Logger(namespace="rocketd.test", observer=application.getComponent(ILogObserver))
        log.debug("chatter")
        log.info("news")
        self.assertNotIn("chatter", stdout.getvalue())
        self.assertIn("news", stdout.getvalue())

    def test_keepsChosenObserver(self):
        """An application that has its log observer keeps it."""
        service = self.twistdService("--log-level", "error")
        application = Application("rocketd")
        chosen = [].append
        application.setComponent(ILogObserver, chosen)
        service.setServiceParent(application)
        self.assertIs(application.getComponent(ILogObserver), chosen)

    def test_notUnderTwistd(self):
        """
        Run by another runner (C{twist} has its own log level option), the
        application's log observer is left alone.
        """
        options = self.parse("--state-dir", self.mktemp())
        options.parent = usage.Options()
        service = makeService(options, MemoryReactorClock())
        application = Application("rocketd")
        service.setServiceParent(application)
        self.assertIsNone(application.getComponent(ILogObserver))

    def test_runsTheDaemon(self):
        """Under twistd, the service still listens on both endpoints."""
        reactor = MemoryReactorClock()
        options = self.parse("--state-dir", self.mktemp(), "--listen=tcp:9180", "--admin=tcp:9182")
        options.parent = twistdOptions()
        service = makeService(options, reactor)
        service.setServiceParent(Application("rocketd"))
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        self.assertEqual(sorted(port for port, _, _, _ in reactor.tcpServers), [9180, 9182])

    def test_twistdWithoutItsObserverFactory(self):
        """
        Under a twistd that does not make its observer as rocketd expects
        (a private method of its logger), the application keeps twistd's
        own observer (every level written) and a warning says so.
        """
        import twisted.scripts.twistd
        from twisted.logger import globalLogPublisher

        class Runner:
            class loggerFactory:
                def __init__(self, options):
                    pass

        self.patch(twisted.scripts.twistd, "_SomeApplicationRunner", Runner)
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        service = self.twistdService("--log-level", "error")
        application = Application("rocketd")
        service.setServiceParent(application)
        self.assertIsNone(application.getComponent(ILogObserver, None))
        self.assertIn(
            "This twistd does not let rocketd filter its logs by level.", [e.get("log_format") for e in events]
        )

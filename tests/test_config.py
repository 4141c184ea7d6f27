"""
Tests for L{rocketd.config}: defaults, the INI file, overrides, and one
clear sentence for each mistake.
"""

from __future__ import annotations

import dataclasses
import operator
import os
import re
import textwrap

from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from rocketd.config import SECTIONS, Config, ConfigError, fieldOf, loadConfig

#: The sample config shipped in the checkout.
SAMPLE = FilePath(__file__).parent().parent().child("etc").child("rocketd.conf")

TOKEN = "0123456789abcdef0123456789abcdef01234567"


class ConfigTestCase(TestCase):
    def writeConfig(self, text: str) -> str:
        """@return: the path of a new file holding C{text} (dedented)."""
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write(textwrap.dedent(text))
        return path

    def assertConfigError(self, path, overrides={}, *fragments):
        """
        Loading fails with a L{ConfigError} whose message is one sentence
        containing every fragment.

        @return: the message.
        """
        error = self.assertRaises(ConfigError, loadConfig, path, overrides)
        message = str(error)
        self.assertNotIn("\n", message)
        self.assertTrue(message.endswith("."), message)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return message


class DefaultsTests(ConfigTestCase):
    def test_defaults(self):
        """
        With no file and no overrides the config has the documented
        defaults.
        """
        config = loadConfig(None, {})
        self.assertEqual(config, Config())
        self.assertEqual(config.listen, "tcp:8080")
        self.assertEqual(config.admin, "tcp:8082:interface=127.0.0.1")
        self.assertEqual(config.state_dir, "/var/lib/rocketd")
        self.assertEqual(config.engine, "memory")
        self.assertEqual(config.max_body, 1048576)
        self.assertEqual(config.long_poll, 30.0)
        self.assertEqual(config.heartbeat, 15.0)
        self.assertEqual(config.pipe_depth, 10000)
        self.assertEqual(config.feed_backlog, 10000)
        self.assertEqual((config.stage_ttl, config.stage_max_count, config.stage_max_bytes), (3600.0, 1000, 16777216))
        self.assertEqual(config.token_ttl, 3600.0)
        self.assertEqual(config.event_backlog, 1000)
        self.assertEqual(config.event_backlog_age, 300.0)
        self.assertEqual(dict(config.vhosts), {})
        self.assertEqual(config.log_level, "info")

    def test_frozen(self):
        """A config can't be changed once built."""
        config = loadConfig(None, {})
        self.assertRaises(dataclasses.FrozenInstanceError, setattr, config, "listen", "tcp:1")
        self.assertRaises(TypeError, operator.setitem, config.vhosts, "/moon", TOKEN)

    def test_everyFieldHasAKey(self):
        """
        Every setting but the vhosts (which have their own sections) can be
        set from the file, in exactly one section.
        """
        keys = [fieldOf(name, key) for name, section in SECTIONS.items() for key in section]
        self.assertEqual(len(keys), len(set(keys)))
        fields = {f.name for f in dataclasses.fields(Config)} - {"vhosts"}
        self.assertEqual(set(keys), fields)

    def test_sampleHasTheDefaults(self):
        """
        The sample config names every key with its default: uncommented, it
        gives the default config.
        """
        text = SAMPLE.getContent().decode("utf-8")
        pattern = re.compile(r"^#\s*([a-z_]+)\s*=", re.MULTILINE)
        named = set(pattern.findall(text)) - {"token"}
        self.assertEqual(named, {key for section in SECTIONS.values() for key in section})
        uncommented = re.compile(r"^#\s*(?=[a-z_]+\s*=)(?!token)", re.MULTILINE).sub("", text)
        self.assertEqual(loadConfig(self.writeConfig(uncommented), {}), Config())
        # As shipped, everything is commented out.
        self.assertEqual(loadConfig(SAMPLE.path, {}), Config())


class FileTests(ConfigTestCase):
    def test_fileBeatsDefaults(self):
        """Every key read from the file replaces its default, typed."""
        state = os.path.abspath(self.mktemp())
        path = self.writeConfig(
            f"""
            [rocketd]
            listen = tcp:9000:interface=127.0.0.1
            admin = unix:/run/rocketd/admin.sock
            state_dir = {state}
            engine = memory
            log_level = WARN

            [restms]
            max_body = 2048
            long_poll = 2.5
            pipe_depth = 7
            feed_backlog = 8
            heartbeat = 3

            [webrocket]
            token_ttl = 60
            event_backlog = 9
            event_backlog_age = 1.5

            [vhost /moon]
            token = {TOKEN}

            [vhost /apps/chat]
            token = {"f" * 40}
            """
        )
        config = loadConfig(path, {})
        self.assertEqual(
            config,
            Config(
                listen="tcp:9000:interface=127.0.0.1",
                admin="unix:/run/rocketd/admin.sock",
                state_dir=state,
                engine="memory",
                log_level="warn",
                max_body=2048,
                long_poll=2.5,
                pipe_depth=7,
                feed_backlog=8,
                heartbeat=3.0,
                token_ttl=60.0,
                event_backlog=9,
                event_backlog_age=1.5,
                vhosts={"/moon": TOKEN, "/apps/chat": "f" * 40},
            ),
        )
        self.assertIsInstance(config.max_body, int)
        self.assertIsInstance(config.heartbeat, float)

    def test_partialFile(self):
        """Keys the file leaves out keep their defaults."""
        config = loadConfig(self.writeConfig("[restms]\nlong_poll = 5\n"), {})
        self.assertEqual(config, Config(long_poll=5.0))

    def test_rabbitmqSection(self):
        """[rabbitmq] names the broker and its heartbeat; a URI that is not AMQP is refused."""
        text = "[rocketd]\nengine = rabbitmq\n[rabbitmq]\nurl = amqps://u:p@broker/vh\nheartbeat = 5\n"
        config = loadConfig(self.writeConfig(text), {})
        self.assertEqual((config.engine, config.rabbitmq_url, config.rabbitmq_heartbeat, config.heartbeat),
                         ("rabbitmq", "amqps://u:p@broker/vh", 5, Config().heartbeat))
        for bad in ("http://broker/", "amqp:///vh"):
            error = self.assertRaises(ConfigError, loadConfig, self.writeConfig(f"[rabbitmq]\nurl = {bad}\n"), {})
            self.assertIn("url in section [rabbitmq]", str(error))

    def test_relativeStateDir(self):
        """A relative state directory is taken from the current directory."""
        config = loadConfig(self.writeConfig("[rocketd]\nstate_dir = state\n"), {})
        self.assertEqual(config.state_dir, os.path.join(os.getcwd(), "state"))

    def test_percentIsLiteral(self):
        """Values are not interpolated: a C{%} is kept as it is."""
        path = self.writeConfig("[rocketd]\nstate_dir = /srv/100%done\n")
        self.assertEqual(loadConfig(path, {}).state_dir, "/srv/100%done")

    def test_missingFile(self):
        """A config file that does not exist is an error naming it."""
        path = os.path.abspath(self.mktemp())
        self.assertConfigError(path, {}, path, "does not exist")

    def test_directory(self):
        """A directory given as the config file is an error naming it."""
        path = self.mktemp()
        os.mkdir(path)
        self.assertConfigError(path, {}, path, "directory")

    def test_notIni(self):
        """Text that is not INI is an error naming the file."""
        path = self.writeConfig("listen = tcp:1\n")
        self.assertConfigError(path, {}, path, "not a valid INI file", "line 1", "[section]")

    def test_duplicateKey(self):
        """A key given twice in a section is an error, not a silent choice."""
        path = self.writeConfig("[rocketd]\nlisten = tcp:1\nlisten = tcp:2\n")
        self.assertConfigError(path, {}, path, "'listen'", "[rocketd]", "twice", "line 3")

    def test_duplicateSection(self):
        """A section given twice is an error."""
        path = self.writeConfig("[restms]\n[restms]\n")
        self.assertConfigError(path, {}, path, "[restms]", "twice", "line 2")

    def test_notKeyValue(self):
        """A line that is no key = value is an error naming its number."""
        path = self.writeConfig("[restms]\nlong_poll = 5\nlong poll\n")
        self.assertConfigError(path, {}, path, "line 3")

    def test_notUtf8(self):
        """A file that is not UTF-8 text is an error naming it."""
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"[rocketd]\nstate_dir = /\xff\n")
        self.assertConfigError(path, {}, path, "UTF-8")

    def test_unknownSection(self):
        """An unknown section is an error naming the file and the section."""
        path = self.writeConfig("[restsm]\nlong_poll = 5\n")
        self.assertConfigError(path, {}, path, "[restsm]", "Unknown section")

    def test_defaultSectionIsUnknown(self):
        """
        C{[DEFAULT]} is no special section: its keys would silently go to
        every section.
        """
        path = self.writeConfig("[DEFAULT]\nlisten = tcp:1\n")
        self.assertConfigError(path, {}, path, "[DEFAULT]")

    def test_unknownKey(self):
        """An unknown key is an error naming the file, section and key."""
        path = self.writeConfig("[restms]\nlong_pol = 5\n")
        self.assertConfigError(path, {}, path, "[restms]", "'long_pol'", "Unknown key")

    def test_keyInWrongSection(self):
        """A key is known only in its own section."""
        path = self.writeConfig("[rocketd]\nlong_poll = 5\n")
        self.assertConfigError(path, {}, path, "[rocketd]", "'long_poll'")

    def test_notANumber(self):
        """A number that is not one is an error naming file, section and key."""
        for key in ("max_body", "long_poll", "pipe_depth", "feed_backlog", "heartbeat"):
            path = self.writeConfig(f"[restms]\n{key} = lots\n")
            self.assertConfigError(path, {}, path, "[restms]", key, "'lots'")
        for key in ("token_ttl", "event_backlog", "event_backlog_age"):
            path = self.writeConfig(f"[webrocket]\n{key} = lots\n")
            self.assertConfigError(path, {}, path, "[webrocket]", key, "'lots'")

    def test_stageKeys(self):
        """The staged content bounds are [restms] keys: a positive time, count and size."""
        path = self.writeConfig("[restms]\nstage_ttl = 90\nstage_max_count = 5\nstage_max_bytes = 4096\n")
        self.assertEqual(loadConfig(path, {}), Config(stage_ttl=90.0, stage_max_count=5, stage_max_bytes=4096))
        for key, value, words in (
            ("stage_ttl", "0", "greater than zero"),
            ("stage_max_count", "1.5", "whole number"),
            ("stage_max_bytes", "-1", "greater than zero"),
        ):
            path = self.writeConfig(f"[restms]\n{key} = {value}\n")
            self.assertConfigError(path, {}, path, "[restms]", key, words)

    def test_notAWholeNumber(self):
        """Counts and sizes are whole numbers."""
        path = self.writeConfig("[restms]\nmax_body = 1.5\n")
        self.assertConfigError(path, {}, "max_body", "whole number")

    def test_notPositive(self):
        """Zero, negative and non-finite numbers are errors."""
        for value in ("0", "-1", "nan", "inf"):
            path = self.writeConfig(f"[restms]\nlong_poll = {value}\n")
            self.assertConfigError(path, {}, "long_poll", "greater than zero")
        path = self.writeConfig("[webrocket]\nevent_backlog = 0\n")
        self.assertConfigError(path, {}, "event_backlog", "greater than zero")

    def test_badEndpoint(self):
        """An endpoint string the endpoint parser rejects is an error."""
        for value in ("tcp:port", "carrier-pigeon:1", "tcp:8080:nosuch=1"):
            path = self.writeConfig(f"[rocketd]\nlisten = {value}\n")
            self.assertConfigError(path, {}, path, "listen", value, "not a valid server endpoint")
        path = self.writeConfig("[rocketd]\nadmin =\n")
        self.assertConfigError(path, {}, "admin", "empty")

    def test_unknownEngine(self):
        """Only the known engines may be named."""
        path = self.writeConfig("[rocketd]\nengine = carrier\n")
        self.assertConfigError(path, {}, "engine", "'carrier'", "memory")

    def test_unknownLogLevel(self):
        """Only Twisted's log levels may be named."""
        path = self.writeConfig("[rocketd]\nlog_level = loud\n")
        self.assertConfigError(path, {}, "log_level", "'loud'", "debug")

    def test_frontDoorOnOrOff(self):
        """front_door is on or off, nothing else."""
        self.assertFalse(loadConfig(self.writeConfig("[rocketd]\nfront_door = Off\n"), {}).front_door)
        self.assertTrue(loadConfig(self.writeConfig("[rocketd]\nfront_door = on\n"), {}).front_door)
        path = self.writeConfig("[rocketd]\nfront_door = yes\n")
        self.assertConfigError(path, {}, "front_door", "on or off")


class VhostTests(ConfigTestCase):
    def test_badPath(self):
        """A vhost section's path must be a valid vhost path."""
        for path in ("moon", "/moon/", "/mo on", "/", "/moon//x"):
            conf = self.writeConfig(f"[vhost {path}]\ntoken = {TOKEN}\n")
            self.assertConfigError(conf, {}, conf, f"[vhost {path}]")

    def test_reservedPath(self):
        """The paths of the daemon's other parts can't be vhosts."""
        for path in ("/restms", "/admin", "/metrics", "/static", "/static/x"):
            conf = self.writeConfig(f"[vhost {path}]\ntoken = {TOKEN}\n")
            self.assertConfigError(conf, {}, conf, "reserved")

    def test_badToken(self):
        """A token is exactly 40 lowercase hex digits."""
        for token in (TOKEN.upper(), TOKEN[:-1], TOKEN + "0", "g" * 40, ""):
            conf = self.writeConfig(f"[vhost /moon]\ntoken = {token}\n")
            self.assertConfigError(conf, {}, conf, "[vhost /moon]", "40 lowercase hex")

    def test_missingToken(self):
        """A vhost section needs its token."""
        conf = self.writeConfig("[vhost /moon]\n")
        self.assertConfigError(conf, {}, conf, "[vhost /moon]", "token")

    def test_duplicateVhost(self):
        """A vhost declared twice (the section names differ in spacing) is an error."""
        conf = self.writeConfig(f"[vhost /moon]\ntoken = {TOKEN}\n[vhost  /moon]\ntoken = {'f' * 40}\n")
        self.assertConfigError(conf, {}, conf, "/moon", "twice")

    def test_unknownVhostKey(self):
        """A vhost section has no other key than its token."""
        conf = self.writeConfig(f"[vhost /moon]\ntoken = {TOKEN}\ntitle = Moon\n")
        self.assertConfigError(conf, {}, conf, "[vhost /moon]", "'title'")


class OverrideTests(ConfigTestCase):
    def test_overridesBeatFile(self):
        """
        An override beats the file, which beats the default; a None
        override is no override.
        """
        path = self.writeConfig("[rocketd]\nlisten = tcp:9000\n[restms]\nlong_poll = 5\nheartbeat = 7\n")
        config = loadConfig(path, {"listen": "tcp:9001", "long_poll": None, "max_body": "10"})
        self.assertEqual(config, Config(listen="tcp:9001", long_poll=5.0, heartbeat=7.0, max_body=10))

    def test_typedOverrides(self):
        """Overrides may be given already typed."""
        config = loadConfig(None, {"long_poll": 2, "pipe_depth": 3, "vhosts": {"/moon": TOKEN}})
        self.assertEqual(config, Config(long_poll=2.0, pipe_depth=3, vhosts={"/moon": TOKEN}))

    def test_badOverride(self):
        """A bad override is an error naming the option."""
        self.assertConfigError(None, {"long_poll": "soon"}, "--long-poll", "'soon'")
        self.assertConfigError(None, {"state_dir": " "}, "--state-dir", "empty")
        self.assertConfigError(None, {"listen": "tcp:x"}, "--listen", "tcp:x")
        self.assertConfigError(None, {"pipe_depth": True}, "--pipe-depth")
        self.assertConfigError(None, {"vhosts": {"/admin": TOKEN}}, "/admin", "reserved")

    def test_unknownOverride(self):
        """An override of no setting is an error."""
        self.assertConfigError(None, {"colour": "red"}, "'colour'")

    def test_fileErrorWinsOverOverride(self):
        """A bad file is an error even when an override sets the same key."""
        path = self.writeConfig("[restms]\nlong_poll = soon\n")
        self.assertConfigError(path, {"long_poll": "5"}, path, "long_poll")

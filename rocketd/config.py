"""
The daemon's settings: one typed, validated L{Config}, read from an INI
file (see C{man/rocketd.conf.5} and C{etc/rocketd.conf}) and the command
line.

Precedence: the defaults here, then the file, then the command line. Every
mistake is a L{ConfigError} whose message is one sentence that says what is
wrong and where (file, section, key), so that C{twistd} can show it as it is.

This module reads and checks settings and nothing else; L{rocketd.tap}
passes the result to L{rocketd.app}, which hands each component its part.
"""

from __future__ import annotations

import configparser
import dataclasses
import math
import os
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Dict, Mapping, Optional
from urllib.parse import urlsplit

from twisted.internet.endpoints import serverFromString
from twisted.logger import InvalidLogLevelError, LogLevel

from rocketd.errors import EngineError
from rocketd.webrocket.origins import parseOrigins
from rocketd.webrocket.vhosts import TOKEN, checkPath

#: The engines a config may name.
ENGINES = ("memory", "rabbitmq")
#: The log levels a config may name, least severe first.
LOG_LEVELS = tuple(level.name for level in LogLevel.iterconstants())
#: The daemon's log formats (C{log_format}, C{--log-format}) and the
#: access log's (C{access_log_format}).
LOG_FORMATS = ("text", "json")
ACCESS_LOG_FORMATS = ("combined", "json")
#: The prefix of a vhost section's name: C{[vhost /moon]}.
VHOST_SECTION = "vhost "


class ConfigError(ValueError):
    """A setting is missing, unknown or invalid; the argument is one sentence."""


@dataclass(frozen=True)
class Config:
    """
    Every setting of one daemon.

    @ivar listen: the main listener's server endpoint string.
    @ivar admin: the admin listener's server endpoint string.
    @ivar state_dir: the directory for persistent state (an absolute path).
    @ivar engine: the routing engine's name, one of L{ENGINES}.
    @ivar max_body: the largest request body accepted, in bytes.
    @ivar long_poll: the longest an asynclet GET waits, in seconds.
    @ivar heartbeat: seconds between heartbeats on open streams.
    @ivar pipe_depth: the most messages a pipe holds.
    @ivar feed_backlog: the most messages a rotator or service feed keeps
        while no join takes them.
    @ivar stage_ttl: how long a content staged on a feed and claimed by no
        message is kept, in seconds.
    @ivar stage_max_count: the most such contents a feed keeps.
    @ivar stage_max_bytes: the most bytes of such contents a feed keeps.
    @ivar token_ttl: how long a browser access token is valid, in seconds.
    @ivar event_backlog: the most triggered events a vhost keeps while no
        backend worker takes them.
    @ivar event_backlog_age: how long such an event may wait, in seconds.
    @ivar send_queue: the most bytes that may wait for one slow WebSocket
        client before it is disconnected (close code 1008).
    @ivar allowed_origins: the origins whose pages may open a WebSocket
        (C{("*",)}: any), normalised.
    @ivar ping_interval: seconds between pings of an idle WebSocket (and
        how long its pong may take).
    @ivar vhosts: the vhosts declared in the file: path to 40-hex token.
    @ivar log_level: the least severe log level written, one of
        L{LOG_LEVELS}.
    @ivar anonymous: who may use RestMS (which has no authentication):
        C{"loopback"}, clients on this machine only, or C{"any"}.
    @ivar access_log: a file to append one line per HTTP request to
        (the combined log format), or C{""} for no access log.
    @ivar access_log_format: that line's format, one of
        L{ACCESS_LOG_FORMATS}: C{combined} or C{json} (one object).
    @ivar log_format: the daemon's log, one of L{LOG_FORMATS}: C{text}
        (twistd's lines) or C{json} (one object per line).
    @ivar head_timeout: the longest a request's head (request line and
        headers) may take to arrive, in seconds (then 408 and close).
    @ivar max_connections: the most connections the main listener keeps
        open at once; beyond it new ones are closed at once, and counted.
    @ivar metrics: an endpoint for a listener of its own serving the
        Prometheus metrics at C{/metrics} (they are always on the admin
        listener too), or C{""} for none.
    @ivar rabbitmq_url: the AMQP URI of the broker (credentials and broker
        vhost; C{amqps://} for TLS) of the C{rabbitmq} engine
        (experimental); the file's C{[rabbitmq] url}.
    @ivar rabbitmq_heartbeat: the AMQP heartbeat, in seconds; the file's
        C{[rabbitmq] heartbeat}.
    @ivar front_door: whether the main listener parses HTTP with the
        front door (L{rocketd.http.frontdoor}: the hot routes served
        without twisted.web's request machinery); on by default.
    """

    listen: str = "tcp:8080"
    admin: str = "tcp:8082:interface=127.0.0.1"
    state_dir: str = "/var/lib/rocketd"
    engine: str = "memory"
    max_body: int = 1048576
    long_poll: float = 30.0
    heartbeat: float = 15.0
    pipe_depth: int = 10000
    anonymous: str = "loopback"
    feed_backlog: int = 10000
    stage_ttl: float = 3600.0
    stage_max_count: int = 1000
    stage_max_bytes: int = 16777216
    token_ttl: float = 3600.0
    event_backlog: int = 1000
    event_backlog_age: float = 300.0
    send_queue: int = 1048576
    allowed_origins: tuple = ("*",)
    ping_interval: float = 30.0
    vhosts: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    log_level: str = "info"
    access_log: str = ""
    access_log_format: str = "combined"
    log_format: str = "text"
    head_timeout: float = 10.0
    max_connections: int = 16384
    metrics: str = ""
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    rabbitmq_heartbeat: int = 10
    front_door: bool = True


#: Where each setting lives in the file: section -> key -> field name
#: (every key is named as its field). Vhost sections are apart (see
#: L{VHOST_SECTION}).
SECTIONS: Mapping[str, tuple] = MappingProxyType(
    {
        "rocketd": (
            "listen",
            "admin",
            "state_dir",
            "engine",
            "log_level",
            "access_log",
            "access_log_format",
            "log_format",
            "head_timeout",
            "max_connections",
            "metrics",
            "front_door",
        ),
        "restms": (
            "max_body",
            "long_poll",
            "pipe_depth",
            "feed_backlog",
            "stage_ttl",
            "stage_max_count",
            "stage_max_bytes",
            "heartbeat",
            "anonymous",
        ),
        "webrocket": (
            "token_ttl",
            "event_backlog",
            "event_backlog_age",
            "send_queue",
            "allowed_origins",
            "ping_interval",
        ),
        "rabbitmq": ("url", "heartbeat"),
    }
)

#: The keys whose field is not named as the key: (section, key) -> field.
RENAMED: Mapping[tuple, str] = MappingProxyType(
    {("rabbitmq", "url"): "rabbitmq_url", ("rabbitmq", "heartbeat"): "rabbitmq_heartbeat"}
)


def fieldOf(section: str, key: str) -> str:
    """@return: the L{Config} field a section's key sets."""
    return RENAMED.get((section, key), key)

_DEFAULTS = Config()


class _NoReactor:
    """
    The reactor an endpoint is parsed with to check its description: an
    endpoint keeps its reactor until it listens, which this one never does.
    """


def _endpoint(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("it must not be empty")
    try:
        serverFromString(_NoReactor(), value)
    except Exception as e:
        raise ValueError(f"{value!r} is not a valid server endpoint ({e})") from None
    return value


def _choice(value: str, choices: tuple) -> str:
    value = value.strip().lower()
    if value not in choices:
        raise ValueError(f"{value!r} is not one of: {', '.join(choices)}")
    return value


def _optionalEndpoint(value: str) -> str:
    return _endpoint(value) if value.strip() else ""


def _text(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("it must not be empty")
    return value


def _directory(value: str) -> str:
    return os.path.abspath(_text(value))


def _optionalPath(value: str) -> str:
    value = value.strip()
    return os.path.abspath(value) if value else ""


def _anonymous(value: str) -> str:
    value = value.strip().lower()
    if value not in ("loopback", "any"):
        raise ValueError(f"{value!r} is not one of: loopback, any")
    return value


def _engine(value: str) -> str:
    value = value.strip()
    if value not in ENGINES:
        raise ValueError(f"{value!r} is not an engine; the choices are: {', '.join(ENGINES)}")
    return value


def _logLevel(value: str) -> str:
    value = value.strip().lower()
    try:
        LogLevel.levelWithName(value)
    except InvalidLogLevelError:
        raise ValueError(f"{value!r} is not a log level; the choices are: {', '.join(LOG_LEVELS)}") from None
    return value


def _amqpURL(value: str) -> str:
    value = _text(value)
    parts = urlsplit(value)
    if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
        raise ValueError(f"{value!r} is not an AMQP URI (amqp://user:password@host:port/vhost)")
    return value


def _positiveInt(value) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a whole number")
    if isinstance(value, int):
        number = value
    else:
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a whole number") from None
    if number <= 0:
        raise ValueError(f"it must be greater than zero, not {number}")
    return number


def _positiveFloat(value) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"it must be a number of seconds greater than zero, not {value!r}")
    return number


def _onOff(value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in ("on", "off"):
        raise ValueError("it must be on or off")
    return text == "on"


def _origins(value) -> tuple:
    if isinstance(value, (list, tuple)):
        value = " ".join(value)
    return parseOrigins(value)


#: How each field's text becomes its value (raising ValueError with the
#: end of a sentence).
_PARSERS: Mapping[str, Callable[[Any], Any]] = MappingProxyType(
    {
        "listen": _endpoint,
        "admin": _endpoint,
        "state_dir": _directory,
        "engine": _engine,
        "log_level": _logLevel,
        "access_log": _optionalPath,
        "access_log_format": lambda v: _choice(v, ACCESS_LOG_FORMATS),
        "log_format": lambda v: _choice(v, LOG_FORMATS),
        "anonymous": _anonymous,
        "max_body": _positiveInt,
        "pipe_depth": _positiveInt,
        "feed_backlog": _positiveInt,
        "stage_ttl": _positiveFloat,
        "stage_max_count": _positiveInt,
        "stage_max_bytes": _positiveInt,
        "event_backlog": _positiveInt,
        "long_poll": _positiveFloat,
        "heartbeat": _positiveFloat,
        "token_ttl": _positiveFloat,
        "event_backlog_age": _positiveFloat,
        "send_queue": _positiveInt,
        "allowed_origins": _origins,
        "ping_interval": _positiveFloat,
        "head_timeout": _positiveFloat,
        "max_connections": _positiveInt,
        "metrics": _optionalEndpoint,
        "rabbitmq_url": _amqpURL,
        "rabbitmq_heartbeat": _positiveInt,
        "front_door": _onOff,
    }
)


def _parse(name: str, value, where: str) -> Any:
    try:
        return _PARSERS[name](value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"Invalid {where}: {e}.") from None


def _vhost(path: str, token: str, where: str) -> tuple:
    try:
        checkPath(path)
    except EngineError as e:
        raise ConfigError(f"Invalid {where}: {e.message}") from None
    if not isinstance(token, str) or not TOKEN.fullmatch(token.strip()):
        raise ConfigError(f"Invalid {where}: the token must be exactly 40 lowercase hex digits.")
    return path, token.strip()


def _readFile(path: str) -> configparser.ConfigParser:
    # No [DEFAULT] magic: a section of that name is an unknown section.
    parser = configparser.ConfigParser(interpolation=None, default_section="\0", strict=True)
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f, source=path)
    except FileNotFoundError:
        raise ConfigError(f"The config file {path} does not exist.") from None
    except IsADirectoryError:
        raise ConfigError(f"The config file {path} is a directory, not a file.") from None
    except OSError as e:
        raise ConfigError(f"The config file {path} can't be read: {e.strerror or e}.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"The config file {path} is not UTF-8 text.") from None
    except configparser.Error as e:
        raise ConfigError(_syntaxError(path, e)) from None
    return parser


def _syntaxError(path: str, e: configparser.Error) -> str:
    """@return: the sentence that says what is wrong with an INI file's syntax."""
    if isinstance(e, configparser.MissingSectionHeaderError):
        return f"The config file {path} is not a valid INI file: line {e.lineno} comes before any [section]."
    if isinstance(e, configparser.DuplicateOptionError):
        return f"The key {e.option!r} is given twice in section [{e.section}] of {path} (line {e.lineno})."
    if isinstance(e, configparser.DuplicateSectionError):
        return f"The section [{e.section}] is given twice in {path} (line {e.lineno})."
    if isinstance(e, configparser.ParsingError):
        lineno = e.errors[0][0] if e.errors else "?"
        return (
            f"The config file {path} is not a valid INI file: line {lineno} "
            "is neither a [section] nor a 'key = value'."
        )
    return f"The config file {path} is not a valid INI file: {' '.join(str(e).split())}."


def _fromFile(path: str) -> Dict[str, Any]:
    """
    Read the settings a file gives.

    @return: field name -> value, for the fields the file sets.
    """
    parser = _readFile(path)
    values: Dict[str, Any] = {}
    vhosts: Dict[str, str] = {}
    for section in parser.sections():
        keys = parser[section]
        if section.startswith(VHOST_SECTION):
            vhostPath = section[len(VHOST_SECTION) :].strip()
            where = f"vhost section [{section}] in {path}"
            for key in keys:
                if key != "token":
                    raise ConfigError(
                        f"Unknown key {key!r} in section [{section}] of {path}: "
                        "a vhost section has only 'token'."
                    )
            if "token" not in keys:
                raise ConfigError(
                    f"The section [{section}] of {path} needs a 'token' (40 lowercase hex digits)."
                )
            vhostPath, token = _vhost(vhostPath, keys["token"], where)
            if vhostPath in vhosts:
                raise ConfigError(f"The vhost {vhostPath} is declared twice in {path}.")
            vhosts[vhostPath] = token
            continue
        if section not in SECTIONS:
            known = ", ".join(f"[{s}]" for s in SECTIONS)
            raise ConfigError(
                f"Unknown section [{section}] in {path}: the sections are {known} and [vhost /path]."
            )
        for key in keys:
            if key not in SECTIONS[section]:
                raise ConfigError(
                    f"Unknown key {key!r} in section [{section}] of {path}: "
                    f"the keys there are {', '.join(SECTIONS[section])}."
                )
            values[fieldOf(section, key)] = _parse(
                fieldOf(section, key), keys[key], f"{key} in section [{section}] of {path}"
            )
    if vhosts:
        values["vhosts"] = vhosts
    return values


def loadConfig(path: Optional[str], overrides: Mapping[str, Any] = MappingProxyType({})) -> Config:
    """
    Build the config: the defaults, then the file's settings, then the
    overrides.

    @param path: the INI file to read, or None to read none.
    @param overrides: field name -> value (text, as on a command line, or
        already typed) for the settings given on the command line; None
        values are ignored.
    @return: the L{Config}.
    @raise ConfigError: one sentence naming the file, section and key, or
        the command line setting, that is wrong.
    """
    values: Dict[str, Any] = {}
    if path is not None:
        values.update(_fromFile(path))
    fields = {f.name for f in dataclasses.fields(Config)}
    for name, value in overrides.items():
        if value is None:
            continue
        if name not in fields:
            raise ConfigError(f"Unknown setting {name!r}.")
        if name == "vhosts":
            values[name] = dict(_vhost(p, t, f"vhost {p}") for p, t in dict(value).items())
        else:
            values[name] = _parse(name, value, f"--{name.replace('_', '-')} value")
    if "vhosts" in values:
        values["vhosts"] = MappingProxyType(dict(values["vhosts"]))
    return dataclasses.replace(_DEFAULTS, **values)

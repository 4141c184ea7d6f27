"""
The C{twistd rocketd} entry point: command line options and
L{makeService}.

    twistd -n rocketd [--config FILE] [--listen ENDPOINT] [--admin ENDPOINT] ...

The options build one L{rocketd.config.Config} (defaults, then the config
file, then the options); L{rocketd.app} builds everything else from it.
"""

from __future__ import annotations

from typing import Optional

from twisted.application.app import ServerOptions as TwistdOptions
from twisted.application.service import MultiService
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LegacyLogObserverWrapper,
    LogLevel,
    LogLevelFilterPredicate,
    Logger,
)
from twisted.python import usage

from rocketd.config import ENGINES, LOG_FORMATS, LOG_LEVELS, Config, ConfigError, loadConfig

log = Logger()

_DEFAULTS = Config()

#: Option name -> the L{Config} field it sets.
_FIELDS = {
    "listen": "listen",
    "admin": "admin",
    "state-dir": "state_dir",
    "engine": "engine",
    "long-poll": "long_poll",
    "max-body": "max_body",
    "pipe-depth": "pipe_depth",
    "heartbeat": "heartbeat",
    "log-level": "log_level",
    "log-format": "log_format",
    "rabbitmq-url": "rabbitmq_url",
}


class Options(usage.Options):
    """
    The options of C{twistd rocketd}; after parsing, C{self.config} is the
    L{Config}.
    """

    synopsis = "[options]"
    longdesc = (
        "Serve RestMS and WebRocket messaging over HTTP. Settings come from the "
        "defaults, then the config file, then these options. See rocketd(8) and "
        "rocketd.conf(5)."
    )

    # Every default is None so that an option overrides the file only when
    # given; the real defaults are the Config's, shown in the help.
    optParameters = [
        ["config", "c", None, "Read settings from this INI file (see rocketd.conf(5))."],
        ["listen", "l", None, f"Main (RestMS and WebRocket) listener endpoint [default: {_DEFAULTS.listen}]."],
        ["admin", None, None, f"Admin API listener endpoint [default: {_DEFAULTS.admin}]."],
        ["state-dir", None, None, f"Directory for persistent state [default: {_DEFAULTS.state_dir}]."],
        ["engine", None, None, f"Routing engine, one of: {', '.join(ENGINES)} [default: {_DEFAULTS.engine}]."],
        ["long-poll", None, None, f"Longest asynclet wait, in seconds [default: {_DEFAULTS.long_poll:g}]."],
        ["max-body", None, None, f"Largest request body, in bytes [default: {_DEFAULTS.max_body}]."],
        ["pipe-depth", None, None, f"Most messages a pipe holds [default: {_DEFAULTS.pipe_depth}]."],
        ["heartbeat", None, None, f"Seconds between stream heartbeats [default: {_DEFAULTS.heartbeat:g}]."],
        ["rabbitmq-url", None, None, "AMQP URI of the broker of the rabbitmq engine (experimental) "
         f"[default: {_DEFAULTS.rabbitmq_url}]."],
        [
            "log-level",
            None,
            None,
            f"Least severe level logged, one of: {', '.join(LOG_LEVELS)} [default: {_DEFAULTS.log_level}].",
        ],
        [
            "log-format",
            None,
            None,
            f"Log lines as {' or '.join(LOG_FORMATS)} (one JSON object per line) [default: {_DEFAULTS.log_format}].",
        ],
    ]

    compData = usage.Completions(
        optActions={
            "config": usage.CompleteFiles("*.conf"),
            "state-dir": usage.CompleteDirs(),
            "engine": usage.CompleteList(list(ENGINES)),
            "log-level": usage.CompleteList(list(LOG_LEVELS)),
            "log-format": usage.CompleteList(list(LOG_FORMATS)),
        }
    )

    config: Config
    _settingsError = False

    def postOptions(self):
        """
        Build C{self.config}.

        @raise usage.UsageError: with the L{ConfigError}'s sentence.
        """
        overrides = {field: self[option] for option, field in _FIELDS.items()}
        try:
            self.config = loadConfig(self["config"], overrides)
        except ConfigError as e:
            self._settingsError = True
            raise usage.UsageError(str(e)) from None

    def getUsage(self, width=None):
        # twistd prints the usage above a usage error; after a wrong
        # setting (as opposed to a wrong option) the error's one sentence
        # says it all.
        if self._settingsError:
            return ""
        return usage.Options.getUsage(self, width)


class _LogLevelService(MultiService):
    """
    The daemon's service as C{twistd} runs it: when it joins C{twistd}'s
    application, it gives the application a log observer (the one
    C{twistd} would make from its own options) that drops the events
    below the configured level.
    """

    def __init__(self, service, level: LogLevel, serverOptions, logFormat: str = "text"):
        MultiService.__init__(self)
        self._level = level
        self._format = logFormat
        self._serverOptions = serverOptions
        service.setServiceParent(self)

    def setServiceParent(self, parent):
        MultiService.setServiceParent(self, parent)
        getComponent = getattr(parent, "getComponent", None)
        if getComponent is None or getComponent(ILogObserver, None) is not None:
            return
        if self._format == "json":
            observer = _jsonObserver(self._serverOptions)
        else:
            observer = _twistdObserver(self._serverOptions)
        if observer is None:
            return
        predicate = LogLevelFilterPredicate(defaultLogLevel=self._level)
        parent.setComponent(ILogObserver, FilteringLogObserver(observer, [predicate]))


def _twistdObserver(serverOptions) -> Optional[ILogObserver]:
    """
    Make the log observer C{twistd} makes from its options (a log file,
    standard output or syslog).

    @return: the observer, or None if this C{twistd} can't say.
    """
    try:
        from twisted.scripts.twistd import _SomeApplicationRunner

        observer = _SomeApplicationRunner.loggerFactory(serverOptions)._getLogObserver()
    except (ImportError, AttributeError):
        log.warn("This twistd does not let rocketd filter its logs by level.")
        return None
    if not ILogObserver.providedBy(observer):
        # A file observer is a new-style one; syslog's is a legacy callable.
        observer = LegacyLogObserverWrapper(observer)
    return observer


def _jsonObserver(serverOptions) -> ILogObserver:
    """
    One JSON object per line (L{rocketd.admin.logs.JSONLinesObserver}),
    written where C{twistd} would write its text lines: its C{--logfile}
    (rotated as twistd rotates it), else standard output under
    C{--nodaemon}, else C{twistd.log}. With C{--syslog}, JSON lines go to
    standard output.
    """
    import sys

    from twisted.python.logfile import LogFile

    from rocketd.admin.logs import JSONLinesObserver

    name = serverOptions.get("logfile")
    if name == "-" or (not name and (serverOptions.get("nodaemon") or serverOptions.get("syslog"))):
        return JSONLinesObserver(sys.stdout)
    return JSONLinesObserver(LogFile.fromFullPath(name or "twistd.log"))


def makeService(options: Options, reactor=None):
    """
    Build the daemon's service from parsed options.

    @param options: a parsed L{Options}.
    @param reactor: the reactor to listen and schedule with; the global one
        if None.
    @return: the L{twisted.application.service.IService} that runs the
        main and admin listeners. Under C{twistd} (the options' parent
        is C{twistd}'s), it also installs the log level filter.
    """
    if reactor is None:
        from twisted.internet import reactor
    from rocketd.app import makeRocketdService

    config = options.config
    service = makeRocketdService(config, reactor)
    serverOptions = getattr(options, "parent", None)
    if not isinstance(serverOptions, TwistdOptions):
        # Not run by twistd (a test, or twist, which has its own --log-level).
        return service
    return _LogLevelService(service, LogLevel.levelWithName(config.log_level), serverOptions, config.log_format)

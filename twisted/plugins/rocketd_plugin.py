"""The C{twistd rocketd} plugin (see L{rocketd.tap})."""

from twisted.application.service import ServiceMaker

rocketd = ServiceMaker("rocketd", "rocketd.tap", "RestMS and WebRocket messaging over HTTP", "rocketd")

"""
The composition root (L{rocketd.app.Rocketd}) wires the WebRocket face's
parts through their public surfaces: the frontend hears of closed channels
and is counted among their subscribers, the browser tokens go with their
vhost, and the admin API shows the frontend's slow clients.
"""

import json
import os

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import TestCase

from rocketd.app import Rocketd
from rocketd.config import Config
from rocketd.webrocket.frontend import Frontend
from tests.support import MOON
from tests.test_webrocket_frontend import FakeLink


class WiringTests(TestCase):
    def setUp(self):
        self.closed = []
        channelClosed = Frontend.channelClosed

        def recordingChannelClosed(frontend, vhost, name):
            self.closed.append((vhost.path, name))
            return channelClosed(frontend, vhost, name)

        self.patch(Frontend, "channelClosed", recordingChannelClosed)
        state = self.mktemp()
        os.makedirs(state)
        self.reactor = MemoryReactorClock()
        self.rocketd = Rocketd(Config(state_dir=state, vhosts={"/moon": MOON}), self.reactor)
        self.successResultOf(self.rocketd.start())
        self.frontend = self.rocketd.frontend
        self.channels = self.frontend.channels
        self.moon = self.rocketd.vhosts.get("/moon")

    def test_browsersAreSubscribersAndHearOfTheClose(self):
        """A browser counts among a channel's subscribers, and is told when it closes."""
        self.successResultOf(self.channels.openChannel(self.moon, "news"))
        link = FakeLink(self.reactor)
        session = self.frontend.connect(self.moon, link)
        session.received(json.dumps({"subscribe": {"channel": "news"}}).encode(), False)
        self.assertEqual(link.take()[-1], {":subscribed": {"channel": "news"}})
        self.assertEqual(self.successResultOf(self.channels.getChannel(self.moon, "news"))["subscribers"], 1)
        self.successResultOf(self.channels.closeChannel(self.moon, "news"))
        self.assertEqual(link.take(), [{":channelClosed": {"channel": "news"}}])
        self.assertEqual(self.closed, [("/moon", "news")])
        self.assertEqual(self.frontend.subscribers("/moon", "news"), [])

    def test_tokensGoWithTheirVhost(self):
        """Deleting a vhost voids the browser tokens issued for it."""
        self.successResultOf(self.rocketd.vhosts.add("/sun"))
        token = self.frontend.tokens.issue("/sun", "ann", ".*")
        other = self.frontend.tokens.issue("/moon", "ann", ".*")
        self.successResultOf(self.rocketd.vhosts.delete("/sun"))
        self.assertIsNone(self.frontend.tokens.consume(token, "/sun"))
        self.assertIsNotNone(self.frontend.tokens.consume(other, "/moon"))

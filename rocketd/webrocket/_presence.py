"""
Who is in each presence channel.

The members of a presence channel are the frontend's connections
subscribed to it, each with the C{uid} of its token and the C{data} it
subscribed with; a I{hidden} member is a member that is neither announced
nor listed. This state lives in the process that holds the connections:
with several daemons on one engine, each knows its own members only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

#: A presence channel's key: C{(vhost path, channel name)}.
ChannelKey = Tuple[str, str]


@dataclass
class Member:
    """
    One member of a presence channel.

    @ivar sid: the connection's session id.
    @ivar uid: the user id of the connection's token.
    @ivar data: what it subscribed with (an object).
    @ivar hidden: whether it is left out of announcements and lists.
    """

    sid: str
    uid: str
    data: dict = field(default_factory=dict)
    hidden: bool = False

    def describe(self) -> dict:
        """What others see of the member: its data with its C{uid}."""
        return {**self.data, "uid": self.uid}


class Presence:
    """The members of every presence channel, in the order they joined."""

    def __init__(self):
        self._channels: Dict[ChannelKey, Dict[str, Member]] = {}

    def add(self, key: ChannelKey, member: Member) -> List[dict]:
        """
        Add a member (replacing one with the same sid).

        @return: what the new member sees of those already there: the
            described non-hidden members, in join order.
        """
        present = self.visible(key, member.sid)
        self._channels.setdefault(key, {})[member.sid] = member
        return present

    def visible(self, key: ChannelKey, exceptSid: Optional[str] = None) -> List[dict]:
        """@return: the described non-hidden members but C{exceptSid}, in join order."""
        members = self._channels.get(key, {})
        return [m.describe() for m in members.values() if not m.hidden and m.sid != exceptSid]

    def remove(self, key: ChannelKey, sid: str) -> Optional[Member]:
        """@return: the removed L{Member}, or None if it was not there."""
        members = self._channels.get(key)
        if members is None:
            return None
        member = members.pop(sid, None)
        if not members:
            del self._channels[key]
        return member

    def members(self, key: ChannelKey) -> List[Member]:
        """@return: the channel's members (hidden ones included), in join order."""
        return list(self._channels.get(key, {}).values())

    def forget(self, key: ChannelKey) -> None:
        """Drop a channel's members (the channel was closed)."""
        self._channels.pop(key, None)

    def forgetVhost(self, vhost: str) -> None:
        """Drop the members of every channel of a vhost (it was deleted)."""
        for key in [k for k in self._channels if k[0] == vhost]:
            del self._channels[key]

"""
The engine's interfaces.

Both engines (the embedded one in L{rocketd.engine.memory} and, later, the
RabbitMQ one) provide these, and both faces (RestMS, WebRocket) use nothing
else. Every operation returns a L{Deferred}, even where the embedded engine
could answer at once, so that a networked engine implements the same
contract. Failures are the exceptions of L{rocketd.errors}.

The contract holds for an engine that spans processes, so everything that
crosses it is data: a join's predicate is a value of
L{rocketd.engine.predicates} (never a callable), a message is a
L{rocketd.engine.message.Message} whose C{cache} stays in the process that
filled it, and an engine is usable only once L{IEngine.start} has fired.

Vocabulary (RestMS's): a I{domain} groups feeds and pipes; a I{feed} routes
the messages published to it; a I{pipe} holds the messages routed to it; a
I{join} connects a pipe to a feed with a selector (an address pattern,
headers or a predicate). Every feed, pipe, join, held message and content has
a I{hash}: an unguessable URL-safe string (at least 128 random bits) that is
its capability and its private name.
"""

from zope.interface import Attribute, Interface

#: The seven feed types.
FEED_TYPES = ("fanout", "direct", "topic", "headers", "system", "rotator", "service")
#: The three pipe types.
PIPE_TYPES = ("fifo", "stream", "ondemand")
#: The name of every domain's default feed.
DEFAULT_FEED = "default"
#: The name of the default domain.
DEFAULT_DOMAIN = "default"


class IEngine(Interface):
    """
    A routing engine: a set of domains, and a registry of private resources
    by hash.
    """

    def start():
        """
        Make the engine ready: connect, replay what it keeps, whatever it
        needs. It is called once, before any other operation (the
        composition root calls it first in C{Rocketd.start()}, and opens
        no listener before it fired); the operations are valid only after
        it fired.

        @return: Deferred firing with None when the engine is ready, or
            failing with why it could not start.
        """

    def createDomain(name, title=""):
        """
        Create a domain, with its default feed (type direct, named
        L{DEFAULT_FEED}); creating one that exists changes nothing.

        @return: Deferred firing with the L{IDomain}.
        """

    def getDomain(name):
        """
        @return: Deferred firing with the L{IDomain} of that name, or failing
            with L{rocketd.errors.NoSuchResource}.
        """

    def listDomains():
        """@return: Deferred firing with a list of every L{IDomain}."""

    def deleteDomain(name):
        """
        Delete a domain with all its feeds and pipes (and so their joins and
        held messages). Deleting one that does not exist is not an error.

        @return: Deferred firing with None.
        """

    def lookup(hash):
        """
        Find a private resource by its hash.

        @return: Deferred firing with the L{IFeed}, L{IPipe}, L{IJoin},
            L{IHeldMessage}, L{IContent} or L{IAsynclet} that has this hash,
            or failing with L{rocketd.errors.NoSuchResource}.
        """

    def stop():
        """
        Release everything the engine holds (timers, connections); pending
        waits fail with L{twisted.internet.defer.CancelledError}.

        @return: Deferred firing with None when done.
        """


class IResource(Interface):
    """What every engine resource has."""

    hash = Attribute("The resource's unguessable private name (str).")
    created = Attribute("POSIX time of creation (float), from the engine's clock.")
    modified = Attribute("POSIX time of the last change visible in the resource's document.")
    version = Attribute(
        "An int that grows whenever the resource's document changes "
        "(with modified, it is what an ETag is made of)."
    )


class IDomain(Interface):
    """A named group of feeds and pipes."""

    name = Attribute("The domain's name (str).")
    title = Attribute("A description (str).")
    modified = Attribute("POSIX time of the last change to the domain's feed or pipe list.")
    version = Attribute("An int that grows when a feed or pipe is added or removed.")

    def createFeed(name=None, type="topic", title="", license="", backlog=None, backlogAge=None):
        """
        Create a feed in this domain.

        @param name: a public name (1-128 of C{[A-Za-z0-9._-]}, not starting
            with C{amq.}), or None for a private feed named by its hash.
        @param type: one of L{FEED_TYPES}, or None: the type of the existing
            public feed of that name, whatever it is, else C{topic}.
        @param backlog: for a rotator or service feed, how many messages may
            wait for a join (None: the engine's default); the oldest is
            dropped and counted beyond it.
        @param backlogAge: for a rotator or service feed, how many seconds a
            message may wait for a join (None: the engine's default).
        @return: Deferred firing with C{(feed, created)}: the L{IFeed} and
            True, or the existing public feed of that name and type (or of
            that name, when C{type} is None) and False. Fails with L{rocketd.errors.InvalidName},
            L{rocketd.errors.InvalidArgument} (unknown type) or
            L{rocketd.errors.Conflict} (the name exists with another type).
        """

    def getFeed(name):
        """
        @return: Deferred firing with the public L{IFeed} of that name (the
            default feed is L{DEFAULT_FEED}), or failing with
            L{rocketd.errors.NoSuchResource}.
        """

    def listFeeds():
        """@return: Deferred firing with the list of public L{IFeed}s, in creation order."""

    def createPipe(type="fifo", title=""):
        """
        Create a pipe, named by its hash, with its default join onto the
        domain's default feed (address = the pipe's name).

        @param type: one of L{PIPE_TYPES}.
        @return: Deferred firing with the new L{IPipe}; fails with
            L{rocketd.errors.InvalidArgument} for an unknown type.
        """

    def listPipes():
        """@return: Deferred firing with the list of this domain's L{IPipe}s, in creation order."""


class IFeed(IResource):
    """Routes published messages to the pipes joined to it."""

    name = Attribute("The public name (str), or None for a private feed.")
    type = Attribute("One of L{FEED_TYPES}.")
    title = Attribute("A short title (str).")
    license = Attribute("A license name (str).")
    domain = Attribute("The name of the L{IDomain} the feed belongs to.")
    isDefault = Attribute("True for a domain's default feed (it can't be changed or deleted).")
    dropped = Attribute(
        "How many backlog messages (rotator, service) the backlog limits (size, age) have dropped since "
        "the feed was created (an int that only grows; 0 for a feed type without backlog). It is part of "
        "the feed's document, so version grows with it. An engine also warns about drops in its log, at "
        "most once a minute per feed (see L{rocketd.droplog})."
    )

    def update(title=None, license=None):
        """
        Change the title and/or license (None leaves a value as it is).

        @return: Deferred firing with this feed; fails with
            L{rocketd.errors.Forbidden} on a default feed.
        """

    def delete():
        """
        Delete the feed and every join onto it (pipes stay).

        @return: Deferred firing with None; fails with
            L{rocketd.errors.Forbidden} on a default feed.
        """

    def publish(messages):
        """
        Route messages, in order, to the joined pipes by the feed type's rules.

        Accepting a message, the engine sets its C{feed} to this feed
        (before any pipe, consumer or listener sees it) on the object it
        was given: no copy is made. A message whose C{feed} is already
        this feed (one taken from a pipe, put back) is published again as
        it is; one already published to another feed is refused.

        @param messages: a list of L{rocketd.engine.message.Message}; each may
            reference contents staged on this feed (see L{stageContent}).
        @return: Deferred firing with the number of pipe deliveries made (a
            message kept in a rotator or service feed's backlog counts 0);
            fails with L{rocketd.errors.Forbidden} on a system feed, and
            L{rocketd.errors.InvalidArgument} for something that is not a
            Message with a string address or a message published to another
            feed; then none of the messages is routed.
        """

    def stageContent(content):
        """
        Keep a L{rocketd.engine.message.Content} on this feed until a message
        published to this feed claims it with L{claimContent}, it is
        deleted (L{IContent.delete}), or it expires: a staged content no
        message has claimed is kept for a time the engine is configured
        with. A feed keeps a bounded number of such contents, and of their
        bytes (the engine's settings too).

        @return: Deferred firing with the staged L{IContent}; fails with
            L{rocketd.errors.LimitReached}, with a sentence naming the
            bound, when keeping it would exceed one.
        """

    def claimContent(hash):
        """
        Take a staged content for a message about to be published here. A
        content can be claimed once.

        @return: Deferred firing with the L{rocketd.engine.message.Content};
            fails with L{rocketd.errors.ContentGone} if unknown, already
            claimed, deleted or expired, and with L{rocketd.errors.Forbidden} if it was staged
            on another feed.
        """

    def listJoins():
        """@return: Deferred firing with the list of L{IJoin}s onto this feed."""

    def listen(listener):
        """
        Hand every message published to this fanout feed to C{listener},
        without holding it anywhere: a subscriber of this process that
        takes each message as it comes or not at all (a browser's channel
        subscription). This is what a stream pipe per subscriber would do,
        at a fraction of the cost, for subscribers that need no URI, no
        backlog and no flow control of the engine's.

        Listeners are called in publish order, after the publishing
        operation has routed (as pipe consumers are); they should only
        queue or write what they are handed. One that raises is logged and
        keeps listening. A message published while nobody listens is not
        kept. Listener deliveries are not counted in L{publish}'s result.

        Every listener of this process gets the same
        L{rocketd.engine.message.Message} object for one message (so a
        face encodes it once per process, in C{Message.cache}); it need not
        be the object the publisher gave, nor the one a pipe of another
        process holds: an engine that carries messages between processes
        builds one per delivery to the process. How the listeners of one
        process share one subscription to the feed is the engine's
        business.

        @param listener: a callable taking a Message.
        @return: Deferred firing, once the listener will receive every
            message published after that point (a networked engine fires
            it when its subscription is in place), with a handle with
            C{stop()} and C{ended}: a Deferred firing with True when the
            feed is deleted (after the messages routed before the deletion
            were handed), or with False when the listener was stopped.
            Fails with L{rocketd.errors.Forbidden} on a feed that is not of
            type fanout, L{rocketd.errors.InvalidArgument} for a listener
            that is not callable.
        """


class IPipe(IResource):
    """Holds the messages routed to it until the client takes them."""

    name = Attribute("The pipe's name: its hash (what clients use as reply_to).")
    type = Attribute("One of L{PIPE_TYPES}.")
    title = Attribute("A title (str).")
    domain = Attribute("The name of the L{IDomain} the pipe belongs to.")
    asynclet = Attribute(
        "The hash of the next message that will arrive in this pipe. "
        "It changes each time a message arrives: the arriving message takes "
        "this hash, and a new one is drawn for the next."
    )
    dropped = Attribute(
        "How many messages the depth limit's overflow policy has dropped since the pipe was created (an "
        "int that only grows). It is part of the pipe's document. An engine also warns about drops in its "
        "log, at most once a minute per pipe (see L{rocketd.droplog})."
    )
    consumed = Attribute("True while a consumer is attached (see L{consume}).")

    def join(feed, address="*", headers=None, predicate=None):
        """
        Join this pipe to a feed.

        @param feed: the L{IFeed} (of any domain).
        @param address: the address pattern; its meaning depends on the feed
            type (ignored by fanout and, unless not C{*}, by rotator/service).
        @param headers: for a headers feed, a dict name to value that a
            message must carry (C{x-match: any} relaxes all to any).
        @param predicate: None, or a
            L{rocketd.engine.predicates.AddressMatches}: the join takes only
            the messages whose address it matches, tested after the
            address/headers rules. Nothing else is accepted (no callable: an
            engine may keep the predicate in its metadata and apply it in
            another process).
        @return: Deferred firing with C{(join, created)}: an identical
            existing join (same feed, address, headers and an equal
            predicate or none) gives it back with False. Fails with
            L{rocketd.errors.Forbidden} for a join onto a default feed or an
            ondemand pipe joined to a feed that is not rotator or service,
            and L{rocketd.errors.InvalidArgument} for a bad pattern or a
            predicate that is not None or an AddressMatches.
        """

    def listJoins():
        """@return: Deferred firing with this pipe's L{IJoin}s, the default join first."""

    def listMessages():
        """@return: Deferred firing with the held L{IHeldMessage}s, oldest first."""

    def wait(hash=None):
        """
        Wait for a message (the asynclet's long poll).

        @param hash: the message hash to wait for (the value L{asynclet} had);
            None means the current L{asynclet}.
        @return: a cancellable Deferred firing with the L{IHeldMessage} that
            takes (or took) that hash. If it arrived already it fires at
            once. Cancelling it loses no message. On an ondemand pipe, waiting
            is what pulls one message from the joined rotator or service feed.
            Fails with L{rocketd.errors.NoSuchResource} if the hash belongs
            to a message already deleted or never part of this pipe.
        """

    def remove(hash):
        """
        Delete a held message and, as fifo semantics want, every older one.
        Removing one already gone is not an error.

        @return: Deferred firing with the number of messages removed.
        """

    def consume(consumer):
        """
        Hand every held and arriving message to C{consumer}, in order, as
        it arrives (a stream pipe's push delivery). Each handed message is
        removed from the pipe once C{consumer} returns, unless it returns
        C{False}: then the message stays held at the head of the pipe and
        delivery pauses (flow control for a slow client) until the handle's
        C{resume()}. A pipe has at most one consumer.

        @param consumer: a callable taking an L{IHeldMessage}.
        @return: Deferred firing with a handle with C{stop()} (detach the
            consumer; held messages stay), C{resume()}, and C{ended}: a
            Deferred firing with True when the pipe is deleted under the
            consumer, or with False when the consumer was stopped. Fails
            with L{rocketd.errors.Conflict} if the pipe already has one.
        """

    def delete():
        """
        Delete the pipe with its joins and held messages; pending waits
        fail with L{rocketd.errors.NoSuchResource}.

        @return: Deferred firing with None.
        """


class IJoin(IResource):
    """A pipe's subscription to a feed."""

    pipe = Attribute("The L{IPipe}.")
    feed = Attribute("The L{IFeed}.")
    address = Attribute("The address pattern (str).")
    headers = Attribute("The header selector (dict, possibly empty).")
    predicate = Attribute("The L{rocketd.engine.predicates.AddressMatches} the join applies, or None.")
    isDefault = Attribute("True for a pipe's default join (it can't be deleted).")

    def delete():
        """
        Delete the join. Deleting a service feed's last join deletes the feed.

        @return: Deferred firing with None; fails with
            L{rocketd.errors.Forbidden} on a default join.
        """


class IHeldMessage(IResource):
    """A message as it sits in one pipe."""

    message = Attribute(
        "The L{rocketd.engine.message.Message}. Pipes of this process that hold the same message may share "
        "one object (the embedded engine's always do), so its C{cache} is per process (see L{IFeed.listen})."
    )
    pipe = Attribute("The L{IPipe} holding it.")
    sequence = Attribute("Its position in the pipe: 1 for the pipe's first message ever, then +1.")
    next = Attribute("The hash the next message in this pipe takes (its asynclet when it is the newest).")
    contents = Attribute(
        "A tuple: the message's contents that this held message still has, in order (all of them, "
        "unless some were deleted from it with L{IContent.delete}; the version then grows by one "
        "per deleted content)."
    )
    contentHashes = Attribute(
        "A tuple: the hash of each of L{contents}, in the same order (a content keeps its hash "
        "when another one is deleted)."
    )


class IContent(IResource):
    """A content: staged on a feed, or part of a held message."""

    content = Attribute("The L{rocketd.engine.message.Content}.")

    def delete():
        """
        Delete the content. A staged content is gone: no message can claim
        it any more. A content of a held message leaves that held message,
        which keeps its other contents, properties and headers (the other
        pipes holding the same message keep theirs). Deleting a content
        already gone is not an error.

        @return: Deferred firing with None.
        """


class IAsynclet(IResource):
    """The slot of a message that has not arrived in a pipe yet."""

    pipe = Attribute("The L{IPipe} it belongs to.")

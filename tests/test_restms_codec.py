"""
Tests for L{rocketd.restms.codec}: RestMS documents in XML and JSON, and
content negotiation.
"""

import json
import time

from twisted.trial.unittest import TestCase

from rocketd.restms.codec import (
    MEDIA_TYPES,
    NAMESPACE,
    CodecError,
    Element,
    parseDocument,
    parseJSON,
    parseXML,
    renderJSON,
    renderXML,
    requestKind,
    responseKind,
)

HEAD = b'<?xml version="1.0"?>\n'


def restms(body, namespace=NAMESPACE):
    ns = b' xmlns="' + namespace.encode() + b'"' if namespace else b""
    return HEAD + b"<restms" + ns + b">" + body + b"</restms>"


#: Every kind of document RestMS exchanges, as a client or the server writes it.
DOCUMENTS = {
    "domain": restms(
        b'<domain title="Default domain">'
        b'<feed name="default" title="" type="direct" license="" href="http://h:8080/restms/feed/default"/>'
        b'<feed name="news" title="News &amp; views" type="topic" href="http://h:8080/restms/feed/news"/>'
        b'<pipe name="Zq3" title="" type="fifo" href="http://h:8080/restms/resource/Zq3"/>'
        b"</domain>"
    ),
    "feed": restms(b'<feed type="service" name="time" title="The time" license="GPL"/>'),
    "pipe": restms(
        b'<pipe name="Zq3" type="fifo" title="" href="http://h:8080/restms/resource/Zq3">'
        b'<join href="http://h:8080/restms/resource/j1" address="Zq3" feed="http://h:8080/restms/feed/default"/>'
        b'<join href="http://h:8080/restms/resource/j2" address="rec.pets.*" feed="http://h:8080/restms/feed/news"/>'
        b'<message href="http://h:8080/restms/resource/m1" address="rec.pets.cats" message_id="ID1"'
        b' feed="http://h:8080/restms/feed/news"/>'
        b'<message href="http://h:8080/restms/resource/m2" address="rec.pets.dogs"/>'
        b'<message href="http://h:8080/restms/resource/a3" async="1"/>'
        b"</pipe>"
    ),
    "join": restms(
        b'<join address="" feed="/restms/feed/orders" type="headers">'
        b'<header name="region" value="eu"/><header name="x-match" value="any"/>'
        b"</join>"
    ),
    "messages": restms(
        b'<message address="rec.pets.cats" reply_to="Zq3" message_id="m-1" correlation_id="c-1"'
        b' delivery_mode="2" priority="5" expiration="60000" timestamp="1234567890" type="t"'
        b' user_id="u" app_id="a" sender_id="s">'
        b'<header name="colour" value="tabby"/>'
        b'<content type="text/plain" encoding="plain">  Meow,\n  &lt;purr&gt; &amp; "meow"\n</content>'
        b"</message>"
        b'<message address="rec.pets.dogs"><content type="image/png" encoding="base64">iVBORw0KGgo=</content></message>'
        b'<message address="time" reply_to="Zq3"><content href="http://h:8080/restms/resource/c9"/></message>'
    ),
    "delivered": restms(
        b'<message href="http://h:8080/restms/resource/m1" address="a" feed="http://h:8080/restms/feed/default">'
        b'<content type="text/plain" length="5" href="http://h:8080/restms/resource/c1"/>'
        b"</message>"
    ),
    "empty": restms(b""),
}


class XMLInputTests(TestCase):
    def test_parse(self):
        """Elements, attributes in document order, and nesting."""
        root = parseXML(DOCUMENTS["join"])
        self.assertEqual(
            root,
            Element(
                "restms",
                {},
                [
                    Element(
                        "join",
                        {"address": "", "feed": "/restms/feed/orders", "type": "headers"},
                        [
                            Element("header", {"name": "region", "value": "eu"}),
                            Element("header", {"name": "x-match", "value": "any"}),
                        ],
                    )
                ],
            ),
        )
        self.assertEqual(list(root.children[0].attrs), ["address", "feed", "type"])

    def test_namespaces(self):
        """The iMatix namespace, the restms.org namespace and none are all RestMS."""
        expected = Element("restms", {}, [Element("feed", {"name": "x"})])
        for namespace in (NAMESPACE, "http://www.restms.org/schema/restms", None):
            self.assertEqual(parseXML(restms(b'<feed name="x"/>', namespace)), expected)

    def test_wrongRoot(self):
        """Another root element, or restms in a foreign namespace, is refused."""
        for document in (
            HEAD + b'<feed xmlns="' + NAMESPACE.encode() + b'"/>',
            restms(b"<feed/>", "urn:other"),
        ):
            error = self.assertRaises(CodecError, parseXML, document)
            self.assertIn("root", str(error))

    def test_foreignNamesIgnored(self):
        """
        Prefixed attributes and elements of other namespaces are ignored;
        unknown RestMS elements are kept.
        """
        root = parseXML(
            restms(
                b'<feed xmlns:x="urn:x" x:secret="1" name="f"><x:ext/><unknown a="b"/></feed>'
            )
        )
        self.assertEqual(
            root.children, [Element("feed", {"name": "f"}, [Element("unknown", {"a": "b"})])]
        )

    def test_text(self):
        """
        Content text is kept exactly (entities decoded, whitespace kept);
        indentation inside other elements is dropped.
        """
        root = parseXML(DOCUMENTS["messages"])
        first = root.children[0]
        self.assertIsNone(first.text)
        content = first.find("content")
        self.assertEqual(content.text, '  Meow,\n  <purr> & "meow"\n')
        spaced = parseXML(restms(b'\n  <feed name="x">\n  </feed>\n  <content> </content>\n'))
        self.assertEqual(
            spaced.children, [Element("feed", {"name": "x"}), Element("content", {}, [], " ")]
        )
        self.assertIsNone(spaced.text)

    def test_commentsAndProcessingInstructions(self):
        root = parseXML(restms(b'<!-- hi --><?pi x?><feed name="x"><!-- c --></feed>'))
        self.assertEqual(root.children, [Element("feed", {"name": "x"})])

    def test_malformed(self):
        """Malformed XML: one line, with lxml's reason."""
        error = self.assertRaises(CodecError, parseXML, b"<restms><feed></restms>")
        self.assertIn("mismatch", str(error))
        self.assertNotIn("\n", str(error))
        self.assertRaises(CodecError, parseXML, b"")
        self.assertRaises(CodecError, parseXML, b"\xff\xfe\x00garbage")

    def test_doctypeRefused(self):
        """Any DOCTYPE is refused, even after the declaration, comments and PIs."""
        for document in (
            b"<!DOCTYPE restms><restms/>",
            b'\xef\xbb\xbf<?xml version="1.0"?>\n<!-- c --><?pi?>\n<!DOCTYPE restms []><restms/>',
            b'<!DOCTYPE restms SYSTEM "http://example.com/restms.dtd"><restms/>',
        ):
            error = self.assertRaises(CodecError, parseXML, document)
            self.assertIn("DOCTYPE", str(error))

    def test_doctypeRefusedInAnyEncoding(self):
        """
        A DOCTYPE the byte scan can't see (UTF-16) is still refused after
        parsing.
        """
        document = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE restms><restms/>'
        self.assertRaises(CodecError, parseXML, document.encode("utf-16"))

    def test_billionLaughs(self):
        """Exponential entities fail at once, without being expanded."""
        entities = b'<!ENTITY lol "lol">' + b"".join(
            b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
            for i in range(1, 10)
        )
        for prolog in (b"", b'<?xml version="1.0" encoding="UTF-16"?>'):
            text = prolog + b"<!DOCTYPE lolz [" + entities + b']><restms><feed name="&lol9;">&lol9;</feed></restms>'
            data = text.decode("ascii").encode("utf-16") if prolog else text
            started = time.monotonic()
            self.assertRaises(CodecError, parseXML, data)
            self.assertLess(time.monotonic() - started, 1.0)

    def test_externalEntity(self):
        """External entities are never read."""
        document = (
            b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b'<restms><content type="text/plain">&x;</content></restms>'
        )
        self.assertRaises(CodecError, parseXML, document)

    def test_tooDeep(self):
        document = restms(b"<a>" * 40 + b"</a>" * 40)
        error = self.assertRaises(CodecError, parseXML, document)
        self.assertIn("deep", str(error))


class XMLOutputTests(TestCase):
    def test_render(self):
        """Declaration, namespace on the root, attributes in order, self-closing leaves."""
        root = Element(
            "restms",
            {},
            [Element("feed", {"type": "topic", "name": "news"}), Element("pipe", {"name": "p"}, [Element("join", {"a": "1"})])],
        )
        self.assertEqual(
            renderXML(root),
            b'<?xml version="1.0" encoding="UTF-8"?>\n'
            b'<restms xmlns="http://www.imatix.com/schema/restms">\n'
            b'  <feed type="topic" name="news"/>\n'
            b'  <pipe name="p">\n'
            b'    <join a="1"/>\n'
            b"  </pipe>\n"
            b"</restms>\n",
        )
        self.assertEqual(
            renderXML(Element("restms")),
            b'<?xml version="1.0" encoding="UTF-8"?>\n<restms xmlns="http://www.imatix.com/schema/restms"/>\n',
        )

    def test_escaping(self):
        """
        Markup characters are escaped; tabs and line ends in attributes
        survive a parse; text is kept exactly.
        """
        tricky = 'a & b < c > d "e" \'f\'\tg\nh\r\ni ]]> \u00e9\u4e2d'
        root = Element("restms", {}, [Element("content", {"type": tricky}, [], tricky)])
        data = renderXML(root)
        self.assertIn(b"&amp;", data)
        self.assertIn(b"&quot;", data)
        self.assertEqual(parseXML(data), root)

    def test_unwritableCharacters(self):
        """Characters XML cannot carry become U+FFFD instead of breaking the document."""
        root = Element("restms", {}, [Element("header", {"name": "h", "value": "a\x00b\x1b\ud800"})])
        value = parseXML(renderXML(root)).children[0].get("value")
        self.assertEqual(value, "a\ufffdb\ufffd\ufffd")

    def test_nonStringAttributes(self):
        """An attribute value a face left as a number is written as its string."""
        root = Element("restms", {}, [Element("content", {"length": 5})])
        self.assertEqual(parseXML(renderXML(root)).children[0].get("length"), "5")
        self.assertEqual(parseJSON(renderJSON(root)).children[0].get("length"), "5")


class JSONInputTests(TestCase):
    def test_mapping(self):
        """Objects are elements, strings attributes, arrays children, $text text."""
        root = parseJSON(
            b'{"restms": {"pipe": [{"name": "p", "type": "fifo",'
            b' "join": [{"address": "*", "feed": "/restms/feed/f"}],'
            b' "message": [{"address": "a", "content": [{"type": "text/plain", "$text": "hi"}]}]}]}}'
        )
        self.assertEqual(
            root,
            Element(
                "restms",
                {},
                [
                    Element(
                        "pipe",
                        {"name": "p", "type": "fifo"},
                        [
                            Element("join", {"address": "*", "feed": "/restms/feed/f"}),
                            Element(
                                "message",
                                {"address": "a"},
                                [Element("content", {"type": "text/plain"}, [], "hi")],
                            ),
                        ],
                    )
                ],
            ),
        )

    def test_singleObjectForArray(self):
        self.assertEqual(
            parseJSON(b'{"restms": {"feed": {"name": "x"}}}'),
            Element("restms", {}, [Element("feed", {"name": "x"})]),
        )

    def test_scalarsBecomeStrings(self):
        """Numbers and booleans become strings; null members are absent."""
        root = parseJSON(
            '{"restms": {"message": {"priority": 5, "expiration": 1.5, "async": true,'
            ' "x": false, "reply_to": null, "$text": 7, "xmlns": "urn:x"}}}'
        )
        message = root.children[0]
        self.assertEqual(message.attrs, {"priority": "5", "expiration": "1.5", "async": "1", "x": "0"})
        self.assertEqual(message.text, "7")

    def test_refused(self):
        """Every way a JSON document can be unusable is a CodecError."""
        for document, fragment in (
            (b"{", "JSON"),
            (b"\xff\xfe\xfd", "JSON"),
            (b"[]", "object"),
            (b'"restms"', "object"),
            (b'{"feed": {}}', '"restms"'),
            (b'{"restms": []}', '"restms"'),
            (b'{"restms": "x"}', '"restms"'),
            (b'{"restms": {"feed": ["x"]}}', '"feed"'),
            (b'{"restms": {"feed": [[]]}}', '"feed"'),
            (b'{"restms": {"a b": "x"}}', "name"),
            (b'{"restms": {"<x": {}}}', "name"),
            (b'{"restms": {"feed": {"name": NaN}}}', "JSON"),
            (b'{"restms": {"feed": {"name": "a\\u0000b"}}}', "character"),
            (b'{"restms": {"feed": {"name": "\\ud800"}}}', "character"),
            (b'{"restms": {"feed": {"name": {"$text": []}}}}', "$text"),
        ):
            error = self.assertRaises(CodecError, parseJSON, document)
            self.assertIn(fragment, str(error), document)
            self.assertNotIn("\n", str(error))

    def test_tooDeep(self):
        document = b'{"restms": ' + b'{"a": ' * 40 + b"{}" + b"}" * 41
        self.assertIn("deep", str(self.assertRaises(CodecError, parseJSON, document)))
        document = b"[" * 100000 + b"]" * 100000
        self.assertRaises(CodecError, parseJSON, document)


class JSONOutputTests(TestCase):
    def test_grouping(self):
        """
        Children are grouped by tag in first-seen order, in document order
        within a tag, after the attributes and text; output is one line.
        """
        root = Element(
            "restms",
            {},
            [
                Element(
                    "pipe",
                    {"name": "p"},
                    [
                        Element("join", {"n": "1"}),
                        Element("message", {"n": "2"}, [Element("content", {}, [], "a\nb")]),
                        Element("join", {"n": "3"}),
                        Element("message", {"n": "4"}),
                    ],
                )
            ],
        )
        data = renderJSON(root)
        self.assertNotIn(b"\n", data)
        self.assertEqual(
            json.loads(data),
            {
                "restms": {
                    "pipe": [
                        {
                            "name": "p",
                            "join": [{"n": "1"}, {"n": "3"}],
                            "message": [{"n": "2", "content": [{"$text": "a\nb"}]}, {"n": "4"}],
                        }
                    ]
                }
            },
        )
        self.assertEqual(list(json.loads(data)["restms"]["pipe"][0]), ["name", "join", "message"])

    def test_attributeNamedLikeAChild(self):
        """An attribute and a child tag of the same name: one member, the children."""
        root = Element("restms", {}, [Element("join", {"header": "x", "a": "1"}, [Element("header", {"name": "h"})])])
        data = renderJSON(root).decode()
        self.assertEqual(data.count('"header"'), 1)
        self.assertEqual(json.loads(data), {"restms": {"join": [{"a": "1", "header": [{"name": "h"}]}]}})

    def test_escaping(self):
        """Quotes, backslashes and control characters are escaped."""
        value = 'q"b\\s\n\t\u2028'
        root = Element("restms", {}, [Element("content", {"type": value}, [], value)])
        self.assertEqual(parseJSON(renderJSON(root)), root)
        control = renderJSON(Element("restms", {"a": "\x01"}))
        self.assertEqual(control, b'{"restms":{"a":"\\u0001"}}')

    def test_unicode(self):
        """Text is UTF-8; a lone surrogate is written as its JSON escape."""
        root = Element("restms", {}, [Element("feed", {"title": "\u00e9\ud800"})])
        data = renderJSON(root)
        self.assertIn("\u00e9".encode("utf-8"), data)
        self.assertEqual(json.loads(data)["restms"]["feed"][0]["title"], "\u00e9\ud800")


class RoundTripTests(TestCase):
    def test_everyDocument(self):
        """
        XML -> Element -> JSON -> Element -> XML loses nothing for every
        RestMS document.
        """
        for name, document in DOCUMENTS.items():
            tree = parseXML(document)
            viaJSON = parseJSON(renderJSON(tree))
            self.assertEqual(viaJSON, tree, name)
            self.assertEqual(renderXML(viaJSON), renderXML(tree), name)
            self.assertEqual(parseXML(renderXML(tree)), tree, name)

    def test_dispatch(self):
        tree = parseXML(DOCUMENTS["pipe"])
        for kind, render in (("xml", renderXML), ("json", renderJSON)):
            self.assertEqual(parseDocument(render(tree), kind), tree)
        self.assertRaises(ValueError, parseDocument, b"", "yaml")


class NegotiationTests(TestCase):
    def test_mediaTypes(self):
        self.assertEqual(MEDIA_TYPES, {"xml": "application/restms+xml", "json": "application/restms+json"})

    def test_responseKind(self):
        for accept, kind in (
            (None, "xml"),
            (b"", "xml"),
            ("  ", "xml"),
            (b"*/*", "xml"),
            (b"application/restms+xml", "xml"),
            (b"text/xml", "xml"),
            (b"application/xml", "xml"),
            (b"application/restms+json", "json"),
            ("application/json", "json"),
            (b"Application/JSON; charset=utf-8", "json"),
            (b"application/restms+json;q=0.9, */*;q=0.1", "json"),
            (b"application/json, */*", "json"),
            (b"*/*, application/json", "json"),
            (b"text/xml;q=0.5, application/json;q=0.8", "json"),
            (b"application/json;q=0.5, text/xml;q=0.8", "xml"),
            (b"application/json, text/xml", "json"),
            (b"text/xml, application/json", "xml"),
            (b"application/*", "xml"),
            (b"text/*", "xml"),
            (b"text/html, application/xhtml+xml, */*;q=0.8", "xml"),
            (b"application/json;q=0, */*", "xml"),
            (b"application/restms+xml;q=0, application/xml;q=0, text/xml;q=0, */*", "json"),
            (b"text/html", None),
            (b"text/html, image/png", None),
            (b"application/json;q=0", None),
            (b"*/*;q=0", None),
            (b"text/plain, application/json;q=bogus", "json"),
        ):
            self.assertEqual(responseKind(accept), kind, accept)

    def test_longAcceptHeader(self):
        """Long values (not cached) negotiate the same way."""
        accept = ", ".join(["text/x-%d" % i for i in range(100)] + ["application/json;q=0.2"])
        self.assertEqual(responseKind(accept), "json")
        self.assertIsNone(responseKind(", ".join("text/x-%d" % i for i in range(100))))

    def test_requestKind(self):
        for contentType, kind in (
            (None, None),
            (b"", None),
            (b"application/restms+xml", "xml"),
            (b"application/restms+json", "json"),
            (b"Application/RestMS+JSON; charset=UTF-8", "json"),
            ("application/restms+xml;charset=utf-8", "xml"),
            (b"application/json", None),
            (b"text/xml", None),
            (b"text/plain", None),
            (b"image/png", None),
        ):
            self.assertEqual(requestKind(contentType), kind, contentType)

    def test_requestKindGeneric(self):
        """Where a body can only be a document, the generic XML and JSON types count."""
        for contentType, kind in (
            (b"application/json", "json"),
            (b"text/xml; charset=utf-8", "xml"),
            (b"application/xml", "xml"),
            (b"application/restms+json", "json"),
            (b"text/plain", None),
        ):
            self.assertEqual(requestKind(contentType, generic=True), kind, contentType)

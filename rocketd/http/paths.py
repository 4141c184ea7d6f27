"""
The main listener's path space: which first segment belongs to which face,
and which words a WebRocket vhost path may not contain.

    /restms/...          the RestMS face
    /static/...          the static files (the browser client, the demo)
    /admin, /metrics     kept for the server: the WebRocket profile reserves
                         them; nothing serves them on this port today (the
                         admin API has its own listener)
    anything else        the WebRocket face: C{/:vhost[/word/...]}, where a
                         vhost path has any number of segments

Every other module asks here: the composition root mounts the faces at
these prefixes, the vhost registry and the admin API refuse the reserved
names, the backend API splits a request path at its words, and the site
answers a 413 or a last-resort 500 in the format of the face that owns the
path (L{faceOf}). This module imports nothing of the project.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

#: The faces of the main listener, as L{faceOf} names them.
RESTMS, STATIC, WEBROCKET = "restms", "static", "webrocket"

#: First segments the main listener gives to a face other than WebRocket
#: (exactly, as twisted.web's traversal compares them), with that face.
FACE_PREFIXES = {b"restms": RESTMS, b"static": STATIC}

#: First segments the WebRocket profile reserves for the server, which
#: nothing serves on the main listener today.
SERVER_PREFIXES = frozenset({"admin", "metrics"})

#: First segments no vhost path may have (compared case-insensitively).
RESERVED_PREFIXES = frozenset(prefix.decode("ascii") for prefix in FACE_PREFIXES) | SERVER_PREFIXES

#: The words the backend API puts after a vhost path
#: (C{/:vhost/channels/:name/events}, C{/:vhost/token}, C{/:vhost/events}):
#: a request path's vhost ends at the first of them.
BACKEND_WORDS = ("channels", "token", "events")

#: The words the admin API puts after a vhost path
#: (C{/vhosts/:vhost/channels/:name}, C{.../token}, C{.../workers}).
ADMIN_WORDS = ("channels", "token", "workers")

#: Segments no vhost path may have (compared case-insensitively): with one
#: of them, a backend or admin request path could be read two ways.
RESERVED_SEGMENTS = frozenset(BACKEND_WORDS + ADMIN_WORDS)


def faceOf(path: bytes) -> str:
    """
    Which face serves a request path on the main listener.

    @param path: the request path (C{request.path}: no query), as bytes.
    @return: L{RESTMS}, L{STATIC} or L{WEBROCKET}. The first segment is
        percent-decoded before it is compared, as twisted.web decodes the
        segments it routes on.
    """
    first = path[1:].split(b"/", 1)[0]
    if b"%" in first:
        first = unquote_to_bytes(first)
    return FACE_PREFIXES.get(first, WEBROCKET)


def reservedSegments(segments) -> list:
    """
    @param segments: the segments of a vhost path (str).
    @return: the ones in L{RESERVED_SEGMENTS}, lowercased and sorted.
    """
    return sorted(RESERVED_SEGMENTS.intersection(s.lower() for s in segments))

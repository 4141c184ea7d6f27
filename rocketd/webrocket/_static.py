"""
The files under C{/static/}: the browser client library (C{rocket.js}) and
the demo page, served from the package's C{static} folder.
"""

from __future__ import annotations

from twisted.python.filepath import FilePath
from twisted.web.pages import notFound
from twisted.web.static import File

#: The folder of the static files.
STATIC = FilePath(__file__).parent().parent().child("static")


class StaticFiles(File):
    """A folder's files, without directory listings (a folder is 404)."""

    def directoryListing(self):
        return notFound(brief="There is no file here.")


def staticResource(folder: FilePath = STATIC) -> File:
    """@return: the resource serving the files of C{folder}."""
    return StaticFiles(folder.path)

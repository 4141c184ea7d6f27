"""
The manual pages say what the code does: every option of C{twistd rocketd}
is in rocketd(8), every key of the config file in rocketd.conf(5).
"""

from __future__ import annotations

import re

from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from rocketd.config import SECTIONS, VHOST_SECTION
from rocketd.tap import Options
from rocketd.http.paths import RESERVED_PREFIXES, RESERVED_SEGMENTS

MAN = FilePath(__file__).parent().parent().child("man")

#: Options that every usage.Options has, documented by twistd itself.
BUILTIN = {"help", "version"}


def readPage(name: str) -> str:
    return MAN.child(name).getContent().decode("utf-8")


def plain(troff: str) -> str:
    """
    The words of a page without the escapes that matter here: C{\\-} is a
    hyphen, font changes are dropped.
    """
    text = troff.replace("\\-", "-")
    return re.sub(r"\\f[BIRP]", "", text)


def longOptions(options: type) -> set:
    """@return: the long names of an L{usage.Options} class's own options."""
    names = set()
    for parameter in getattr(options, "optParameters", []):
        names.add(parameter[0])
    for flag in getattr(options, "optFlags", []):
        names.add(flag[0])
    for name in dir(options):
        if name.startswith("opt_"):
            names.add(name[len("opt_") :].replace("_", "-"))
    return names - BUILTIN


def tagged(troff: str) -> list:
    """@return: the lines that follow a C{.TP}: the tags of a page's lists."""
    lines = troff.splitlines()
    return [plain(lines[i + 1]) for i, line in enumerate(lines[:-1]) if line.strip() == ".TP"]


class PageTests(TestCase):
    def test_troff(self):
        """Each page is UTF-8 text in -man format: it starts with C{.TH}."""
        for name in ("rocketd.8", "rocketd.conf.5"):
            text = readPage(name)
            self.assertTrue(text.startswith(".TH "), name)
            for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "FILES", "SEE ALSO"):
                self.assertIn(f"\n.SH {section}\n", text, name)

    def test_everyOption(self):
        """Every option of C{twistd rocketd} has its C{.TP} entry in rocketd(8)."""
        page = readPage("rocketd.8")
        self.assertIn(".SH OPTIONS", page)
        tags = "\n".join(tagged(page))
        names = longOptions(Options)
        self.assertIn("listen", names)
        missing = sorted(name for name in names if not re.search(rf"--{re.escape(name)}\b", tags))
        self.assertEqual(missing, [], "options missing from man/rocketd.8")

    def test_shortOptions(self):
        """The short forms are documented next to the long ones."""
        tags = tagged(readPage("rocketd.8"))
        for long, short, *_ in Options.optParameters + getattr(Options, "optFlags", []):
            if short:
                pattern = re.compile(rf"(^|\s)-{short}\W+--{re.escape(long)}\b")
                self.assertTrue(any(pattern.search(tag) for tag in tags), f"-{short} missing from man/rocketd.8")

    def test_everyKey(self):
        """Every section and key of the config file is in rocketd.conf(5)."""
        page = readPage("rocketd.conf.5")
        tags = {tag.split()[-1] for tag in tagged(page) if tag.startswith(".B ")}
        for section, keys in SECTIONS.items():
            self.assertIn(f'.SH "SECTION [{section}]"', page)
            missing = sorted(set(keys) - tags)
            self.assertEqual(missing, [], f"keys of [{section}] missing from man/rocketd.conf.5")
        self.assertIn(f'.SH "SECTIONS [{VHOST_SECTION.strip()} PATH]"', page)
        self.assertIn("token", tags)

    def test_reservedVhostPaths(self):
        """rocketd.conf(5) names every vhost path word that is reserved."""
        page = plain(readPage("rocketd.conf.5"))
        paragraph = page[page.index("A vhost path is") :].split("\n.TP")[0]
        words = set(re.findall(r"[a-z]+", paragraph))
        self.assertEqual(sorted((RESERVED_PREFIXES | RESERVED_SEGMENTS) - words), [])

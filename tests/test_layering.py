"""
The dependency rules of docs/architecture.md, checked on the source: the
engine knows no protocol, the two faces know only the engine and the
shared HTTP plumbing, and no component reads options or config itself.
"""

import ast
from pathlib import Path

from twisted.trial.unittest import TestCase

PACKAGE = Path(__file__).resolve().parent.parent / "rocketd"

#: package -> the rocketd modules it must not import (prefixes).
FORBIDDEN = {
    "engine": ("rocketd.restms", "rocketd.webrocket", "rocketd.admin", "rocketd.http", "rocketd.app",
               "rocketd.tap", "rocketd.config"),
    "http": ("rocketd.engine", "rocketd.restms", "rocketd.webrocket", "rocketd.admin", "rocketd.app",
             "rocketd.tap", "rocketd.config"),
    "restms": ("rocketd.webrocket", "rocketd.admin", "rocketd.app", "rocketd.tap", "rocketd.config"),
    "webrocket": ("rocketd.restms", "rocketd.admin", "rocketd.app", "rocketd.tap", "rocketd.config"),
    "admin": ("rocketd.restms", "rocketd.app", "rocketd.tap", "rocketd.config"),
}


def importsOf(path: Path):
    """Every module name a source file imports (absolute and resolved relative)."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                yield base + ("." + node.module if node.module else "")
            else:
                yield node.module


def isEnginePrivate(name: str) -> bool:
    """Whether a module name is a private module of the engine (a part starting with C{_})."""
    parts = name.split(".")
    return parts[:2] == ["rocketd", "engine"] and any(part.startswith("_") for part in parts[2:])


class LayeringTests(TestCase):
    def test_importsFollowTheRules(self):
        broken = []
        for package, forbidden in FORBIDDEN.items():
            for path in sorted((PACKAGE / package).rglob("*.py")):
                for name in importsOf(path):
                    if name and name.startswith(forbidden):
                        broken.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
        self.assertEqual(broken, [])

    def test_theCheckSeesImports(self):
        """The walker finds the imports it is meant to police (so the rule above can fail)."""
        names = set(importsOf(PACKAGE / "app.py"))
        self.assertIn("rocketd.http.guard", names)
        self.assertTrue(any(n.startswith("rocketd.restms") for n in names))

    def test_engineModulesAreItsOwn(self):
        """
        Outside rocketd.engine, code imports only the engine's public
        modules (rocketd.engine.memory, rocketd.engine.message), never the
        modules of its resources: a second engine or a journal may change them.
        """
        broken = []
        for path in sorted(PACKAGE.rglob("*.py")):
            if (PACKAGE / "engine") in path.parents:
                continue
            for name in importsOf(path):
                if name and isEnginePrivate(name):
                    broken.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
        self.assertEqual(broken, [])

    def test_enginePrivateNames(self):
        """The rule above tells the engine's private modules from its public ones."""
        self.assertTrue(isEnginePrivate("rocketd.engine.memory._pipe"))
        self.assertTrue(isEnginePrivate("rocketd.engine._topic"))
        self.assertFalse(isEnginePrivate("rocketd.engine.memory"))
        self.assertFalse(isEnginePrivate("rocketd.engine.message"))
        self.assertFalse(isEnginePrivate("rocketd.restms._streams"))

    def test_engineModulesImportOneWay(self):
        """
        The embedded engine's modules import only modules below them in
        docs/architecture.md's order, so each reads knowing only those.
        """
        order = ["_core", "_staging", "_rotation", "_routers", "_feed", "_join", "_held", "_pipe", "_domain",
                 "_engine", "__init__"]
        package = PACKAGE / "engine" / "memory"
        self.assertEqual(sorted(p.stem for p in package.glob("*.py")), sorted(order))
        broken = []
        for rank, stem in enumerate(order):
            for name in importsOf(package / f"{stem}.py"):
                if name and name.startswith("rocketd.engine.memory."):
                    imported = name.rsplit(".", 1)[1]
                    if imported not in order[:rank]:
                        broken.append(f"{stem} imports {imported}")
                elif name == "rocketd.engine.memory" and stem != "__init__":
                    broken.append(f"{stem} imports the package")
        self.assertEqual(broken, [])

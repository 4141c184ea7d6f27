"""
The dependency rules of docs/architecture.md, checked on the source: the
engine knows no protocol, the two faces know only the engine and the
shared HTTP plumbing, the shared HTTP plumbing knows nothing else of the
project, and no component reads options or config itself.
"""

import ast
from pathlib import Path

from twisted.trial.unittest import TestCase

PACKAGE = Path(__file__).resolve().parent.parent / "rocketd"

#: package -> the rocketd modules it must not import (prefixes).
FORBIDDEN = {
    "engine": ("rocketd.restms", "rocketd.webrocket", "rocketd.admin", "rocketd.http", "rocketd.app",
               "rocketd.tap", "rocketd.config"),
    "restms": ("rocketd.webrocket", "rocketd.admin", "rocketd.app", "rocketd.tap", "rocketd.config"),
    "webrocket": ("rocketd.restms", "rocketd.admin", "rocketd.app", "rocketd.tap", "rocketd.config"),
    "admin": ("rocketd.restms", "rocketd.app", "rocketd.tap", "rocketd.config"),
}

#: package -> the only rocketd modules it may import (prefixes): the
#: plumbing both faces share imports no face, no engine (not even its
#: interfaces: it knows a pipe by duck type; only the engine's errors, for
#: the one table of statuses) and no entry point.
ONLY = {
    "http": ("rocketd.http.", "rocketd.errors"),
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
        for package, allowed in ONLY.items():
            for path in sorted((PACKAGE / package).rglob("*.py")):
                for name in importsOf(path):
                    if name and (name == "rocketd" or name.startswith("rocketd.")) and not name.startswith(allowed):
                        broken.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
        self.assertEqual(broken, [])

    def test_httpKnowsOnlyTheEngineErrors(self):
        """
        Of the project, L{rocketd.http} imports only itself and
        L{rocketd.errors} (the one table of statuses maps those errors).
        """
        broken = []
        for path in sorted((PACKAGE / "http").rglob("*.py")):
            for name in importsOf(path):
                if name and (name == "rocketd" or name.startswith("rocketd.")):
                    if name != "rocketd.errors" and not name.startswith("rocketd.http"):
                        broken.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
        self.assertEqual(broken, [])

    def test_webrocketPartsAreWiredNotImported(self):
        """
        In the WebRocket face, the backend API and the WebSocket frontend
        (with its sessions) never import each other, and the parts they
        share (channels, tokens, workers, vhosts) import neither: the
        composition root wires them.
        """
        apis = {
            "backend": ("rocketd.webrocket.frontend", "rocketd.webrocket._session"),
            "frontend": ("rocketd.webrocket.backend",),
            "_session": ("rocketd.webrocket.backend", "rocketd.webrocket.frontend"),
        }
        for part in ("channels", "tokens", "workers", "vhosts"):
            apis[part] = ("rocketd.webrocket.backend", "rocketd.webrocket.frontend", "rocketd.webrocket._session")
        broken = []
        for module, forbidden in apis.items():
            path = PACKAGE / "webrocket" / f"{module}.py"
            for name in importsOf(path):
                if name and name.startswith(forbidden):
                    broken.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
        self.assertEqual(broken, [])

    def test_theCheckSeesImports(self):
        """The walker finds the imports it is meant to police (so the rule above can fail)."""
        names = set(importsOf(PACKAGE / "app.py"))
        self.assertIn("rocketd.http.guard", names)
        self.assertIn("rocketd.errors", set(importsOf(PACKAGE / "http" / "errors.py")))
        self.assertTrue(any(n.startswith("rocketd.restms") for n in names))
        # The shared stream plumbing is checked, and the faces use it.
        self.assertIn("rocketd.http.directwrite", set(importsOf(PACKAGE / "http" / "sse.py")))
        self.assertIn("rocketd.http.pipestream", set(importsOf(PACKAGE / "restms" / "_streams.py")))
        self.assertIn("rocketd.http.pipestream", set(importsOf(PACKAGE / "webrocket" / "workers.py")))
        self.assertIn("rocketd.http.coalesce", set(importsOf(PACKAGE / "webrocket" / "_fanout.py")))

    def test_noTestHelpersInTheDaemon(self):
        """No module of the daemon imports a test double or test runner."""
        testing = ("twisted.internet.testing", "twisted.test", "twisted.trial", "treq.testing", "tests")
        broken = [
            f"{path.relative_to(PACKAGE.parent)} imports {name}"
            for path in sorted(PACKAGE.rglob("*.py"))
            for name in importsOf(path)
            if name and (name in testing or name.startswith(tuple(t + "." for t in testing)))
        ]
        self.assertEqual(broken, [])

    def test_privateModulesStayInTheirPackage(self):
        """
        A C{_module} of a package is imported only from inside that package
        (its subpackages included: the embedded engine's modules use
        C{rocketd.engine._topic}).
        """
        broken = []
        for path in sorted(PACKAGE.rglob("*.py")):
            package = ".".join(path.relative_to(PACKAGE.parent).parts[:-1])
            for name in importsOf(path):
                parts = (name or "").split(".")
                private = next((i for i, part in enumerate(parts) if part.startswith("_") and part != "__future__"), None)
                owner = ".".join(parts[:private]) if private is not None else None
                if parts[0] == "rocketd" and owner is not None and not (package + ".").startswith(owner + "."):
                    broken.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
        self.assertEqual(broken, [])

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

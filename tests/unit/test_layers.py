"""Layer rules that a reading of the imports can check (no database, no server)."""

from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "pulp_content_asgi"
#: aiohttp and the libraries its types come from.
AIOHTTP = ("aiohttp", "multidict", "yarl")


def _imports(path: pathlib.Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_only_the_bridge_imports_aiohttp():
    """The plugin API, handlers, serving and on-demand speak no aiohttp; the bridge
    package translates (issue: aiohttp only in the bridge)."""
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(m for m in _imports(path)
                                               if m.split(".")[0] in AIOHTTP)
        for path in PACKAGE.rglob("*.py")
        if "bridge" not in path.relative_to(PACKAGE).parts
    }
    assert {k: v for k, v in offenders.items() if v} == {}
    assert any(m.split(".")[0] == "aiohttp"
               for m in _imports(PACKAGE / "bridge" / "hooks.py"))  # the rule can fail


def test_the_responder_is_pure():
    """serving/responder.py decides responses without Django models, settings or I/O."""
    imported = _imports(PACKAGE / "serving" / "responder.py")
    assert not any(m.startswith(("pulpcore", "django.db", "django.conf", "pulp_content_asgi.conf"))
                   for m in imported), imported

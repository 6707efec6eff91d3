"""How a plugin is served, decided from its PluginConfig alone (no database)."""

from __future__ import annotations

from types import SimpleNamespace

from pulp_content_asgi.plugin import registry


def config(label: str, name: str, **declared: object) -> SimpleNamespace:
    return SimpleNamespace(label=label, name=name, version="1.0", **declared)


def test_a_declaration_makes_the_plugin_native():
    support, handlers = registry._support_for(config(
        "container", "pulp_container.app", content_asgi_urls="pulp_container.app.urls2"))
    assert support.mode == "native" and support.urls == "pulp_container.app.urls2"
    assert handlers == {}


def test_own_handlers_without_live_routes_leave_aiohttp_routes_unserved():
    support, _ = registry._support_for(config(
        "container", "pulp_container.app", content_asgi_handlers={"a.B": object}))
    assert support.mode == "legacy"


def test_a_shipped_port_is_used_when_the_plugin_declares_nothing():
    support, _ = registry._support_for(config("container", "pulp_container.app"))
    assert support.mode == "builtin"
    assert support.urls == "pulp_content_asgi.builtin.container"


def test_aiohttp_routes_nothing_serves_need_the_legacy_app():
    # pulp_container's label changed: no port applies, its aiohttp routes module exists.
    support, _ = registry._support_for(config("renamed", "pulp_container.app"))
    assert support.mode == "legacy"


def test_plugins_with_hooks_only_use_the_generic_bridge():
    support, _ = registry._support_for(config("gem", "pulp_gem.app"))
    assert support.mode in ("bridge", "builtin") and support.urls is None

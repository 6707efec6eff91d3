"""Bridges to aiohttp, the one package of pulp-content-asgi that imports it.

Existing Pulp plugins were written for pulpcore-content (aiohttp): their model hooks
return or raise aiohttp responses, read an aiohttp-shaped request, and pulpcore's
downloaders raise aiohttp's client errors. The bridges translate at that boundary and plug
in through :mod:`pulp_content_asgi.plugin.registry` at start-up (:func:`install`), so the plugin
API, handlers, serving and on-demand never see an aiohttp type.
"""

from __future__ import annotations


def install() -> None:
    """Register the aiohttp hook converter and request adapter with the registry."""
    from pulp_content_asgi.bridge import hooks, request
    from pulp_content_asgi.plugin import registry

    registry.add_hook_converter(hooks.convert)
    registry.set_hook_request(request.LegacyRequest)

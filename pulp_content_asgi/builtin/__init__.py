"""Reference ports of the Pulp plugins that declare nothing for this app yet.

One module per plugin, keyed by the plugin's app label in :data:`PORTS`, each written
against :mod:`pulp_content_asgi.plugin` only (no aiohttp) so the plugin can take it over
as its own declaration. A port module may export:

``HANDLERS``
    ``{"app_label.DistributionModel": handler class or dotted path}``, as a plugin's
    ``content_asgi_handlers`` would.
``URLS``
    The dotted path of a Django URLconf with the plugin's live routes, as a plugin's
    ``content_asgi_urls`` would (served outside the content prefix).

A port is used only while the plugin is installed and declares neither
``content_asgi_handlers`` nor ``content_asgi_urls`` itself: once it does, the plugin takes
over (docs/plugins.md).
"""

from __future__ import annotations

#: Plugin label → module of its port.
PORTS: dict[str, str] = {
    "file": "pulp_content_asgi.builtin.file",
    "container": "pulp_content_asgi.builtin.container",
    "rpm": "pulp_content_asgi.builtin.rpm",
    "python": "pulp_content_asgi.builtin.python",
    "npm": "pulp_content_asgi.builtin.npm",
    "deb": "pulp_content_asgi.builtin.deb",
    "maven": "pulp_content_asgi.builtin.maven",
    "gem": "pulp_content_asgi.builtin.gem",
    "ansible": "pulp_content_asgi.builtin.ansible",
    "ostree": "pulp_content_asgi.builtin.ostree",
}

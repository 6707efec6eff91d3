"""The plugin API of pulp-content-asgi: everything a plugin needs, and nothing else.

A plugin serves its distribution type by declaring a handler on its PluginConfig::

    class PulpFooPluginAppConfig(PulpPluginAppConfig):
        content_asgi_handlers = {"foo.FooDistribution": "pulp_foo.app.content.FooHandler"}

and writing the handler, usually by reusing a convenience handler::

    from pulp_content_asgi.plugin import DistributionHandler, ServeBody

    class FooHandler(DistributionHandler):
        def serve(self, request, distribution, path):
            if path == "foo.json":
                return ServeBody(b"{}", headers={"Content-Type": "application/json"})
            return super().serve(request, distribution, path)

Handlers run on an ORM thread (the ORM is used directly, synchronously) and return one of
the result types below; the app turns results into responses. Existing model hooks
(``content_handler`` returning aiohttp responses, ``ContentGuard.permit``) keep working
unchanged. See docs/plugin-api.md.
"""

from pulp_content_asgi.plugin.handlers import (
    EDGE_CACHE_CONTROL,
    ContentHandler,
    DistributionHandler,
    PublicationHandler,
    RepositoryVersionHandler,
)
from pulp_content_asgi.plugin.registry import handler_for, register
from pulp_content_asgi.plugin.request import ContentRequest
from pulp_content_asgi.plugin.results import (
    Denied,
    Failure,
    NotFound,
    Redirect,
    Result,
    ServeArtifact,
    ServeBody,
    ServeGenerated,
    ServeListing,
    ServeLocalFile,
    ServeRemote,
)
from pulp_content_asgi.protocol.listing import Listing

__all__ = [
    "EDGE_CACHE_CONTROL",
    "ContentHandler",
    "ContentRequest",
    "Denied",
    "DistributionHandler",
    "Failure",
    "Listing",
    "NotFound",
    "PublicationHandler",
    "Redirect",
    "RepositoryVersionHandler",
    "Result",
    "ServeArtifact",
    "ServeBody",
    "ServeGenerated",
    "ServeListing",
    "ServeLocalFile",
    "ServeRemote",
    "handler_for",
    "register",
]

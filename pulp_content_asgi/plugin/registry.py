"""Which handler serves which distribution type, and which live routes each plugin has.

Registration is explicit and happens once at start-up (:func:`discover`), never as an
import side effect. A plugin declares on its PluginConfig:

``content_asgi_handlers``
    a mapping of distribution model (``"app_label.ModelName"``) to handler (a class or
    its dotted path);
``content_asgi_urls``
    the dotted path of a Django URLconf with its live routes (paths outside the content
    prefix, such as pulp_container's ``/pulp/container/``).

A plugin that declares neither is served by the port shipped here for it
(:mod:`pulp_content_asgi.builtin`), else by the generic path. A type nobody registered is
served by the most specific registered parent type, and in the end by
:class:`~pulp_content_asgi.plugin.handlers.DistributionHandler`, which behaves as
pulpcore-content does, so every existing plugin works without declaring anything.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import import_module
from typing import Any, Literal

from django.apps import apps
from django.utils.module_loading import import_string
from pulpcore.app.models import Distribution

from pulp_content_asgi.plugin import results
from pulp_content_asgi.plugin.handlers import ContentHandler, DistributionHandler
from pulp_content_asgi.plugin.request import ContentRequest

log = logging.getLogger(__name__)

_handlers: dict[type[Distribution], ContentHandler] = {}
_resolved: dict[type[Distribution], ContentHandler] = {}
_default: ContentHandler = DistributionHandler()
#: Bridges installed at start-up (dotted paths of their ``install`` functions).
BRIDGES = ("pulp_content_asgi.bridge.install",)
_converters: list[Callable[[object], results.Result | None]] = []
_hook_request: Callable[[ContentRequest], Any] | None = None

#: How a plugin is served: ``native`` (it declares handlers or live routes for this app),
#: ``builtin`` (a port shipped here), ``bridge`` (the generic path and its aiohttp hook
#: bridge), ``legacy`` (it adds aiohttp routes to pulpcore-content that nothing here
#: serves: only the legacy app, or CONTENT_ASGI_LEGACY_ORIGIN, can answer them).
Mode = Literal["native", "builtin", "bridge", "legacy"]


@dataclass(frozen=True)
class PluginSupport:
    """What :func:`discover` found for one installed plugin."""

    label: str
    name: str  # the Django app's module, e.g. "pulp_rpm.app"
    version: str
    mode: Mode
    handlers: tuple[str, ...] = ()  # distribution model labels with a handler
    urls: str | None = None  # the URLconf of its live routes
    source: str = ""  # where the handlers and routes come from (module path)


_support: list[PluginSupport] = []


def add_hook_converter(convert: Callable[[object], results.Result | None]) -> None:
    """Let a bridge turn what model hooks return or raise into results."""
    if convert not in _converters:
        _converters.append(convert)


def convert_hook_value(value: object) -> results.Result | None:
    """The result for a value a model hook returned or raised, if a bridge knows it."""
    for convert in _converters:
        converted = convert(value)
        if converted is not None:
            return converted
    return None


def set_hook_request(adapter: Callable[[ContentRequest], Any]) -> None:
    """Let a bridge shape the request that model hooks (guards, remotes) receive."""
    global _hook_request
    _hook_request = adapter


def hook_request(request: ContentRequest) -> Any:
    """The request as model hooks expect it (the bridge's view, else the request)."""
    return _hook_request(request) if _hook_request is not None else request


def register(model: type[Distribution], handler: ContentHandler | type[ContentHandler]) -> None:
    """Serve ``model`` (and its subclasses without their own handler) with ``handler``."""
    if not (isinstance(model, type) and issubclass(model, Distribution)):
        raise TypeError(f"{model!r} is not a Distribution model")
    instance = handler() if isinstance(handler, type) else handler
    if not isinstance(instance, ContentHandler):
        raise TypeError(f"{handler!r} is not a pulp_content_asgi ContentHandler")
    _handlers[model] = instance
    _resolved.clear()


def handler_for(model: type[Distribution]) -> ContentHandler:
    """The handler of the nearest registered class in ``model``'s MRO."""
    found = _resolved.get(model)
    if found is None:
        found = next((_handlers[k] for k in model.__mro__ if k in _handlers), _default)
        _resolved[model] = found
    return found


def _register_mapping(mapping: Mapping[str, object], source: str) -> None:
    for label, handler in mapping.items():
        model = apps.get_model(label)
        target = import_string(handler) if isinstance(handler, str) else handler
        register(model, target)  # type: ignore[arg-type]
        log.debug("%s: %s served by %r", source, label, target)


def _has_aiohttp_routes(app_name: str) -> bool:
    """Whether pulpcore-content would import ``<app>.content`` (a plugin's aiohttp routes);
    looked up without importing it."""
    try:
        return importlib.util.find_spec(f"{app_name}.content") is not None
    except ImportError:
        return False


def _support_for(config: Any) -> tuple[PluginSupport, Mapping[str, object]]:
    from pulp_content_asgi.builtin import PORTS

    handlers = getattr(config, "content_asgi_handlers", None) or {}
    urls = getattr(config, "content_asgi_urls", None)
    mode: Mode
    if handlers or urls:
        mode, source = "native", config.name
    elif config.label in PORTS:
        port = import_module(PORTS[config.label])
        handlers = getattr(port, "HANDLERS", {})
        urls = getattr(port, "URLS", None)
        mode, source = "builtin", port.__name__
    else:
        mode, source = "bridge", "pulp_content_asgi.plugin.handlers"
    if urls is None and _has_aiohttp_routes(config.name):
        # Its handlers (if any, even its own) serve the content prefix; its aiohttp
        # routes have no server here.
        mode = "legacy"
    support = PluginSupport(config.label, config.name, str(getattr(config, "version", "")),
                            mode, tuple(handlers), urls, source)
    return support, handlers


def discover() -> None:
    """Install the bridges, then register each installed plugin's handlers: its own
    declarations, else the port shipped here for it. Logs how every plugin is served and
    warns about plugins whose routes only the legacy app serves."""
    from pulpcore.app.apps import pulp_plugin_configs

    for bridge in BRIDGES:
        import_string(bridge)()
    _support.clear()
    for config in pulp_plugin_configs():
        support, handlers = _support_for(config)
        _register_mapping(handlers, support.source)
        _support.append(support)
        if support.mode == "legacy":
            log.warning(
                "Plugin %s (%s) adds routes to pulpcore-content (%s.content) that "
                "pulp-content-asgi does not serve: they answer 404 unless "
                "CONTENT_ASGI_LEGACY_ORIGIN points at a running pulpcore-content "
                "(docs/plugins.md).", support.label, support.name, support.name)
    log.info("Plugins served: %s", ", ".join(f"{s.label} {s.version} ({s.mode})"
                                             for s in _support))


def supported() -> list[PluginSupport]:
    """How each installed plugin is served, in pulpcore's plugin order (after
    :func:`discover`)."""
    return list(_support)


def live_urlconfs() -> list[str]:
    """The URLconfs of every plugin's live routes (after :func:`discover`)."""
    return [s.urls for s in _support if s.urls]


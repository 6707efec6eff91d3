"""Which handler serves which distribution type.

Registration is explicit and happens once at start-up (:func:`discover`), never as an
import side effect: a plugin declares ``content_asgi_handlers`` on its PluginConfig, a
mapping of distribution model (``"app_label.ModelName"``) to handler (a class or its
dotted path). A type nobody registered is served by the most specific registered parent
type, and in the end by :class:`~pulp_content_asgi.plugin.handlers.DistributionHandler`, which
behaves as pulpcore-content does, so every existing plugin works without declaring
anything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from django.apps import apps
from django.utils.module_loading import import_string
from pulpcore.app.models import Distribution

from pulp_content_asgi.plugin import results
from pulp_content_asgi.plugin.handlers import ContentHandler, DistributionHandler
from pulp_content_asgi.plugin.request import ContentRequest

log = logging.getLogger(__name__)

#: Handlers for types whose plugins ship inside pulpcore and cannot declare one themselves.
BUILTIN: dict[str, str] = {
    "file.FileDistribution": "pulp_content_asgi.plugin.handlers.DistributionHandler",
}

_handlers: dict[type[Distribution], ContentHandler] = {}
_resolved: dict[type[Distribution], ContentHandler] = {}
_default: ContentHandler = DistributionHandler()
#: Bridges installed at start-up (dotted paths of their ``install`` functions).
BRIDGES = ("pulp_content_asgi.bridge.install",)
_converters: list[Callable[[object], results.Result | None]] = []
_hook_request: Callable[[ContentRequest], Any] | None = None


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


def discover() -> None:
    """Install the bridges, register built-in handlers, then every installed plugin's
    declarations."""
    from pulpcore.app.apps import pulp_plugin_configs

    for bridge in BRIDGES:
        import_string(bridge)()
    installed = {config.label for config in pulp_plugin_configs()}
    _register_mapping({k: v for k, v in BUILTIN.items() if k.split(".")[0] in installed},
                      "pulp-content-asgi")
    for config in pulp_plugin_configs():
        declared = getattr(config, "content_asgi_handlers", None)
        if declared:
            _register_mapping(declared, config.name)


"""Calling plugins' model hooks, so that a hook that fails is named.

Every model hook the app calls (``Distribution.content_handler``,
``content_handler_list_directory``, ``content_headers_for``, ``get_fallback_ca``,
``get_repository_publication_and_version``, ``Remote.get_remote_artifact_url``,
``get_remote_artifact_content_type``, ``ContentGuard.permit``, the pull-through hooks...)
is called through :func:`call`. An exception the hook raises becomes
:class:`PluginHookFailed`, which names the plugin, the model and the hook;
:mod:`pulp_content_asgi.resolution.dispatch` logs it with the traceback and answers a 500
whose body tells the operator which plugin failed (pulpcore-content answers a bare 500).

What a hook is allowed to raise passes through unchanged: the exceptions the caller names
(``PermissionError`` from ``permit``), and a lost database connection, which the ORM
thread pool retries and turns into a 503 (:mod:`pulp_content_asgi.db`): an outage is not
the plugin's fault.
"""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Any

from django.apps import apps

from pulp_content_asgi import db

log = logging.getLogger(__name__)


def plugin_of(owner: object) -> str:
    """The Python package of the Django app that defines ``owner``'s class, e.g.
    ``pulp_rpm`` for an ``RpmDistribution``; the module's top package otherwise (for a
    module, its own)."""
    if isinstance(owner, ModuleType):
        return owner.__name__.split(".")[0]
    cls = owner if isinstance(owner, type) else type(owner)
    meta = getattr(cls, "_meta", None)
    if meta is not None:
        try:
            return apps.get_app_config(meta.app_label).name.split(".")[0]
        except LookupError:
            pass
    return cls.__module__.split(".")[0]


class PluginHookFailed(Exception):
    """A plugin's model hook raised; ``cause`` is what it raised.

    ``plugin`` is the plugin's package (``pulp_python``), ``hook`` the qualified hook
    (``PythonDistribution.content_handler``).
    """

    def __init__(self, owner: object, hook: str, cause: BaseException) -> None:
        self.plugin = plugin_of(owner)
        if isinstance(owner, ModuleType):
            self.hook = f"{owner.__name__}.{hook}"
        else:
            cls = owner if isinstance(owner, type) else type(owner)
            self.hook = f"{cls.__name__}.{hook}"
        self.cause = cause
        super().__init__(f"Plugin {self.plugin} failed in {self.hook}: "
                         f"{type(cause).__name__}: {cause}")

    @property
    def client_message(self) -> str:
        """What the client and operator read: which plugin failed, where to look; the
        exception's own text stays in the log (it may name internals)."""
        return (f"The {self.plugin} plugin failed in {self.hook}; the content app's log "
                "has the error and its traceback.")

    def log(self, context: str) -> None:
        """Log the failure with the hook's traceback; ``context`` says what was served."""
        log.error("%s (while serving %s). This is an error in the plugin or in the data "
                  "it was given, not in the content app.", self, context,
                  exc_info=(type(self.cause), self.cause, self.cause.__traceback__))


def call(owner: object, hook: str, *args: Any, allowed: tuple[type[BaseException], ...] = (),
         **kwargs: Any) -> Any:
    """``owner.<hook>(*args, **kwargs)``; what it raises becomes :class:`PluginHookFailed`,
    except ``allowed`` exceptions and lost database connections.

    ``owner`` is a model instance or class (``distribution``, ``remote``, a content type)
    or a plugin's module (for its helper functions).
    """
    try:
        return getattr(owner, hook)(*args, **kwargs)
    except allowed:
        raise
    except PluginHookFailed:
        raise  # a hook that calls another hook: the innermost is the one that failed
    except Exception as exc:
        if db.is_connection_failure(exc):
            raise
        raise PluginHookFailed(owner, hook, exc) from exc

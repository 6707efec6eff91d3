"""Helpers for live routes: Django views that serve content as well as the content path.

A plugin's live route is an ordinary Django view in the URLconf it declares
(``content_asgi_urls``). To answer with content it hands :func:`serve` a function that
decides, on an ORM thread, what to send::

    from functools import partial
    from pulp_content_asgi.plugin import live, NotFound, ServeArtifact

    async def blob(request, path, digest, pulp_domain=None):
        # a named function (a partial of one): the logged 500 names it, a lambda's not
        return await live.serve(request, partial(find_blob, path=path, digest=digest))

    def find_blob(request, path, digest):            # runs on an ORM thread
        distribution = live.distribution(request, FooDistribution, path)
        if distribution is None:
            return NotFound()
        denied = live.permit(request, distribution)  # the content guard, as on /pulp/content/
        ...
        return ServeArtifact(artifact, relative_path, headers)

The result goes through the content path's responder and sender: preconditions, ranges,
``pathsend``, object-storage redirects, on-demand downloads from remotes. Once
:func:`distribution` found a guarded distribution, every answer says
``Cache-Control: private``, as on the content path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from pulpcore.app.models import Distribution
from pulpcore.app.util import set_domain

from pulp_content_asgi import conf, db
from pulp_content_asgi.ondemand.plan import RemotePlan
from pulp_content_asgi.ondemand.respond import AnswerFromStorage
from pulp_content_asgi.ondemand.respond import respond as ondemand_respond
from pulp_content_asgi.plugin import results
from pulp_content_asgi.plugin.request import ContentRequest
from pulp_content_asgi.protocol import paths
from pulp_content_asgi.resolution import distributions, guards
from pulp_content_asgi.routes.response import ContentResponse
from pulp_content_asgi.serving.response import Response, private, text

log = logging.getLogger(__name__)

D = TypeVar("D", bound=Distribution)
#: Decides what answers the request; runs on an ORM thread.
Decide = Callable[[ContentRequest], results.Result]

_METHODS = ("GET", "HEAD")
_RELATED = ("repository", "repository_version", "publication", "remote", "pulp_domain",
            "content_guard")


def content_request(request: HttpRequest) -> ContentRequest:
    """The content request (guards' view, on-demand's clock) for a live route's request.

    ``match_info`` holds the route's keyword arguments, as aiohttp's did (``pulp_domain``
    names the domain).
    """
    scope = request.scope  # type: ignore[attr-defined]
    kwargs = dict(request.resolver_match.kwargs) if request.resolver_match else {}
    decoded = paths.decode_path(scope.get("raw_path") or scope["path"].encode())
    found = ContentRequest(scope, decoded, "", kwargs.get("pulp_domain"))
    found.match_info.update(kwargs)
    return found


def distribution(request: ContentRequest, model: type[D], base_path: str) -> D | None:
    """The ``model`` distribution at exactly ``base_path`` in the request's domain, or None.

    Exactly: a leading, trailing or doubled slash (``//a/b``, ``a/b/``, ``%2Fa/b``) matches
    nothing, as pulp_container's ``get(base_path=path)`` matches nothing.

    Sets the domain for the rest of the request (pulpcore's ``get_domain()``), as the
    content path does. Runs on an ORM thread.
    """
    name = request.match_info.get("pulp_domain", "default") if settings.DOMAIN_ENABLED \
        else "default"
    domain = distributions.find_domain(name)
    if domain is None:
        return None
    found = (model.objects.select_related(*_RELATED)
             .filter(pulp_domain=domain, base_path=base_path).first())
    if found is None:
        return None
    set_domain(domain)
    request.domain = domain
    request.distribution = found
    return found


def permit(request: ContentRequest, found: Distribution) -> results.Denied | None:
    """The distribution's content guard's refusal, or None when it lets the request in."""
    return guards.check(request, found)


def _decide(decide: Decide, request: ContentRequest) -> Response | RemotePlan:
    from pulp_content_asgi.plugin import hooks
    from pulp_content_asgi.resolution.dispatch import finish, plugin_failed

    try:
        return finish(decide(request), request)
    except hooks.PluginHookFailed as failed:  # a model hook (a guard's permit, ...) raised
        return finish(plugin_failed(failed, request), request)


async def serve(request: HttpRequest, decide: Decide) -> HttpResponseBase:
    """Answer a live route's request with what ``decide`` returns.

    ``decide(content_request)`` runs on an ORM thread (one hop, the connection returned
    before the body is sent) and returns a result (:mod:`pulp_content_asgi.plugin.results`).
    Only GET and HEAD are served (405 otherwise). An unreachable database answers 503 with
    ``Retry-After``; an exception in ``decide`` is logged with the view's path and answers
    a 500 that says so.
    """
    ours = conf.current()
    if request.method not in _METHODS:
        return ContentResponse(text(405, "Method Not Allowed", {"Allow": "GET, HEAD"}),
                               request.scope)  # type: ignore[attr-defined]
    try:
        found = content_request(request)
    except paths.BadPath as bad:  # "..", control characters, too long: as on /pulp/content/
        return ContentResponse(text(bad.status, str(bad)), request.scope)  # type: ignore[attr-defined]
    try:
        outcome = await db.run(_decide, decide, found)
        if isinstance(outcome, RemotePlan):
            answered = await ondemand_respond(outcome, found.http)
            if isinstance(answered, AnswerFromStorage):  # only asked of cached paths
                raise RuntimeError("on-demand asked a live route to wait for a save")
            outcome = answered
    except db.DatabaseUnavailable as exc:
        log.error("Database unavailable while serving %s: %s", found.path, exc)
        outcome = text(503, "The content database is unavailable; retry shortly.",
                       {"Retry-After": str(ours.retry_after)})
    except Exception:
        name = getattr(decide, "__qualname__", repr(decide))
        log.exception("Live route %s failed to serve %s %s", name, request.method, found.path)
        outcome = text(500, "Internal Server Error: a plugin's live route failed to answer "
                            "this request; the server log has the details.")
    if found.guarded:  # matched by live.distribution(): answers for this client alone
        outcome = private(outcome)
    return ContentResponse(outcome, found.scope)

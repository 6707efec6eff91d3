"""Dispatch: from a located path to the handler of its distribution, on the ORM thread.

locate (domain, distribution) → admit (content guard, slash rules) → serve (the handler
registered for the distribution's type) → prepare (the response). A plugin's model hook
that raises on the way (:mod:`pulp_content_asgi.plugin.hooks`) is answered here, once: a
logged error naming the plugin and the hook, and a 500 that says so. ``answer`` is the whole
walk in the request's one thread hop; the response cache plugs in as the serve step
(:mod:`pulp_content_asgi.cache.lookup`), so the walk is written once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from pulpcore.app.models import Distribution
from pulpcore.app.util import set_domain

from pulp_content_asgi import conf
from pulp_content_asgi.ondemand.plan import RemotePlan
from pulp_content_asgi.plugin import hooks, registry, results
from pulp_content_asgi.plugin.request import ContentRequest
from pulp_content_asgi.protocol import paths
from pulp_content_asgi.resolution import distributions, guards, remembered
from pulp_content_asgi.serving.prepare import inline, prepare
from pulp_content_asgi.serving.response import Response


def locate(request: ContentRequest, target: paths.RootListing | paths.ContentPath
           ) -> Distribution | results.Result:
    """The distribution the path belongs to, or the answer when there is none (a root or
    partial listing, a redirect to add a slash, 404)."""
    name = target.domain or "default"
    if isinstance(target, paths.RootListing):
        domain = distributions.find_domain(name)
        if domain is None:
            return results.NotFound()
        return results.ServeListing(distributions.listing(domain, ""))
    matched = remembered.recall(name, target.path)
    if matched is None:
        matched = distributions.match(name, target.path)
        if matched is None:
            return _unmatched(name, target.path)
        remembered.learn(name, matched)
    set_domain(matched.pulp_domain)
    request.domain = matched.pulp_domain
    request.distribution = matched
    return matched


def admit(request: ContentRequest, distribution: Distribution, target: paths.ContentPath
          ) -> str | results.Result:
    """The path relative to the distribution, once its guard allowed the request; or the
    guard's refusal, or the redirect that adds the distribution root's slash."""
    denied = guards.check(request, distribution)
    if denied is not None:
        return denied
    relative = target.path.lstrip("/")[len(distribution.base_path):].lstrip("/")
    if not target.path.endswith("/") and (
        relative == "" or (distribution.checkpoint and "/" not in relative)
    ):
        return results.Redirect(f"{request.path}/", keep_query=True)
    return relative


def handle(request: ContentRequest, distribution: Distribution, relative: str
           ) -> results.Result:
    """Hand the request to the handler registered for the distribution's type; content
    to fetch from a remote gets the handler's upstream check unless it has one."""
    handler = registry.handler_for(type(distribution))
    result = handler.serve(request, distribution, relative)
    if isinstance(result, results.ServeRemote) and result.check is None:
        check = handler.upstream_check(distribution, relative)
        if check is not None:
            result = replace(result, check=check)
    return result


def _admitted(request: ContentRequest, target: paths.RootListing | paths.ContentPath
              ) -> tuple[Distribution, str] | results.Result:
    located = locate(request, target)
    if not isinstance(located, Distribution):
        return located
    assert isinstance(target, paths.ContentPath)  # a root listing never locates one
    relative = admit(request, located, target)
    if not isinstance(relative, str):
        return relative
    return located, relative


def plugin_failed(failed: hooks.PluginHookFailed, request: ContentRequest
                  ) -> results.Failure:
    """A plugin hook raised: log it (naming the plugin and the hook) and answer 500 with a
    body that says so, instead of pulpcore-content's bare 500."""
    failed.log(f"{request.method} {request.path}")
    return results.Failure(500, failed.client_message)


def resolve(request: ContentRequest, target: paths.RootListing | paths.ContentPath
            ) -> results.Result:
    """Decide what answers ``request`` (runs on an ORM thread)."""
    try:
        admitted = _admitted(request, target)
        if not isinstance(admitted, tuple):
            return admitted
        return handle(request, *admitted)
    except hooks.PluginHookFailed as failed:
        return plugin_failed(failed, request)


#: The step that serves an admitted request: the plain one, or the response cache's.
Serve = Callable[[ContentRequest, Distribution, str], Response | RemotePlan]


def finish(result: results.Result, request: ContentRequest) -> Response | RemotePlan:
    """The response for a result, small file bodies read (still on the ORM thread)."""
    prepared = prepare(result, request.http, request.received_at,
                       registry.hook_request(request))
    if isinstance(prepared, Response):
        return inline(prepared, conf.current().inline_file_size)
    return prepared


def serve_uncached(request: ContentRequest, distribution: Distribution, relative: str
                   ) -> Response | RemotePlan:
    return finish(handle(request, distribution, relative), request)


def answer(request: ContentRequest, target: paths.RootListing | paths.ContentPath,
           serve: Serve = serve_uncached) -> Response | RemotePlan:
    """The request's whole unit of ORM work, in one thread hop: locate, admit, serve
    (through the response cache when ``serve`` is its step), prepare."""
    try:
        admitted = _admitted(request, target)
        if not isinstance(admitted, tuple):
            return finish(admitted, request)
        return serve(request, *admitted)
    except hooks.PluginHookFailed as failed:
        return finish(plugin_failed(failed, request), request)


def _unmatched(domain_name: str, path: str) -> results.Result:
    """No distribution: a listing or redirect for a partial base path, else 404."""
    domain = distributions.find_domain(domain_name)
    if domain is None:
        return results.NotFound()
    partial = distributions.partial(domain, path)
    if partial is None:
        return results.NotFound()
    if path.endswith("/"):
        return results.ServeListing(distributions.listing(domain, partial.path))
    return results.Redirect(f"{distributions.content_prefix(domain)}{partial.path}",
                            keep_query=True)

"""From a located path to a result: domain, distribution, guard, then the type's handler.

The steps are separate so the response cache can sit between admitting a request (guard
checked) and serving it; ``resolve`` composes them. Everything here runs in the request's
one ORM thread hop.
"""

from __future__ import annotations

from pulpcore.app.models import Distribution
from pulpcore.app.util import set_domain

from pulp_content_asgi import guards, registry, results
from pulp_content_asgi.http import paths
from pulp_content_asgi.request import ContentRequest
from pulp_content_asgi.resolution import distributions


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
    matched = distributions.match(name, target.path)
    if matched is None:
        return _unmatched(name, target.path)
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
        return results.Redirect(f"{request.path}/")
    return relative


def serve(request: ContentRequest, distribution: Distribution, relative: str
          ) -> results.Result:
    """Hand the request to the handler registered for the distribution's type."""
    return registry.handler_for(type(distribution)).serve(request, distribution, relative)


def resolve(request: ContentRequest, target: paths.RootListing | paths.ContentPath
            ) -> results.Result:
    """Decide what answers ``request`` (runs on an ORM thread)."""
    located = locate(request, target)
    if not isinstance(located, Distribution):
        return located
    assert isinstance(target, paths.ContentPath)
    relative = admit(request, located, target)
    if not isinstance(relative, str):
        return relative
    return serve(request, located, relative)


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
    return results.Redirect(f"{distributions.content_prefix(domain)}{partial.path}")

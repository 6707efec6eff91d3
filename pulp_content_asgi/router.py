"""From a located path to a result: domain, distribution, guard, then the type's handler.

``resolve`` is the whole ORM unit of work of a request; it runs in one thread hop.
"""

from __future__ import annotations

from pulpcore.app.util import set_domain

from pulp_content_asgi import guards, registry, results
from pulp_content_asgi.http import paths
from pulp_content_asgi.request import ContentRequest
from pulp_content_asgi.resolution import distributions


def resolve(request: ContentRequest, target: paths.RootListing | paths.ContentPath
            ) -> results.Result:
    """Decide what answers ``request`` (runs on an ORM thread)."""
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
    denied = guards.check(request, matched)
    if denied is not None:
        return denied
    relative = target.path.lstrip("/")[len(matched.base_path):].lstrip("/")
    if not target.path.endswith("/") and (
        relative == "" or (matched.checkpoint and "/" not in relative)
    ):
        return results.Redirect(f"{request.path}/")
    return registry.handler_for(type(matched)).serve(request, matched, relative)


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

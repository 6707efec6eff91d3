"""Content guards decide who may download; pulpcore's models do the deciding.

Every guard type pulpcore and its plugins ship (RBAC, header with jq, signed redirect,
composite, certguard's X.509 and RHSM) implements ``permit(request)`` and raises
``PermissionError`` to refuse; :class:`~pulp_content_asgi.plugin.request.ContentRequest` gives
them the aiohttp-shaped request they read.
"""

from __future__ import annotations

import logging

from pulpcore.app.models import Distribution

from pulp_content_asgi.plugin import hooks, registry
from pulp_content_asgi.plugin.request import ContentRequest
from pulp_content_asgi.plugin.results import Denied

log = logging.getLogger(__name__)


def check(request: ContentRequest, distribution: Distribution) -> Denied | None:
    """``Denied`` with the guard's message when the guard refuses, else None."""
    if distribution.content_guard_id is None:
        return None
    guard = distribution.content_guard.cast()
    try:
        hooks.call(guard, "permit", registry.hook_request(request), allowed=(PermissionError,))
    except PermissionError as refusal:
        log.debug('Path %s not permitted by guard "%s": %s', request.path, guard.name, refusal)
        return Denied(str(refusal))
    return None

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
from pulp_content_asgi.resolution import remembered

log = logging.getLogger(__name__)

#: What pulpcore's guards raise, instead of ``PermissionError``, on credentials they cannot
#: read (found by tests/test_guard_bypass_e2e.py): ``ValueError`` from ``b64decode`` for a
#: header that is not ASCII, ``UnicodeError`` for Base64 of bytes that are not UTF-8 or a
#: certificate that is not ASCII (pyOpenSSL), jq's ``ValueError`` for JSON of another
#: shape than the filter expects, ``StopIteration`` when the filter yields nothing.
#: pulpcore-content answers them 500; the request's own bytes are at fault, so: 403.
UNREADABLE = (ValueError, StopIteration)
UNREADABLE_MESSAGE = "Access denied: the credentials in the request could not be read."


def check(request: ContentRequest, distribution: Distribution) -> Denied | None:
    """``Denied`` with the guard's message when the guard refuses (or cannot read the
    credentials it was given: :data:`UNREADABLE`), else None."""
    if distribution.content_guard_id is None:
        return None
    guard = getattr(distribution, remembered.GUARD, None)
    if guard is None:
        guard = distribution.content_guard.cast()
        remembered.learn_guard(distribution, guard)
    try:
        hooks.call(guard, "permit", registry.hook_request(request),
                   allowed=(PermissionError, *UNREADABLE))
    except PermissionError as refusal:
        log.debug('Path %s not permitted by guard "%s": %s', request.path, guard.name, refusal)
        return Denied(str(refusal))
    except UNREADABLE as unreadable:
        log.warning('Guard "%s" could not read the credentials of a request for %s (%s: %s); '
                    "access denied.", guard.name, request.path, type(unreadable).__name__,
                    unreadable)
        return Denied(UNREADABLE_MESSAGE)
    return None

"""bridge.hooks: a 404 a plugin's hook raises keeps pulpcore's ``cacheable`` flag."""

from __future__ import annotations

from aiohttp import web

from pulp_content_asgi.bridge import hooks
from pulp_content_asgi.plugin import results


def test_a_cacheable_404_stays_cacheable():
    """Review (#14): pulp_maven's ``content_handler`` raises ``BloomFiltered``, an
    ``HTTPNotFound`` with ``cacheable = True``, so that pulpcore's cache keeps the 404 of a
    path its Bloom filter rules out (``AsyncContentCache.make_entry`` reads the flag); the
    bridge dropped it and every such request went to the database again."""

    class BloomFiltered(web.HTTPNotFound):
        cacheable = True

    assert hooks.to_result(BloomFiltered()) == results.NotFound("Not Found", cacheable=True)
    assert hooks.to_result(web.HTTPNotFound(reason="gone")) == results.NotFound("gone")

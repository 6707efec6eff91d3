"""A worker runs exactly as many ORM threads as its pool has connections (db.threads), so
a thread never waits for a connection because of load."""

from __future__ import annotations

import pytest

from pulp_content_asgi import db


@pytest.mark.parametrize(("pool", "configured", "threads"), [
    # bootstrap's own pool: max_size = CONTENT_ASGI_DB_CONNECTIONS.
    ({"min_size": 1, "max_size": 8, "timeout": 10.0}, 8, 8),
    # An operator's pool wins over CONTENT_ASGI_DB_CONNECTIONS (bootstrap leaves it alone).
    ({"min_size": 2, "max_size": 3}, 8, 3),
    # psycopg-pool's defaults: max_size = min_size, min_size = 4.
    ({"min_size": 6}, 8, 6),
    ({}, 8, 4),
    (True, 8, 4),
    # No pool (not PostgreSQL): the setting.
    (None, 5, 5),
    (False, 5, 5),
])
def test_threads_match_the_pools_max_size(pool, configured, threads):
    assert db.threads(pool, configured) == threads

"""Thread hops and SQL queries per request, counted in-process while serving a published
4 KiB file: every ``loop.run_in_executor`` call (asgiref's sync_to_async goes through it
too) and every statement Django's cursors execute, in any thread.

Run as ``python -m bench.hops BASE_PATH`` with PULP_SETTINGS pointing at the bench
settings; prints a JSON object.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any


class CountingLoop(asyncio.SelectorEventLoop):
    hops = 0
    queries = 0

    def run_in_executor(self, executor: Any, func: Any, *args: Any) -> Any:  # type: ignore[override]
        CountingLoop.hops += 1
        return super().run_in_executor(executor, func, *args)


async def ours(path: str, n: int) -> float:
    from pulp_content_asgi.asgi import application

    async def one() -> None:
        scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(),
                 "query_string": b"", "headers": [(b"host", b"bench")], "scheme": "http",
                 "http_version": "1.1", "server": ("127.0.0.1", 1), "client": ("127.0.0.1", 2)}
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        await application(scope, receive, send)
        assert sent[0]["status"] == 200, sent[0]

    await one()
    CountingLoop.hops = CountingLoop.queries = 0
    for _ in range(n):
        await one()
    return CountingLoop.hops / n


async def pulpcore(path: str, n: int) -> float:
    from aiohttp import ClientSession
    from aiohttp.test_utils import TestServer
    from pulpcore.content import server

    app = await server()
    test_server = TestServer(app)
    await test_server.start_server()
    try:
        async with ClientSession() as session:
            url = str(test_server.make_url(path))
            async with session.get(url) as response:
                assert response.status == 200
                await response.read()
            CountingLoop.hops = CountingLoop.queries = 0
            for _ in range(n):
                async with session.get(url) as response:
                    await response.read()
            return CountingLoop.hops / n
    finally:
        await test_server.close()


def _count_queries() -> None:
    from django.db.backends import utils

    original = utils.CursorWrapper.execute

    def execute(self: Any, sql: Any, params: Any = None) -> Any:
        CountingLoop.queries += 1
        return original(self, sql, params)

    utils.CursorWrapper.execute = execute  # type: ignore[method-assign]


def main() -> None:
    which, path = sys.argv[1], sys.argv[2]
    loop = CountingLoop()
    asyncio.set_event_loop(loop)
    n = 200
    if which == "ours":
        from pulp_content_asgi import bootstrap

        bootstrap.setup()
        _count_queries()
        value = loop.run_until_complete(ours(path, n))
    else:
        import os

        import django

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pulpcore.app.settings")
        django.setup()
        _count_queries()
        value = loop.run_until_complete(pulpcore(path, n))
    print(json.dumps({"hops_per_request": value, "queries_per_request": CountingLoop.queries / n}))


if __name__ == "__main__":
    main()

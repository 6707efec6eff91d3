"""The conformance stack's own Redis (conformance/stack.py ``start_redis``): each stack
talks to a redis-server it started, so two checkouts' stacks and parity runs never share,
read or empty each other's databases (issue #12: the parity pair's databases used to be
picked from the checkout's path hash, one pair in seven shared). A port another server
already holds is refused, never shared."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from conformance import parity
from conformance import stack as stacks
from pulp_content_asgi.devtools.processes import free_port


def _layout(root: Path) -> stacks.Layout:
    """A stack whose Redis port (nginx + REDIS_OFFSET) is free now."""
    root.mkdir()
    for sub in ("logs", "pids"):
        (root / sub).mkdir()
    nginx = free_port() - stacks.REDIS_OFFSET
    return stacks.Layout(root=str(root), dbname="unused", nginx=nginx, api=nginx + 1,
                         asgi=nginx + 2, legacy=nginx + 3, domains=False)


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[stacks.Layout, stacks.Layout]]:
    first, second = _layout(tmp_path / "one"), _layout(tmp_path / "two")
    yield first, second
    for layout in (first, second):
        stacks.down(layout, quiet=True)


def _pid(layout: stacks.Layout) -> int:
    return int(Path(layout.path("pids", "redis.pid")).read_text())


def test_each_stack_talks_to_its_own_redis(two: tuple[stacks.Layout, stacks.Layout]) -> None:
    for layout in two:
        stacks.start_redis(layout)
        assert stacks.settings_for(layout)["REDIS_PORT"] == layout.redis
    clients = [redis.Redis(port=layout.redis, db=parity.REDIS_DBS[0]) for layout in two]
    assert [c.info("server")["process_id"] for c in clients] == [_pid(x) for x in two]
    clients[0].set("entry", "first stack's")
    clients[1].flushdb()  # what a parity run of the other stack does first
    assert clients[0].get("entry") == b"first stack's"


def test_a_port_another_server_holds_is_refused(two: tuple[stacks.Layout, stacks.Layout]
                                               ) -> None:
    first, second = two
    stacks.start_redis(first)
    taken = stacks.Layout(**{**second.__dict__, "nginx": first.nginx})
    with pytest.raises(SystemExit, match=f"did not start on 127.0.0.1:{first.redis}"):
        stacks.start_redis(taken, timeout=10)
    assert redis.Redis(port=first.redis).info("server")["process_id"] == _pid(first)


def test_the_pair_never_uses_the_stack_apps_database() -> None:
    assert 0 not in parity.REDIS_DBS and len(set(parity.REDIS_DBS)) == 2
    offsets = {stacks.REDIS_OFFSET, *parity.PAIR_OFFSET.values()}
    assert len(offsets) == 3 and not offsets & {0, 1, 2, 3}

"""Two "hosts" serving one on-demand artifact at once (issue #17): two app instances with
WORKING_DIRECTORYs of their own, sharing PostgreSQL, Redis and storage (MEDIA_ROOT).

Before #17 the download's leader was chosen by an advisory lock derived from the artifact
alone, so a request on the second host followed a spool file written on the first host's
disk: it never appeared, and the request waited until the first host's download and its
last client were done. Now each working directory has its own leader: each host fetches
the artifact at most once, and neither waits for the other.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from pulpcore.app.models import Artifact

from tests.helpers import (
    content_app,
    content_artifact,
    metered_env,
    on_demand,
    scrape,
    stop_server,
    url,
    value,
    wait_for,
)
from tests.upstream import Behaviour

# Issue #17's faults: also run by `make adversarial` (tests/adversarial.py).
pytestmark = pytest.mark.adversarial

JOINED = "pulp_content_ondemand_collapsed_requests_total"


@pytest.fixture(scope="module")
def hosts(cache_settings, tmp_path_factory) -> Iterator[tuple[object, object]]:
    """Host A (one worker) and host B (two workers, Prometheus on: its count of requests
    that joined a download says when both of its requests are in)."""
    a_dir = str(tmp_path_factory.mktemp("host-a-work"))
    b_dir = str(tmp_path_factory.mktemp("host-b-work"))
    metrics = str(tmp_path_factory.mktemp("host-b-metrics"))
    a = content_app(env={**cache_settings, "PULP_WORKING_DIRECTORY": a_dir})
    b = content_app(env={**cache_settings, **metered_env(metrics),
                         "PULP_WORKING_DIRECTORY": b_dir}, workers=2)
    yield a, b
    stop_server(a)
    stop_server(b)
    shutil.rmtree(metrics, ignore_errors=True)


def get(target: str) -> httpx.Response:
    return httpx.get(target, timeout=120)


def test_two_hosts_fetch_once_each_and_neither_waits_for_the_other(hosts, upstream):
    a, b = hosts
    blob = os.urandom(3 * 1024 * 1024 + 1)
    distribution, prefix, repo = on_demand(upstream, {"h.bin": blob})
    path = prefix + "h.bin"
    gate = threading.Event()  # every download of it is held after its first 64 KiB
    upstream.behaviour[path] = Behaviour(gate=gate, gate_after=65536)
    joined_before = value(scrape(b), JOINED)
    with ThreadPoolExecutor(3) as pool:
        try:
            on_a = pool.submit(get, url(a, distribution, "h.bin"))
            assert wait_for(lambda: upstream.hits[path] == 1)
            on_b = [pool.submit(get, url(b, distribution, "h.bin")) for _ in range(2)]
            # Host B's own download reaches the upstream while host A's is still held.
            assert wait_for(lambda: upstream.hits[path] == 2)
            # B's second request joined B's download (in its worker or the other one).
            assert wait_for(lambda: value(scrape(b), JOINED) > joined_before)
        finally:
            gate.set()
        responses = [on_a.result(120), *(f.result(120) for f in on_b)]
    for response in responses:
        assert response.status_code == 200 and response.content == blob
    assert upstream.hits[path] == 2  # once per host
    # Both hosts saved it: one artifact, its file whole, the content linked to it.
    sha256 = hashlib.sha256(blob).hexdigest()
    assert wait_for(lambda: content_artifact(repo, "h.bin").artifact_id is not None)
    assert Artifact.objects.filter(sha256=sha256).count() == 1
    with open(content_artifact(repo, "h.bin").artifact.file.path, "rb") as stored:
        assert stored.read() == blob
    for host in (a, b):
        stored_answer = get(url(host, distribution, "h.bin"))
        assert stored_answer.content == blob
        assert stored_answer.headers["content-length"] == str(len(blob))
    assert upstream.hits[path] == 2

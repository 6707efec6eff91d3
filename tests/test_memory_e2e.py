"""Memory stays bounded while a 1 GiB artifact streams to a slow client.

The bound is checked on the worker's resident set size sampled from /proc while the
download runs (no timings are asserted).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time

import httpx
import pytest

from pulp_content_asgi.devtools import data
from pulp_content_asgi.devtools.processes import family, rss
from tests.helpers import content_app, stop_server

GIB = 1 << 30
MIB = 1 << 20


@pytest.fixture(scope="module")
def one_gib(tmp_path_factory):
    from django.conf import settings

    block = os.urandom(MIB)
    fd, path = tempfile.mkstemp(dir=settings.WORKING_DIRECTORY)
    digest = hashlib.sha256()
    with os.fdopen(fd, "wb") as out:
        for i in range(GIB // MIB):
            chunk = i.to_bytes(8, "big") + block[8:]
            digest.update(chunk)
            out.write(chunk)
    repo = data.repository(f"gib-{digest.hexdigest()[:8]}-{os.getpid()}",
                           {"big.iso": data.artifact_from_path(path)})
    distribution = data.distribute(f"gib-{os.getpid()}-{digest.hexdigest()[:8]}",
                                   publication=data.publish(repo.latest_version()))
    return distribution, digest.hexdigest()


@pytest.mark.parametrize("server", ["uvicorn", "granian"])
def test_one_gib_download_keeps_worker_rss_bounded(one_gib, server):
    distribution, sha256 = one_gib
    # Python streaming path under uvicorn; granian's pathsend under granian.
    running = content_app(server)
    try:
        workers = family(running.pid)
        baseline = max(rss(p) for p in workers)
        peak = [baseline]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max([peak[0]] + [rss(p) for p in family(running.pid)])
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        digest, received = hashlib.sha256(), 0
        url = running.url(f"/pulp/content/{distribution.base_path}/big.iso")
        with httpx.stream("GET", url, timeout=120) as response:
            assert response.status_code == 200
            for i, chunk in enumerate(response.iter_raw(MIB)):
                digest.update(chunk)
                received += len(chunk)
                if i < 200:
                    time.sleep(0.005)  # a slow reader for the first 200 MiB: backpressure
        done.set()
        sampler.join()
        assert received == GIB
        assert digest.hexdigest() == sha256
        growth = peak[0] - baseline
        assert growth < 64 * MIB, f"RSS grew by {growth / MIB:.0f} MiB"
        assert peak[0] < 300 * MIB, f"peak RSS {peak[0] / MIB:.0f} MiB"
    finally:
        stop_server(running)

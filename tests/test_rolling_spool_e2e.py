"""An old release and this checkout on one host during a rolling upgrade (issue #17):
both see the same WORKING_DIRECTORY, so both name an artifact's on-demand spool file
``ondemand-<sha256(key)[:40]>`` there. The old release (``OLD_RELEASE``) takes the
download's advisory lock from the key alone, this checkout from the spool area and the
key (per-WORKING_DIRECTORY leadership): each takes a lock the other never asks for, both
lead the same download and write the same spool file.

Found by ``make adversarial`` (rolling upgrade, 1 of 16,967 requests): this checkout cut
an on-demand answer after its headers, logging that "its spool file ... holds fewer bytes
than were written to it (none at 0): something truncated it".

Expected: first downloads of one on-demand file by both versions at the same time on
one host, and a request joining one of them, all end whole.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import httpx
import pytest

from pulp_content_asgi.devtools.processes import Server, free_port, start, stop
from tests.helpers import BIN, DEADLINE, ROOT, TEST_ROOT, on_demand, url, wait_for
from tests.test_rolling_upgrade_e2e import OLD_RELEASE, export_release
from tests.upstream import Behaviour

pytestmark = pytest.mark.adversarial

SIZE = 3 * 1024 * 1024 + 17


@pytest.fixture(scope="module")
def old_tree() -> Iterator[str]:
    directory = tempfile.mkdtemp(prefix="old-release-")
    yield export_release(OLD_RELEASE, directory)
    shutil.rmtree(directory, ignore_errors=True)


def server(version: str, old_tree: str) -> Server:
    """One granian worker of ``version`` ("old" or "new") on this test's settings, so on
    the WORKING_DIRECTORY every server of the session shares."""
    argv = [os.path.join(BIN, "pulp-content-asgi"), "--bind", "127.0.0.1:{port}",
            "--server", "granian", "--workers", "1", "--log-level", "warning"]
    env, cwd = {}, ROOT
    if version == "old":
        env, cwd = {"PYTHONPATH": old_tree}, old_tree
    return start(argv, os.path.join(TEST_ROOT, "rolling-spool"), env, port=free_port(),
                 cwd=cwd, timeout=180)


@pytest.fixture(scope="module")
def both(old_tree) -> Iterator[dict[str, Server]]:
    running = {"old": server("old", old_tree), "new": server("new", old_tree)}
    yield running
    for process in running.values():
        stop(process)


def whole(target: str, headers_in: threading.Event) -> tuple[int, bytes, str]:
    """GET ``target``: status, the bytes received, and why the body ended early ("" if
    it did not); ``headers_in`` is set once the response headers have arrived."""
    received = bytearray()
    with httpx.stream("GET", target, timeout=DEADLINE) as response:
        headers_in.set()
        try:
            for chunk in response.iter_raw():
                received += chunk
        except httpx.HTTPError as exc:
            return response.status_code, bytes(received), repr(exc)
        return response.status_code, bytes(received), ""


@pytest.mark.parametrize("first", ["old", "new"])
def test_first_downloads_by_two_versions_on_one_host_all_end_whole(both, upstream, first):
    """``first`` leads the download (its upstream held after 64 KiB); the other version
    asks for the same file (its upstream held before the headers); then a second client
    of ``first`` joins ``first``'s download from byte 0. Every answer is the file."""
    all_end_whole(both, upstream, first)


#: The last commit before the spool file's name took the lock's identity and
#: ``SPOOL_GENERATION`` (9609e0c): it takes a download's lock exactly as this checkout
#: does (spool area and key) but spools into ``ondemand-<sha256(key)[:40]>``.
PREVIOUS = "b4595526ca0bfe478ffb2514ac677bd71568407e"


@pytest.fixture(scope="module")
def previous_and_new() -> Iterator[dict[str, Server]]:
    directory = tempfile.mkdtemp(prefix="previous-release-")
    tree = export_release(PREVIOUS, directory)
    running = {"old": server("old", tree), "new": server("new", tree)}
    yield running
    for process in running.values():
        stop(process)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("first", ["old", "new"])
def test_first_downloads_by_the_previous_commit_and_this_one_all_end_whole(
        previous_and_new, upstream, first):
    """As above, during an upgrade from :data:`PREVIOUS`: both versions compete for the
    same lock, so the one that loses it follows, and must find the leader's spool (or
    lead a download of its own), not wait for a file the leader never writes (it names
    it otherwise) until the leader's download is over and its lock let go."""
    all_end_whole(previous_and_new, upstream, first)


#: The parent of the commit that put ``SPOOL_GENERATION`` into the lock's id (654fbda),
#: and every commit since 9609e0c: it takes the lock from spool area and key alone but
#: already names its spool ``ondemand-a2-<sha256("a2:" area ":" key)[:40]>``, as this
#: checkout does. ``SPOOL_GENERATION`` stayed "a2" while the lock changed, so the two
#: take different locks and lead one download into one file (opened ``wb``).
GENERATION_IN_NAME_ONLY = "3340078433b9e4408341bcc084a5f7e377c8a213"


@pytest.fixture(scope="module")
def generation_in_name_only_and_new() -> Iterator[dict[str, Server]]:
    directory = tempfile.mkdtemp(prefix="name-only-release-")
    tree = export_release(GENERATION_IN_NAME_ONLY, directory)
    running = {"old": server("old", tree), "new": server("new", tree)}
    yield running
    for process in running.values():
        stop(process)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("first", ["old", "new"])
def test_first_downloads_by_the_fixs_parent_and_this_one_all_end_whole(
        generation_in_name_only_and_new, upstream, first):
    """As above, during an upgrade from :data:`GENERATION_IN_NAME_ONLY` (what main ran
    from 9609e0c until this fix): different locks, one spool name. Each version must
    lead into a file of its own (or follow the other's), never truncate the other's."""
    all_end_whole(generation_in_name_only_and_new, upstream, first)


def all_end_whole(both: dict[str, Server], upstream, first: str) -> None:
    other = "new" if first == "old" else "old"
    blob = os.urandom(SIZE)
    distribution, prefix, _ = on_demand(upstream, {"r.bin": blob})
    path = prefix + "r.bin"
    target = {version: url(both[version], distribution, "r.bin") for version in both}
    held_body, held_headers = threading.Event(), threading.Event()
    upstream.behaviour[path] = Behaviour(gate=held_body, gate_after=65536)
    headers_in = {name: threading.Event() for name in ("leader", "other", "joiner")}
    answers: dict[str, Future] = {}
    with ThreadPoolExecutor(3) as pool:
        try:
            answers["leader"] = pool.submit(whole, target[first], headers_in["leader"])
            assert wait_for(lambda: upstream.hits[path] == 1)
            assert headers_in["leader"].wait(DEADLINE)
            # The next download of it from the upstream is held before its headers.
            upstream.behaviour[path] = Behaviour(gate=held_headers)
            answers["other"] = pool.submit(whole, target[other], headers_in["other"])
            # The other version either follows the leader (its client gets the headers)
            # or leads a download of its own (it opened its spool, then asked upstream).
            assert wait_for(lambda: headers_in["other"].is_set() or upstream.hits[path] == 2), (
                f"{other} neither followed {first}'s download (no headers) nor led its own "
                f"(the upstream was asked {upstream.hits[path]} times)")
            answers["joiner"] = pool.submit(whole, target[first], headers_in["joiner"])
            assert headers_in["joiner"].wait(DEADLINE)
        finally:
            held_body.set()
            held_headers.set()
        outcome = {name: answer.result(DEADLINE) for name, answer in answers.items()}
    wrong = {name: (status, len(body), body == blob[:len(body)], cut)
             for name, (status, body, cut) in outcome.items()
             if status != 200 or body != blob}
    assert not wrong, (f"{len(blob)} bytes expected; the upstream was asked "
                       f"{upstream.hits[path]} times; (status, bytes, a prefix of the file, "
                       f"why it ended) by request: {wrong}")

"""Two downloads of one artifact in one process, the app called in process (as a server
calls it), with a real upstream on loopback and the real PostgreSQL for the advisory locks.

A streamed download is unlisted as soon as it is over, but its spool file (and lock) stay
until its last client has left and its grace period has ended; a new request for the
same artifact meanwhile starts a second download. Each test holds a client at a known
point of its body (its ``send`` waits for the test), lets the other download run, then
lets the held client go on: what it then receives must be the file's bytes, whole.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
from collections.abc import Callable
from typing import Any

import pytest

from pulp_content_asgi.ondemand.coordination import spool_path
from tests.helpers import content_artifact, on_demand, scope
from tests.upstream import Behaviour

SIZE = 2 * 1024 * 1024 + 17  # more than one read step (1 MiB) of a spool
LATE = 1_500_000  # a position the second download overwrites in the first one's spool


class Client:
    """One request to the app; its ``send`` stops after the first message ``hold_after``
    accepts until :meth:`go_on`. ``error`` is what the app raised (a server then closes
    the connection: the client sees a cut)."""

    def __init__(self, target: str, headers: dict[str, str] | None = None,
                 hold_after: Callable[[dict[str, Any]], bool] | None = None) -> None:
        self.scope = scope(target, headers=headers)
        self.hold_after = hold_after
        self.held = asyncio.Event()
        self._go_on = asyncio.Event()
        self.sent: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        from pulp_content_asgi.asgi import application

        async def receive() -> dict[str, Any]:
            await asyncio.Event().wait()  # the client never leaves
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            self.sent.append(message)
            if self.hold_after is not None and not self.held.is_set() \
                    and self.hold_after(message):
                self.held.set()
                await self._go_on.wait()

        try:
            await application(self.scope, receive, send)
        except Exception as exc:  # what a server sees: it closes the connection mid-body
            self.error = exc

    def go_on(self) -> None:
        self._go_on.set()

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def complete(self) -> bool:
        """The body ended (a last body message without ``more_body``), nothing raised."""
        last = self.sent[-1] if self.sent else {}
        return self.error is None and last.get("type") == "http.response.body" \
            and not last.get("more_body", False)

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent
                        if m["type"] == "http.response.body")

    def parts(self) -> list[bytes]:
        """The bytes of each part of a multipart/byteranges body (RFC 9110 §14.6)."""
        kind = dict(self.sent[0]["headers"])[b"content-type"].decode()
        boundary = re.search(r"boundary=(\S+)", kind)
        assert boundary is not None, kind
        chunks = self.body.split(b"\r\n--" + boundary.group(1).encode())
        return [c.partition(b"\r\n\r\n")[2] for c in chunks[1:-1]]


async def until(predicate: Callable[[], bool]) -> None:
    """Until ``predicate`` holds, checked every loop turn (the app runs meanwhile)."""
    while not predicate():
        await asyncio.sleep(0.01)


def _body_bytes(wanted: bytes) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m["type"] == "http.response.body" and m.get("body") == wanted


def _any_body(message: dict[str, Any]) -> bool:
    return message["type"] == "http.response.body" and bool(message.get("body"))


@pytest.fixture
def streamed(upstream):
    """A streamed file: (its URL path, its bytes, its spool path, upstream key)."""
    blob = os.urandom(SIZE)
    distribution, prefix, repo = on_demand(upstream, {"s.bin": blob}, policy="streamed")
    key = f"ca:{content_artifact(repo, 's.bin').pk}"
    return (f"/pulp/content/{distribution.base_path}/s.bin", blob, spool_path(key),
            prefix + "s.bin")


def _run(main: Callable[[], Any]) -> None:
    """Run ``main`` on a new loop; then this process's downloads are let go (files and
    locks), as a worker that stops lets them go."""
    from pulp_content_asgi.ondemand.inflight import inflight

    async def scenario() -> None:
        try:
            await main()
        finally:
            await inflight.shutdown()

    asyncio.run(scenario())


def test_a_client_still_reading_a_finished_download_gets_its_bytes(upstream, streamed):
    """A multipart answer reads its parts one after the other: the second part of a
    finished download is read while a newer download of the same file (whose upstream
    now has other bytes) runs; it is still the first download's bytes."""
    from pulp_content_asgi.ondemand.inflight import inflight

    target, blob, _, name = streamed
    newer = os.urandom(SIZE)

    async def main() -> None:
        slow = Client(target, {"Range": f"bytes=0-99,{LATE}-{LATE + 99}"},
                      hold_after=_body_bytes(blob[:100]))
        await slow.held.wait()  # its first part is sent (held for the verdict: all in)
        await until(lambda: len(inflight) == 0)  # over, and unlisted: never joined
        upstream.files[name] = newer
        fresh = Client(target)
        await fresh.task
        assert fresh.status == 200 and fresh.complete and fresh.body == newer
        slow.go_on()
        await slow.task
        assert slow.status == 206 and slow.complete, slow.error
        assert slow.parts() == [blob[:100], blob[LATE:LATE + 100]]

    _run(main)
    assert upstream.hits[name] == 2


def test_an_older_download_s_cleanup_leaves_a_newer_one_s_spool_alone(upstream, streamed):
    """A multipart answer of a newer download, still sending its parts when an older
    download of the same file is cleaned up, gets every part (the cut of the finding:
    the older download removed the spool file the newer one's parts are read from)."""
    from pulp_content_asgi.ondemand.inflight import inflight

    target, blob, shared, name = streamed

    async def main() -> None:
        older = Client(target, hold_after=_any_body)  # a slow client of the first download
        await older.held.wait()
        await until(lambda: len(inflight) == 0)
        newer = Client(target, {"Range": f"bytes=0-99,{LATE}-{LATE + 99}"},
                       hold_after=_body_bytes(blob[:100]))
        await newer.held.wait()
        await until(lambda: len(inflight) == 0)
        older.go_on()
        await older.task
        assert older.status == 200 and older.complete and older.body == blob
        # The older download is cleaned once its grace period ends: the artifact's
        # shared spool file goes then.
        await until(lambda: not os.path.exists(shared))
        newer.go_on()
        await newer.task
        assert newer.status == 206 and newer.complete, newer.error
        assert newer.parts() == [blob[:100], blob[LATE:LATE + 100]]

    _run(main)
    assert upstream.hits[name] == 2


def test_a_download_started_while_a_failed_one_is_still_read_is_saved(upstream, caplog):
    """on_demand: the first download fails its digest check while a slow client still
    reads it; the retry (the remote fixed) is a download of its own, which is saved and
    served whole. The slow client's answer is cut, and the log says so once."""
    from pulpcore.app.models import RemoteArtifact

    from pulp_content_asgi.ondemand.inflight import inflight

    blob = os.urandom(SIZE)
    distribution, prefix, repo = on_demand(upstream, {"o.bin": blob})
    target, name = f"/pulp/content/{distribution.base_path}/o.bin", prefix + "o.bin"
    upstream.behaviour[name] = Behaviour(corrupt=True)

    def fixed() -> None:
        del upstream.behaviour[name]
        RemoteArtifact.objects.filter(content_artifact=content_artifact(repo, "o.bin")
                                      ).update(failed_at=None)

    async def main() -> None:
        slow = Client(target, hold_after=_any_body)
        await slow.held.wait()
        await until(lambda: len(inflight) == 0)  # failed (and cooled down): unlisted
        await asyncio.to_thread(fixed)
        retry = Client(target)
        await retry.task
        assert retry.status == 200 and retry.complete and retry.body == blob
        slow.go_on()
        await slow.task
        assert slow.status == 200 and not slow.complete and slow.error is None
        assert len(slow.body) < len(blob)

    with caplog.at_level(logging.WARNING, logger="pulp_content_asgi"):
        _run(main)
    saved = content_artifact(repo, "o.bin").artifact
    assert saved is not None and saved.sha256 == hashlib.sha256(blob).hexdigest()
    with open(saved.file.path, "rb") as stored:
        assert stored.read() == blob
    assert upstream.hits[name] == 2
    (cut,) = [r.getMessage() for r in caplog.records
              if r.name == "pulp_content_asgi.serving.send"]
    assert cut.startswith(f"Cut short the answer to GET {target} after its headers were "
                          "sent: its download failed")

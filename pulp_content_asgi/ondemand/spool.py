"""A file being downloaded that any number of readers follow while it grows."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Mapping
from typing import IO


class SpoolFailed(Exception):
    """The download behind a spool failed; readers must not end the response cleanly."""


class UpstreamError(Exception):
    """Every remote failed before sending a byte; ``status`` is what to answer (404 unless a
    pull-through upstream answered an HTTP error)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Spool:
    """One writer appends; readers read up to what is written, then wait for more.

    With ``shared`` the headers and the outcome are also written to a sidecar file so
    followers in other processes can read along (:class:`FollowedSpool`).
    """

    def __init__(self, path: str, shared: bool = False) -> None:
        self.path = path
        self.shared = shared
        self._file: IO[bytes] = open(path, "wb")  # noqa: SIM115 - closed by finish()
        self.size = 0
        self.headers: Mapping[str, str] | None = None
        self.error: BaseException | None = None
        self.done = False
        self._changed = asyncio.Event()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _publish(self, **outcome: object) -> None:
        if self.shared:
            from pulp_content_asgi.ondemand.coordination import write_meta

            with contextlib.suppress(OSError):
                write_meta(self.path, {"headers": self.headers, "size": self.size, **outcome})

    def set_headers(self, headers: Mapping[str, str]) -> None:
        if self.headers is None:
            self.headers = dict(headers)
            self._publish()
            self._notify()

    async def write(self, data: bytes) -> None:
        if not data:
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._append, data)
        self.size += len(data)
        self._notify()

    def _append(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()

    def finish(self, error: BaseException | None = None) -> None:
        """Mark the download complete (or failed); readers drain or fail."""
        with contextlib.suppress(OSError):
            self._file.close()
        if error is None:
            self.set_headers({})
            self.done = True
            self._publish(state="done", at=time.time())
        else:
            self.error = error
            status = error.status if isinstance(error, UpstreamError) else 502
            self._publish(state="failed", status=status, message=str(error), at=time.time())
        self._notify()

    async def wait_done(self) -> bool:
        """Until the download is over; True when it completed (and was verified)."""
        while not self.done:
            if self.error is not None:
                return False
            await self._changed.wait()
        return True

    async def wait_headers(self) -> Mapping[str, str]:
        """The upstream headers; raises the download's error if it failed before them."""
        while self.headers is None:
            if self.error is not None:
                raise self.error
            await self._changed.wait()
        return self.headers

    async def read(self, offset: int, length: int | None, chunk_size: int, hold: int = 0
                   ) -> AsyncIterator[bytes]:
        """``length`` bytes from ``offset`` (to the end when None), as they arrive; the
        last ``hold`` of them only once the download is complete (verified)."""
        loop = asyncio.get_running_loop()
        handle = await loop.run_in_executor(None, open, self.path, "rb")
        try:
            position, end = offset, None if length is None else offset + length
            while end is None or position < end:
                available = self.size if end is None else min(self.size, end)
                if end is not None and not self.done:
                    available = min(available, end - hold)
                if position < available:
                    chunk = await _read_step(handle, position, available, chunk_size)
                    position += len(chunk)
                    yield chunk
                    continue
                if self.error is not None:
                    raise SpoolFailed(str(self.error)) from self.error
                if self.done:
                    if end is not None and position < end:
                        raise SpoolFailed(f"download ended at {self.size} bytes, before {end}")
                    return
                await self._changed.wait()
        finally:
            handle.close()

    def discard(self) -> None:
        """Remove the files (when the download is over and nobody reads it)."""
        from pulp_content_asgi.ondemand.coordination import remove

        with contextlib.suppress(OSError):
            self._file.close()
        remove(self.path)


def _pread(handle: IO[bytes], size: int, offset: int) -> bytes:
    return os.pread(handle.fileno(), size, offset)


async def _read_step(handle: IO[bytes], position: int, available: int, chunk_size: int
                     ) -> bytes:
    """The next chunk up to ``available``, read off the event loop."""
    wanted = min(chunk_size, available - position)
    return await asyncio.get_running_loop().run_in_executor(None, _pread, handle, wanted,
                                                            position)


class LeaderGone(Exception):
    """The process leading a download vanished before finishing it."""


class Stale(Exception):
    """The followed download finished before the request resolved: a failure that must
    not be replayed, or a save the database no longer shows (reclaimed since)."""


class FollowedSpool:
    """A spool another process (the leader) writes: followed through the file system.

    Growth is seen by polling the file's size, the headers and the outcome through the
    leader's sidecar file; the leader's advisory lock tells whether it is still alive.
    """

    POLL = 0.02
    LIVENESS_EVERY = 50  # polls between liveness checks (about a second)

    def __init__(self, path: str, lock: int, since: float) -> None:
        self.path = path
        self.lock = lock
        self.since = since  # when the request resolved (wall clock, as the leader's "at")

    async def _leader_alive(self) -> bool:
        from pulp_content_asgi.ondemand.coordination import coordinator

        acquired = await asyncio.to_thread(coordinator.try_lock, self.lock)
        if acquired:
            await asyncio.to_thread(coordinator.unlock, self.lock)
        return not acquired

    def _meta(self) -> dict | None:
        from pulp_content_asgi.ondemand.coordination import read_meta

        return read_meta(self.path)

    async def wait_done(self) -> bool:
        polls = 0
        while True:
            state = (self._meta() or {}).get("state")
            if state in ("done", "failed"):
                return state == "done"
            polls += 1
            if polls % self.LIVENESS_EVERY == 0 and not await self._leader_alive() \
                    and (self._meta() or {}).get("state") is None:
                return False
            await asyncio.sleep(self.POLL)

    async def wait_headers(self) -> Mapping[str, str]:
        polls = 0
        while True:
            meta = self._meta() or {}
            if meta.get("state") in ("done", "failed") \
                    and float(meta.get("at", 0)) < self.since:
                # Over before this request resolved (the files linger for the leader's
                # other readers): a failure is not replayed, and a saved download that the
                # database did not show has been reclaimed since. Fetch afresh.
                raise Stale(self.path)
            if meta.get("headers") is not None:
                return dict(meta["headers"])
            if meta.get("state") == "failed":
                raise UpstreamError(int(meta.get("status", 404)), meta.get("message", ""))
            polls += 1
            if polls % self.LIVENESS_EVERY == 0 and not await self._leader_alive() \
                    and (self._meta() or {}).get("headers") is None:
                raise LeaderGone(self.path)
            await asyncio.sleep(self.POLL)

    async def read(self, offset: int, length: int | None, chunk_size: int, hold: int = 0
                   ) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        try:
            handle = await loop.run_in_executor(None, open, self.path, "rb")
        except FileNotFoundError:
            raise SpoolFailed("the leader's spool file is gone") from None
        try:
            position, end, polls = offset, None if length is None else offset + length, 0
            while end is None or position < end:
                size = os.fstat(handle.fileno()).st_size
                available = size if end is None else min(size, end)
                if end is not None and hold and available > end - hold \
                        and (self._meta() or {}).get("state") != "done":
                    available = end - hold
                if position < available:
                    chunk = await _read_step(handle, position, available, chunk_size)
                    position += len(chunk)
                    yield chunk
                    continue
                meta = self._meta() or {}
                if meta.get("state") == "failed":
                    raise SpoolFailed(meta.get("message", "download failed"))
                if meta.get("state") == "done" and os.fstat(handle.fileno()).st_size == size:
                    if end is not None and position < end:
                        if size >= end:
                            continue  # the held tail is verified now
                        raise SpoolFailed(f"download ended at {size} bytes, before {end}")
                    return
                polls += 1
                if polls % self.LIVENESS_EVERY == 0 and not await self._leader_alive() \
                        and (self._meta() or {}).get("state") is None:
                    raise SpoolFailed("the process leading this download went away")
                await asyncio.sleep(self.POLL)
        finally:
            handle.close()

    def discard(self) -> None:
        """Followers leave the files to their leader."""

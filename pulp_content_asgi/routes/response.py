"""A Django response that carries one of our responses, so a live route's view is
answered by the same sender as the content path (ranges, pathsend, bounded copies)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from django.http import HttpResponseBase

from pulp_content_asgi.serving.response import Response
from pulp_content_asgi.serving.send import Send, Sending, send_response


async def _never() -> dict[str, Any]:
    # Django's handler listens for the disconnect itself and cancels the send on it.
    await asyncio.Future()
    raise AssertionError("unreachable")


class ContentResponse(HttpResponseBase):
    """``response`` as a Django response; middleware may change its status and headers.

    Sent by :class:`pulp_content_asgi.routes.handler.LiveRoutes`, never by Django itself
    (``streaming`` keeps body-reading middleware such as ``ConditionalGetMiddleware`` off
    it: the responder already answered preconditions and ranges).
    """

    streaming = True

    def __init__(self, response: Response, scope: Mapping[str, Any]) -> None:
        super().__init__(status=response.status, headers=dict(response.headers))
        if not any(name.lower() == "content-type" for name in response.headers):
            del self.headers["Content-Type"]  # Django's text/html default is not ours
        self.content = response
        self.scope = scope
        self._sending = False

    async def send_to(self, send: Send, how: Sending) -> bool:
        """Send it; False when the client left before the body was complete."""
        self._sending = True  # from here the sender releases what the body holds
        final = replace(self.content, status=self.status_code, headers=dict(self.headers))
        return await send_response(final, self.scope, _never, send, how)

    def close(self) -> None:
        source = getattr(self.content.body, "source", None)
        if source is not None and not self._sending:
            source.release()  # an on-demand stream never sent (middleware answered instead)
        super().close()

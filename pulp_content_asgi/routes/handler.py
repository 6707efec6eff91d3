"""Django's ASGI handler, narrowed to the plugins' live routes."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Any

from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponseBase
from django.urls import Resolver404, get_resolver, include, path

from pulp_content_asgi.routes.response import ContentResponse
from pulp_content_asgi.serving.send import Send, Sending

log = logging.getLogger(__name__)


def urlconf(modules: Sequence[str]) -> ModuleType:
    """One URLconf including every plugin's (in plugin order: the first match wins)."""
    combined = ModuleType("pulp_content_asgi.routes.live_urls")
    combined.urlpatterns = [path("", include(name)) for name in modules]  # type: ignore[attr-defined]
    return combined


class LiveRoutes(ASGIHandler):
    """Serves the live routes of ``urlconfs`` with ``middleware`` (dotted paths).

    Unlike Django's own handler it does not use ``ROOT_URLCONF`` or ``MIDDLEWARE`` (the
    API's), and responses that carry one of our responses are sent by our sender.
    """

    def __init__(self, urlconfs: Sequence[str], middleware: Iterable[str],
                 sending: Sending) -> None:
        self.urlconf = urlconf(urlconfs)
        self.sending = sending
        api_middleware = settings.MIDDLEWARE
        # BaseHandler.load_middleware reads the setting; ours applies to these routes only.
        settings.MIDDLEWARE = list(middleware)
        try:
            super().__init__()
        finally:
            settings.MIDDLEWARE = api_middleware

    def matches(self, path_info: str) -> bool:
        """Whether a live route serves this (decoded) path."""
        try:
            get_resolver(self.urlconf).resolve(path_info)
        except Resolver404:
            return False
        return True

    def resolve_request(self, request: HttpRequest) -> Any:
        request.urlconf = self.urlconf  # type: ignore[attr-defined]
        return super().resolve_request(request)

    async def send_response(self, response: HttpResponseBase, send: Send) -> None:
        if isinstance(response, ContentResponse):
            await response.send_to(send, self.sending)
            return
        await super().send_response(response, send)

"""One access-log line per request in the combined log format, plus the time taken.

Logged by the app (logger ``pulp_content_asgi.access``) rather than by the server so the
format is the same under granian, uvicorn or daphne. Off unless the CLI or the logging
configuration gives that logger a handler.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from pulp_content_asgi.serving.response import Response

log = logging.getLogger("pulp_content_asgi.access")
#: ASGI ``http_version`` as the request line spells it (granian says "1" for HTTP/1.0).
_VERSIONS = {"1": "1.0", "1.0": "1.0", "1.1": "1.1", "2": "2.0", "2.0": "2.0", "3": "3.0"}


def _header(scope: dict[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return "-"


def _size(response: Response, method: str, sent: int | None) -> str:
    if sent is not None:
        return str(sent)
    if method == "HEAD" or response.body is None:
        return "0"
    if isinstance(response.body, bytes):
        return str(len(response.body))
    return response.headers.get("Content-Length", "-")


def record(scope: dict[str, Any], response: Response, complete: bool, seconds: float,
           sent: int | None = None) -> None:
    """Log one line; ``sent`` is the body bytes sent when the response does not say."""
    if not log.isEnabledFor(logging.INFO):
        return
    client = scope.get("client") or ("-", 0)
    target = scope.get("raw_path", b"").decode("latin-1") or scope.get("path", "")
    if scope.get("query_string"):
        target += "?" + scope["query_string"].decode("latin-1")
    when = time.strftime("%d/%b/%Y:%H:%M:%S %z")
    size = _size(response, scope["method"], sent)
    fields = {"client": client[0], "method": scope["method"], "target": target,
              "status": response.status, "bytes": size, "seconds": round(seconds, 6),
              "referer": _header(scope, b"referer"), "agent": _header(scope, b"user-agent"),
              "complete": complete}
    log.info('%s - - [%s] "%s %s HTTP/%s" %s %s "%s" "%s" %.6f%s', client[0], when,
             scope["method"], target, _VERSIONS.get(scope.get("http_version", "1.1"), "1.1"),
             response.status,
             size, fields["referer"], fields["agent"], seconds,
             "" if complete else " incomplete", extra={"http": fields})


def configure(destination: str | None) -> None:
    """Send access lines to ``destination`` (a file path, or ``-`` for stdout)."""
    log.propagate = False
    if not destination:
        log.setLevel(logging.WARNING)
        return
    handler: logging.Handler = (logging.StreamHandler(sys.stdout) if destination == "-"
                                else logging.FileHandler(destination))
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)

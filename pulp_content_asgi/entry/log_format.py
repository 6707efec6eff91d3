"""Log formats: pulpcore's text lines by default, one JSON object per line on request
(``CONTENT_ASGI_LOG_FORMAT = "json"``) for log pipelines."""

from __future__ import annotations

import json
import logging
import time
from typing import Any


class JSONFormatter(logging.Formatter):
    """time, level, logger, message, process, correlation id, and request fields if any."""

    def format(self, record: logging.LogRecord) -> str:
        from django_guid import get_guid

        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
            "correlation_id": get_guid(),
        }
        http = getattr(record, "http", None)
        if http:
            entry["http"] = http
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def apply(log_format: str) -> None:
    """Switch every handler of the root and access loggers to ``log_format``."""
    if log_format != "json":
        return
    formatter = JSONFormatter()
    for name in ("", "pulp_content_asgi.access"):
        for handler in logging.getLogger(name).handlers:
            handler.setFormatter(formatter)

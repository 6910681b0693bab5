"""Process logging: one handler on the root logger, JSON lines (or text, for a terminal), each
record carrying the id of the request being served when it was emitted.

The request id lives in a context variable that
``conrec.service.api.middleware.RequestIdMiddleware`` sets for the duration of each request; asyncio
copies contexts into tasks, so every log line emitted while serving a request, however deep, carries
its id.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal, TextIO

LogFormat = Literal["json", "text"]

request_id: ContextVar[str | None] = ContextVar("conrec_request_id", default=None)

# uvicorn's own loggers: their records go through the root handler like everyone else's.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current request id (None outside a request). A handler
    filter, so that it runs in the emitting context, and only for records that are emitted."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC, ms), level, logger, message, request_id, and the
    formatted exception or stack when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        # default=str: a message argument that JSON cannot encode must not lose the line.
        return json.dumps(entry, ensure_ascii=False, default=str)


class _Handler(logging.StreamHandler):
    """The handler this module installs, told apart from handlers others (pytest) installed."""


def configure_logging(
    level: str = "INFO", fmt: LogFormat = "json", stream: TextIO | None = None
) -> logging.Handler:
    """Log records of ``level`` and above to ``stream`` (stderr) in ``fmt``; return the handler.

    Calling it again replaces the handler it installed before. uvicorn's loggers lose their own
    handlers and propagate to the root, so that its lines are formatted like the service's:
    serve with ``log_config=None``, or uvicorn installs its handlers again."""
    handler = _Handler(sys.stderr if stream is None else stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    return handler

"""Structured JSON logs, one object per line on stdout, in one shape for both modes.

The keys are Powertools Logger's (``level``, ``message``, ``timestamp``, ``service``), then the
process's own fields (the consumer's ``logger`` and ``worker``; in Lambda mode ``cold_start`` and
the ``function_*`` keys of the context), then the bound context, then the record's own fields.
``entry`` builds that object; ``JsonFormatter`` renders a ``logging`` record with it (Kubernetes
mode), and the Lambda shim renders its invocation lines with it directly, so both modes share one
shape and a Logs Insights query reads either.

``bind(shard_id=..., first_sequence=...)`` sets context variables; every record logged in that
asyncio task (and the threads it hands work to) carries them. No daemon protocol owns stdout here,
unlike KCL's MultiLangDaemon, so logs go where Kubernetes (or Lambda) collects them.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

DEFAULT_SERVICE = "vitalstream"

_BOUND: ContextVar[dict[str, Any] | None] = ContextVar("vitalstream_log_fields", default=None)
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def bind(**fields: Any) -> None:
    """Add fields to every log record of the current context (task)."""
    _BOUND.set({**(_BOUND.get() or {}), **fields})


def timestamp(epoch_ms: int) -> str:
    """RFC 3339 in UTC with milliseconds: ``2026-03-01T10:00:00.000Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_ms // 1000)) + f".{epoch_ms % 1000:03d}Z"


def entry(
    level: str, message: str, epoch_ms: int, service: str, *fields: Mapping[str, Any]
) -> dict[str, Any]:
    """One log line's object: Powertools' keys first, then ``fields`` in order (later ones win)."""
    line: dict[str, Any] = {
        "level": level,
        "message": message,
        "timestamp": timestamp(epoch_ms),
        "service": service,
    }
    for more in fields:
        line.update(more)
    return line


class JsonFormatter(logging.Formatter):
    """A ``logging`` record as one ``entry``; ``static``: fields every line of the process carries."""

    def __init__(self, service: str = DEFAULT_SERVICE, **static: Any) -> None:
        super().__init__()
        self._service = service
        self._static = static

    def format(self, record: logging.LogRecord) -> str:
        line = entry(
            record.levelname,
            record.getMessage(),
            int(record.created * 1000),
            self._service,
            {"logger": record.name},
            self._static,
            _BOUND.get() or {},
            {k: v for k, v in record.__dict__.items() if k not in _STANDARD},
        )
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(level: str, worker_id: str, service: str = DEFAULT_SERVICE) -> None:
    """Route the root logger to stdout as JSON lines at ``level``; quiet the AWS SDK's chatter."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service, worker=worker_id))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("botocore", "aiobotocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

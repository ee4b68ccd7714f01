"""Structured JSON logs on stdout, one object per line, with the shard and sequence numbers bound.

``bind(shard_id=..., first_sequence=...)`` sets context variables; every record logged in that
asyncio task (and the threads it hands work to) carries them. No daemon protocol owns stdout here,
unlike KCL's MultiLangDaemon, so logs go where Kubernetes collects them.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar
from typing import Any

_BOUND: ContextVar[dict[str, Any] | None] = ContextVar("vitalstream_log_fields", default=None)
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def bind(**fields: Any) -> None:
    """Add fields to every log record of the current context (task)."""
    _BOUND.set({**(_BOUND.get() or {}), **fields})


class JsonFormatter(logging.Formatter):
    def __init__(self, worker_id: str) -> None:
        super().__init__()
        self._worker_id = worker_id

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "worker": self._worker_id,
        }
        entry.update(_BOUND.get() or {})
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str, worker_id: str) -> None:
    """Route the root logger to stdout as JSON lines at ``level``; quiet the AWS SDK's chatter."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(worker_id))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("botocore", "aiobotocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

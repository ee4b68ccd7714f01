"""Functions for the worker-process tests (``test_esm_worker``): imported by the worker, by name."""

from __future__ import annotations

import os
from typing import Any

CALLS = {"count": 0}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    CALLS["count"] += 1
    if event.get("raise"):
        raise ValueError("as asked")
    if event.get("die"):
        os._exit(3)
    return {"pid": os.getpid(), "echo": event.get("echo"), "arn": context.invoked_function_arn}


def calls() -> int:
    return CALLS["count"]

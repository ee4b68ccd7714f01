"""botocore error inspection by error code, never by message text."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


# What an AWS call can fail with besides a bug: the service's answer, the SDK's own errors, the network.
CALL_ERRORS: tuple[type[Exception], ...] = (ClientError, BotoCoreError, OSError)


def describe(exc: BaseException) -> str:
    """The error code of a service answer, else the exception's type name (for logs and labels)."""
    return error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__

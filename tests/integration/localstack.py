"""LocalStack through testcontainers, for ``--aws-backend=localstack``.

Needs a Docker engine. Images from 2026.3 on need ``LOCALSTACK_AUTH_TOKEN``; without one the suite
uses the last image that does not (``VITALSTREAM_LOCALSTACK_IMAGE`` overrides either choice).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

TOKENLESS_IMAGE = "localstack/localstack:4.14"
TOKEN_IMAGE = "localstack/localstack:2026.3"


def _docker_unavailable() -> str | None:
    try:
        import docker  # noqa: PLC0415 - testcontainers' dependency, only for this backend

        docker.from_env().ping()
    except Exception as exc:  # any failure to reach an engine means: no Docker here
        return f"LocalStack needs a Docker engine, and none answers here ({type(exc).__name__})"
    return None


@contextmanager
def localstack_endpoint() -> Iterator[str]:
    reason = _docker_unavailable()
    if reason is not None:
        pytest.skip(reason)
    from testcontainers.community.localstack import LocalStackContainer  # noqa: PLC0415 - needs Docker

    token = os.environ.get("LOCALSTACK_AUTH_TOKEN")
    image = os.environ.get("VITALSTREAM_LOCALSTACK_IMAGE", TOKEN_IMAGE if token else TOKENLESS_IMAGE)
    container = LocalStackContainer(image=image)
    if token:
        container = container.with_env("LOCALSTACK_AUTH_TOKEN", token)
    with container:
        yield container.get_url()

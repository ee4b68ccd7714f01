"""LocalStack through testcontainers, for ``--aws-backend=localstack``.

The image is built here from package registries (``tests/containers/images.py``: ``localstack-core``
4.14.0, the last release that needs no auth token, on Debian trixie), so no image registry is needed.
testcontainers starts it with:

- ``network_mode="none"``: the container has loopback alone. LocalStack's gateway binds 127.0.0.1
  there (``GATEWAY_SERVER=hypercorn``, ``GATEWAY_LISTEN``); kinesis-mock and DynamoDB Local, which it
  starts inside, bind every interface of that namespace, which is loopback too.
- a bind-mounted directory where the container's relay offers the gateway as ``gateway.sock``; a
  ``Relay`` thread here gives it a port on this machine's 127.0.0.1 again: the endpoint.
- Ryuk disabled (``TESTCONTAINERS_RYUK_DISABLED``): the reaper is an image from a registry; the
  context manager removes the container, and ``python -m tests.containers.engine stop`` removes any
  that an interrupted run left.
- its log line ``Ready.`` as the wait strategy.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.containers import engine, images
from tests.containers.relay import Relay
from tests.tools import missing

READY = re.compile(r"^Ready\.$", re.MULTILINE)  # LocalStack's READY_MARKER_OUTPUT line
READY_TIMEOUT_S = 120


@contextmanager
def localstack_endpoint() -> Iterator[str]:
    reason = engine.unavailable_reason()
    if reason is not None:
        missing(f"LocalStack: {reason}")
    try:
        image = images.localstack()
    except images.ToolMissing as exc:
        missing(str(exc))
        raise
    os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
    from testcontainers.core.container import DockerContainer  # noqa: PLC0415 - needs the env above
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="vitalstream-localstack-") as scratch:
        sockets = Path(scratch)
        sockets.chmod(0o755)
        container = (
            DockerContainer(image)
            .with_kwargs(network_mode="none")
            .with_volume_mapping(str(sockets), "/relay", "rw")
            .with_env("LS_LOG", "warn")
            .waiting_for(LogMessageWaitStrategy(READY).with_startup_timeout(READY_TIMEOUT_S))
        )
        began = time.monotonic()
        with container:
            print(f"\nLocalStack ({image}) ready in {time.monotonic() - began:.1f} s", flush=True)
            with Relay.tcp_to_unix(sockets / "gateway.sock") as relay:
                yield f"http://127.0.0.1:{relay.port}"

"""MiniStack as the Kinesis endpoint for enhanced fan-out: of the emulators that run here it is the one
that serves SubscribeToShard (moto, kinesis-mock and kinesalite do not). It is started as the embedded
emulator's own engine is (``service.tools.emulators.ministack``: its own venv, ``.ministack/``, 127.0.0.1
only), with ``SERVICES=kinesis`` so that it loads Kinesis alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from service.tools.emulators.ministack import MiniStackServer, unavailable_reason

__all__ = ["ministack", "unavailable_reason"]


@contextmanager
def ministack(workdir: Path, startup_timeout_s: float = 60.0) -> Iterator[str]:
    """Start MiniStack on 127.0.0.1; yield its endpoint; stop it on exit. Logs: ``workdir/ministack.log``."""
    server = MiniStackServer(services="kinesis", log_dir=workdir)
    try:
        yield server.start(startup_timeout_s)
    finally:
        server.stop()

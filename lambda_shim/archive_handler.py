"""The Lambda entry point of the archive role (``service.runtime.archive_role``): a second Kinesis
event source mapping on the stream (long batching window, large batches, a tumbling window whose
state carries the archive mark) invokes it; each invocation writes one archive file.

One call into the role per event. A failed upload reports the batch's first record in
``batchItemFailures`` and is logged once, as a JSON line on stdout, with its AWS error code
(``service.runtime.sink_health``). Its requests are counted in ``lambda_shim.handler.REQUESTS``
(on AWS the two functions run apart anyway; locally one counter gives the mode's total).
"""

from __future__ import annotations

import functools
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from lambda_shim.handler import REQUESTS

if TYPE_CHECKING:
    from service.runtime.archive_role import ArchiveRole


@functools.cache
def _role() -> ArchiveRole:
    """Built once per container, on the first invocation (never at import)."""
    from service.runtime.composition import build_archive_role  # noqa: PLC0415 - keeps the cold import small
    from service.runtime.config import Settings  # noqa: PLC0415 - as above

    return build_archive_role(Settings(), requests=REQUESTS)


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    outcome = _role().invoke(event, now_ms)
    if outcome.errors:
        from service.runtime.sink_health import invocation_lines  # noqa: PLC0415 - as above

        service = os.environ.get("POWERTOOLS_SERVICE_NAME", "vitalstream")
        lines = invocation_lines(
            outcome.errors, shard=outcome.shard_id, context=context, service=service, now_ms=now_ms
        )
        sys.stdout.write("".join(line + "\n" for line in lines))
        sys.stdout.flush()
    return outcome.response()

"""The Lambda entry point of the archive role (``service.runtime.archive_role``): a second Kinesis
event source mapping on the stream (long batching window, large batches, a tumbling window whose
state carries the archive mark) invokes it; each invocation writes one archive file.

One call into the role per event. A failed upload reports the batch's first record in
``batchItemFailures``. Every invocation writes the detection handler's JSON log lines (with one line
per sink-error cause and its AWS error code) and its EMF line, in mode ``archive``
(``lambda_shim.handler.report``). Its requests are counted in ``lambda_shim.handler.REQUESTS``
(on AWS the two functions run apart anyway; locally one counter gives the mode's total).
"""

from __future__ import annotations

import functools
import itertools
import time
from typing import TYPE_CHECKING, Any

from lambda_shim.handler import REQUESTS, report
from service.runtime.invocation import EventSpan, Invocation, Mode

if TYPE_CHECKING:
    from service.runtime.archive_role import ArchiveRole

_INVOCATIONS = itertools.count()


@functools.cache
def _role() -> ArchiveRole:
    """Built once per container, on the first invocation (never at import)."""
    from service.runtime.composition import build_archive_role  # noqa: PLC0415 - keeps the cold import small
    from service.runtime.config import Settings  # noqa: PLC0415 - as above

    return build_archive_role(Settings(), requests=REQUESTS)


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    cold_start, now_ms, before = next(_INVOCATIONS) == 0, int(time.time() * 1000), REQUESTS.snapshot()
    outcome = _role().invoke(event, now_ms)
    done = Invocation(
        Mode.ARCHIVE, EventSpan.of(event), failures=len(outcome.failures), errors=outcome.errors
    )
    report(done, context, cold_start, now_ms, before)
    return outcome.response()

"""``vitalstream flush-handoffs``: write every shard's Lambda window handoff to the device table.

In Lambda mode with tumbling windows a busy shard's window ends by handing its devices on to the
shard's next window (``runtime.window``), which writes them. When there is no next window — the event
source mapping disabled, the function replaced by the consumer, a stream gone quiet right after a busy
close — the last window's states wait in the handoffs. This command writes them, as the next window
would: forward-only (a device the table already holds newer is left as it is), the handoffs left in
place. Settings come from the environment (``VITALSTREAM_*``, as for the function: the archive bucket,
``VITALSTREAM_WINDOW_HANDOFF_PREFIX``, the device table).

Exit codes: 0 every handoff written (also when there is none), 1 a sink refused (the line names the
sink, the resource and the AWS error code).
"""

from __future__ import annotations

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    """No flags: the deployment's settings come from ``VITALSTREAM_*``."""


def run(args: argparse.Namespace) -> int:
    from service.runtime.composition import build_pipeline  # noqa: PLC0415 - boto3 only when run
    from service.runtime.config import Settings  # noqa: PLC0415
    from service.runtime.ports import SinkError  # noqa: PLC0415
    from service.runtime.window_handoffs import FlushError  # noqa: PLC0415

    settings = Settings()
    pipeline = build_pipeline(settings, connections=4)
    if pipeline.handoffs is None:  # build_pipeline always sets them
        raise RuntimeError("the pipeline has no window handoffs")
    try:
        written = pipeline.handoffs.flush(pipeline.states)
    except SinkError as exc:
        print(f"error: {exc.sink.value} {exc.resource}: {exc.code}", file=sys.stderr)
        return 1
    except FlushError as exc:
        codes = ", ".join(sorted({f"{e.sink.value} {e.resource}: {e.code}" for e in exc.causes}))
        print(f"error: {exc} ({codes})", file=sys.stderr)
        return 1
    for shard_id, devices in written.items():
        print(f"shard {shard_id}: {devices} devices written")
    where = f"s3://{settings.archive_bucket}/{settings.window_handoff_prefix}"
    print(f"{sum(written.values())} devices from {len(written)} handoffs in {where}")
    return 0

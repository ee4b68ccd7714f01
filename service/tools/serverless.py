"""``vitalstream serverless``: the local serverless path — the local event source mapping and the Lambda
shim, in a worker process per shard (each shard's sandbox on AWS) — against whatever stream and tables
the ``VITALSTREAM_*`` environment names (e.g. the stack ``vitalstream local up`` prints).

The mapping takes the template's settings (``infra/template.yaml``: batch size, batching window, retry
attempts, record age, tumbling window, bisect on error); ``--parameter Name=Value`` overrides one, as
``provision`` does. Batches given up go to ``--failure-queue-url`` (default
``VITALSTREAM_BATCH_FAILURE_QUEUE_URL``; none: logged). Every ``--report-every`` and at the end it
prints one JSON line: records delivered, invocations, and the shim's AWS calls and item writes per
1,000 records (each worker's ``lambda_shim.handler.REQUESTS``). SIGTERM or SIGINT stops it: open
windows get their final invocation first, so the device table holds every state.

With ``VITALSTREAM_LAMBDA_ARCHIVE=files`` (the template's default) it also runs the archive role's
mapping (``ArchiverEventSourceMapping``: a second mapping, its own batching window, invoking
``lambda_shim.archive_handler`` in worker processes of its own), and the processor archives nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from service.cli.args import duration_ms

ARCHIVER_ARN = "arn:aws:lambda:local:000000000000:function:vitalstream-archiver"
MAPPING_PARAMETERS = (
    "BatchSize",
    "MaximumBatchingWindowInSeconds",
    "MaximumRetryAttempts",
    "MaximumRecordAgeInSeconds",
    "TumblingWindowInSeconds",
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=f"override a template parameter of the mapping ({', '.join(MAPPING_PARAMETERS)})",
    )
    parser.add_argument(
        "--failure-queue-url",
        default=os.environ.get("VITALSTREAM_BATCH_FAILURE_QUEUE_URL", ""),
        help="SQS queue for the on-failure destination (default: $VITALSTREAM_BATCH_FAILURE_QUEUE_URL)",
    )
    parser.add_argument(
        "--report-every",
        type=duration_ms(1_000),
        default=10_000,
        metavar="DURATION",
        help="print a progress line this often (default 10s)",
    )
    parser.add_argument(
        "--stop-after", type=duration_ms(1_000), default=None, metavar="DURATION", help="stop after this long"
    )


def mapping_config(overrides: list[str]) -> Any:
    """The ``EsmConfig`` of the template's ``ProcessorEventSourceMapping``, with ``overrides``."""
    given = dict(item.split("=", 1) for item in overrides)
    unknown = set(given) - set(MAPPING_PARAMETERS)
    if unknown:
        raise ValueError(f"not a mapping parameter: {', '.join(sorted(unknown))}")
    return template_mapping("ProcessorEventSourceMapping", given)


def archive_mapping_config(given: dict[str, str] | None = None) -> Any:
    """The ``EsmConfig`` of the template's ``ArchiverEventSourceMapping`` (the archive role's), with
    template parameters ``given``."""
    return template_mapping("ArchiverEventSourceMapping", given or {})


def template_mapping(logical_id: str, given: dict[str, str]) -> Any:
    """A mapping of the template as an ``EsmConfig``: each setting a parameter (``given`` or its
    default) or a literal."""
    from service.tools.esm import EsmConfig  # noqa: PLC0415
    from service.tools.provisioning.template import effective_parameters, load_template  # noqa: PLC0415

    template = load_template()
    values = effective_parameters(template, given | _required_placeholders(template))
    mapping = template["Resources"][logical_id]["Properties"]

    def setting(name: str) -> Any:
        value = mapping[name]
        return values[value["Ref"]] if isinstance(value, dict) else value

    return EsmConfig(
        batch_size=int(setting("BatchSize")),
        batching_window_s=float(setting("MaximumBatchingWindowInSeconds")),
        max_retry_attempts=int(setting("MaximumRetryAttempts")),
        max_record_age_s=int(setting("MaximumRecordAgeInSeconds")),
        bisect_on_error=bool(setting("BisectBatchOnFunctionError")),
        tumbling_window_s=int(setting("TumblingWindowInSeconds")),
    )


def _required_placeholders(template: dict[str, Any]) -> dict[str, str]:
    """Parameters without a default that the mapping does not use (the function's code location)."""
    return {k: "" for k, spec in template["Parameters"].items() if "Default" not in spec}


def run(args: argparse.Namespace) -> int:
    import boto3  # noqa: PLC0415 - heavy imports only when running

    from service.runtime.accounting import summed  # noqa: PLC0415
    from service.runtime.config import LambdaArchive, Settings  # noqa: PLC0415
    from service.tools.esm import EventSourceMapping, Invocation, Isolated  # noqa: PLC0415

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = mapping_config(args.parameter)
    except ValueError as exc:
        print(f"vitalstream serverless: {exc}", file=sys.stderr)
        return 2
    settings = Settings()
    session = boto3.Session(region_name=settings.region)
    kinesis = session.client("kinesis", endpoint_url=settings.endpoint_url)
    sqs = session.client("sqs", endpoint_url=settings.endpoint_url)

    def destination(body: dict[str, Any]) -> None:
        if args.failure_queue_url:
            sqs.send_message(QueueUrl=args.failure_queue_url, MessageBody=json.dumps(body))
        else:
            logging.getLogger("serverless").error("batch given up: %s", json.dumps(body))

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    shim = Isolated("lambda_shim.handler:handler", probe="lambda_shim.handler:REQUESTS.snapshot")
    mapping = EventSourceMapping(kinesis, settings.stream_name, Invocation(shim, destination), config)
    mappings = [mapping]
    started_line: dict[str, Any] = {"stream": settings.stream_name, "mapping": vars_of(config)}
    archiving: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if settings.lambda_archive is LambdaArchive.FILES:
        archive_config = archive_mapping_config()
        archiver = Isolated(
            "lambda_shim.archive_handler:handler", probe="lambda_shim.handler:REQUESTS.snapshot"
        )
        archive_invocation = Invocation(archiver, destination, ARCHIVER_ARN, settings.region)
        archiving = archive_mapping = EventSourceMapping(
            kinesis, settings.stream_name, archive_invocation, archive_config
        )
        mappings.append(archive_mapping)
        started_line["archive_mapping"] = vars_of(archive_config)
    started = time.monotonic()
    print(json.dumps({"event": "started", **started_line}), flush=True)
    with archiving, mapping:
        while not stop.wait(args.report_every / 1000):
            print(json.dumps(progress(mapping, summed(p for m in mappings for p in m.probes()))), flush=True)
            if args.stop_after is not None and time.monotonic() - started >= args.stop_after / 1000:
                break
    print(
        json.dumps(progress(mapping, summed(p for m in mappings for p in m.probes()), "stopped")), flush=True
    )
    return 0


def vars_of(config: Any) -> dict[str, Any]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


def progress(mapping: Any, counts: Any, event: str = "progress") -> dict[str, Any]:
    """One report line: what the mapping delivered and the shim's requests per 1,000 records."""
    stats = mapping.stats
    records = max(stats.records_delivered, 1)
    calls = {f"{s}.{o}": round(n * 1000 / records, 1) for (s, o), n in sorted(counts.requests.items())}
    writes = {t: round(n * 1000 / records, 1) for t, n in sorted(counts.item_writes.items())}
    units = {  # table.kind.source: reported by DynamoDB, or estimated at one unit per item
        f"{t}.{k}.{source}": round(n * 1000 / records, 2)
        for (t, k, source), n in sorted(counts.capacity_units.items())
    }
    return {
        "event": event,
        "records": stats.records_delivered,
        "invocations": stats.invocations,
        "final_invocations": stats.final_invocations,
        "windows_ended_early": stats.windows_ended_early,
        "given_up": stats.given_up,
        "calls_per_1k": calls,
        "item_writes_per_1k": writes,
        "dynamodb_capacity_units_per_1k": units,
    }

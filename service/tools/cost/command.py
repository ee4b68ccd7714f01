"""``vitalstream cost``: the monthly bill of a deployment, a table by default or ``--json``.

``--from-report FILE`` prices a demo report's per-record counts (``vitalstream demo --report FILE``)
for its mode and fleet size instead of ``measured.json``, at the run's own alert rate unless
``--alerts-per-device-day`` is given; ``--docs FILE`` rewrites the marked tables
of docs/cost.md. Bad flags exit 2 naming the flag.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from service.cli.args import duration_ms, positive_int
from service.tools.cost.bill import bill
from service.tools.cost.data import CostInputError, Measured, measured
from service.tools.cost.model import (
    ALERTS_PER_DEVICE_DAY,
    LATEST_STATE_HEARTBEAT_S,
    Bill,
    Deployment,
    Ingest,
    Mode,
)


def configure(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add(
        "--devices",
        type=positive_int,
        metavar="N",
        help="devices in the fleet (required unless --from-report)",
    )
    add(
        "--sample-period",
        type=duration_ms(),
        default=5_000,
        metavar="DURATION",
        help="one sample per device every (5s)",
    )
    add(
        "--samples-per-message",
        type=positive_int,
        default=1,
        metavar="K",
        help="samples a device sends in one message (1)",
    )
    add("--mode", choices=[m.value for m in Mode], help="consumer (Kubernetes) or lambda (default consumer)")
    add(
        "--ingest",
        choices=[i.value for i in Ingest],
        default="iot-core",
        help="IoT Core rule, Basic Ingest or self-hosted MQTT bridge",
    )
    add(
        "--latest-state-interval",
        type=duration_ms(),
        default=round(LATEST_STATE_HEARTBEAT_S * 1000),
        metavar="DURATION",
        help="consumer: heartbeat of a device's item, written at once on a status change "
        f"(the runtime's latest_state_interval_ms: {LATEST_STATE_HEARTBEAT_S / 60:g}m)",
    )
    add(
        "--alerts-per-device-day",
        type=_non_negative_float,
        metavar="X",
        help=f"alerts a device raises a day ({ALERTS_PER_DEVICE_DAY:g}; with --from-report the run's own)",
    )
    add(
        "--window",
        type=duration_ms(),
        default=120_000,
        metavar="DURATION",
        help="Lambda: tumbling window (120s)",
    )
    add(
        "--archive-file-mb",
        type=_positive_float,
        default=5.0,
        metavar="MB",
        help="archive file cut at this size (5)",
    )
    add(
        "--archive-file-age",
        type=duration_ms(),
        default=60_000,
        metavar="DURATION",
        help="archive file cut at this age (60s)",
    )
    add(
        "--archive-months-kept",
        type=positive_int,
        default=12,
        metavar="N",
        help="months before the archive expires (12: the template's lifecycle)",
    )
    add("--efo", action=argparse.BooleanOptionalAction, default=False, help="enhanced fan-out consumer (off)")
    add(
        "--shard-headroom",
        type=_headroom,
        default=1.25,
        metavar="X",
        help="shards = need x headroom, rounded up (1.25)",
    )
    add(
        "--retention",
        type=duration_ms(3_600_000),
        default=86_400_000,
        metavar="DURATION",
        help="stream retention (24h)",
    )
    add("--lambda-memory", type=_lambda_memory, default=512, metavar="MB", help="Lambda memory size (512)")
    add(
        "--lease-scan",
        choices=["strong", "eventual"],
        default="strong",
        help="lease-table Scan consistency (strong)",
    )
    add(
        "--from-report",
        type=Path,
        metavar="FILE",
        help="price a demo report's counts (vitalstream demo --report)",
    )
    add("--json", action="store_true", help="print the bill as JSON")
    add(
        "--docs",
        type=Path,
        metavar="FILE",
        help="rewrite the generated tables of FILE (docs/cost.md) and exit",
    )


def run(args: argparse.Namespace) -> int:
    if args.docs is not None:
        from service.tools.cost.docs import rewrite  # noqa: PLC0415 - only this flag needs it

        rewrite(args.docs)
        print(f"rewrote the generated tables of {args.docs}")
        return 0
    figures: Measured | None = None
    devices, mode = args.devices, args.mode
    try:
        if args.from_report is not None:
            report = json.loads(args.from_report.read_text())
            mode = mode or str(report.get("mode", "consumer"))
            devices = devices or int(report.get("devices", 0)) or None
            figures = Measured.from_report(report, measured(mode))
    except (OSError, ValueError, CostInputError) as exc:
        return _usage(f"--from-report {args.from_report}: {exc}")
    if devices is None:
        return _usage("--devices is required (or --from-report FILE)")
    mode = mode or "consumer"
    if mode not in {m.value for m in Mode}:
        return _usage(f"--from-report {args.from_report}: unknown mode {mode!r}")
    alerts = args.alerts_per_device_day
    if alerts is None and figures is None:
        alerts = ALERTS_PER_DEVICE_DAY
    result = bill(deployment(args, devices, mode, alerts), figures=figures)
    print(json.dumps(result.to_dict(), indent=2) if args.json else render(result))
    return 0


def deployment(args: argparse.Namespace, devices: int, mode: str, alerts: float | None) -> Deployment:
    return Deployment(
        devices=devices,
        sample_period_s=args.sample_period / 1000,
        samples_per_message=args.samples_per_message,
        mode=Mode(mode),
        ingest=Ingest(args.ingest),
        latest_state_interval_s=args.latest_state_interval / 1000,
        window_s=args.window / 1000,
        archive_file_bytes=round(args.archive_file_mb * 1e6),
        archive_file_age_s=args.archive_file_age / 1000,
        efo=args.efo,
        shard_headroom=args.shard_headroom,
        retention_hours=args.retention / 3_600_000,
        lambda_memory_mb=args.lambda_memory,
        lease_scan_strong=args.lease_scan == "strong",
        archive_months_kept=args.archive_months_kept,
        alerts_per_device_day=alerts,
    )


def render(result: Bill) -> str:
    d = result.deployment
    head = (
        f"{d.devices:,} devices, one sample every {d.sample_period_s:g} s, {d.samples_per_message} per "
        f"message, {d.mode.value} mode, {d.ingest.value} ingest (us-east-1 list prices of "
        f"{result.prices_as_of}, measured figures of {result.measured_at})"
    )
    provisioned = sum(line.usd_per_month for line in result.lines if line.service == "kinesis")
    alternative = sum(line.usd_per_month for line in result.alternatives)
    return "\n".join(
        [
            head,
            _row("service", "item", "quantity", "unit", "unit price", "$/month"),
            *(_line(line.to_dict()) for line in result.lines),
            _row("total", "", "", "", "", _usd(result.total)),
            _row("", "per device", "", "", "", _usd(result.per_device, 4)),
            "not in the total, shown as the alternative to the provisioned stream "
            f"(${provisioned:,.2f} of Kinesis above):",
            *(_line(line.to_dict()) for line in result.alternatives),
            _row("", "Kinesis on-demand instead", "", "", "", _usd(alternative)),
        ]
    )


def _line(line: dict[str, Any]) -> str:
    price = line["unit_price_usd"]
    unit_price = f"${price * 1e6:g}/M" if price < 0.001 else f"${price:g}"
    return _row(
        line["service"],
        line["item"],
        f"{line['quantity']:,.0f}",
        line["unit"],
        unit_price,
        _usd(line["usd_per_month"]),
    )


def _row(service: str, item: str, quantity: str, unit: str, price: str, usd: str) -> str:
    return f"{service:<11}{item:<72}{quantity:>16}  {unit:<20}{price:>11}{usd:>13}".rstrip()


def _usd(value: float, digits: int = 2) -> str:
    return f"${value:,.{digits}f}"


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, got {text!r}")
    return value


def _headroom(text: str) -> float:
    value = _positive_float(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1 (a factor over what the traffic needs), got {text!r}")
    return value


def _lambda_memory(text: str) -> int:
    value = positive_int(text)
    if not 128 <= value <= 10_240:
        raise argparse.ArgumentTypeError(f"must be 128 to 10240 MB, got {value}")
    return value


def _usage(message: str) -> int:
    print(f"vitalstream cost: error: {message}", file=sys.stderr)
    return 2

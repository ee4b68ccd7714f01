"""``vitalstream simulate``: run the simulated fleet into a file or a publisher.

Contract:

- The fleet (``simulator.fleet``) covers ``--start`` .. ``--start + --duration`` of event time. By
  default it is generated as fast as possible; ``--realtime`` paces each message to its send time
  on the wall clock (fleet time 0 = when the command starts).
- ``--out FILE`` writes the messages' payloads one per line in send order (``vitalstream replay``
  reads it);
  ``--target`` hands each tick's messages to a publisher from ``simulator.publishers``.
- ``--truth FILE`` receives the ground truth as it completes (``simulator.truth``).
- ``--samples-per-message``, ``--offline-rate`` and ``--offline-duration`` choose how devices send
  (``simulator.uplink``: batches, urgent flush, offline backlogs); ``--truth`` does not depend on the
  first, and only gains ``OFFLINE`` fault lines with the others.
- The same flags and seed give byte-identical ``--out`` and ``--truth`` files.
- Usage errors (bad flags, a publisher that cannot be built) exit 2 with a message naming the flag.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

from service.cli.args import duration_ms, positive_int
from service.core.telemetry import parse_rfc3339_ms
from service.runtime.publishing import Message, Publisher, PublishReport
from simulator.fleet import Fleet
from simulator.pacing import paced
from simulator.scenario import (
    DEFAULT_ANOMALY_RATE,
    DEFAULT_DURATIONS,
    DEFAULT_INCIDENTAL_RATE,
    MAX_INCIDENTAL_RATE,
    MS_PER_MINUTE,
    SHORT_DURATIONS,
    Scenario,
    Segment,
    default_rates,
)
from simulator.truth import encode_truth
from simulator.uplink import OFFLINE_MARGIN_MS
from simulator.variability import VariabilityFormatError, load_nn_intervals

TARGETS = ("kinesis", "mqtt", "iot-data")
DEFAULT_START = "2026-11-28T00:00:00Z"


def _start(text: str) -> int:
    value = parse_rfc3339_ms(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {text!r} (example: {DEFAULT_START})")
    return value


def _rate(text: str) -> tuple[Segment, float]:
    name, _, value = text.partition("=")
    try:
        segment = Segment[name.strip().upper().replace("-", "_")]
        rate = float(value)
    except (KeyError, ValueError):
        names = ", ".join(s.name for s in Segment if s is not Segment.REST)
        raise argparse.ArgumentTypeError(f"expected SEGMENT=PER_HOUR with SEGMENT one of {names}") from None
    if segment is Segment.REST or rate < 0:
        raise argparse.ArgumentTypeError(f"bad rate {text!r}: a segment other than REST, rate ≥ 0")
    return segment, rate


def _fraction(high: float) -> Callable[[str], float]:
    """An argparse type: a number within 0..``high``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not 0 <= value <= high:
            raise argparse.ArgumentTypeError(f"must be within 0..{high:g}, got {value}")
        return value

    return parse


_probability, _share = _fraction(0.1), _fraction(1.0)


def configure(parser: argparse.ArgumentParser) -> None:
    fleet = parser.add_argument_group("fleet")
    fleet.add_argument("--devices", type=positive_int, required=True, metavar="N")
    fleet.add_argument(
        "--duration", type=duration_ms(), default=3_600_000, help="event time covered (default 1h)"
    )
    fleet.add_argument("--seed", type=int, default=0, help="same seed, same fleet (default 0)")
    fleet.add_argument("--start", type=_start, default=_start(DEFAULT_START), help=f"default {DEFAULT_START}")
    fleet.add_argument(
        "--interval", type=duration_ms(1_000), default=5_000, help="per device sample period (default 5s)"
    )
    fleet.add_argument("--realtime", action="store_true", help="pace sends to the wall clock")
    parser.add_argument("--out", type=Path, metavar="FILE.jsonl", help="write payloads, one per line")
    add_publisher_arguments = _publishers_attribute("add_publisher_arguments")
    if add_publisher_arguments is not None:  # brings --target and the targets' flags
        add_publisher_arguments(parser)
        parser.set_defaults(target=None)  # no target unless asked for: --out or --target, not both
    else:
        parser.add_argument("--target", choices=TARGETS, help="publish through this target")
    parser.add_argument("--truth", type=Path, metavar="TRUTH.jsonl", help="write the ground truth")
    scenario = parser.add_argument_group("scenario (rates per device-hour while eligible)")
    scenario.add_argument(
        "--anomaly-rate",
        type=float,
        default=DEFAULT_ANOMALY_RATE,
        help=f"episodes of each anomaly type per device-hour (default {DEFAULT_ANOMALY_RATE})",
    )
    scenario.add_argument(
        "--segment-rate",
        type=_rate,
        action="append",
        default=[],
        metavar="SEGMENT=R",
        help="override one segment's rate, e.g. RUN=0.5, DROPOUT=0.02, TACHYCARDIA=0.1 (repeatable)",
    )
    scenario.add_argument(
        "--incidental-rate",
        type=float,
        default=DEFAULT_INCIDENTAL_RATE,
        metavar="R",
        help="bursts of a few to a dozen steps per device-hour at rest "
        f"(default {DEFAULT_INCIDENTAL_RATE:g})",
    )
    scenario.add_argument(
        "--no-incidental-movement",
        action="store_true",
        help="resting wearers never take a step (for comparison; the ground truth is the same)",
    )
    scenario.add_argument(
        "--variability",
        type=Path,
        metavar="NN.npy",
        help="a recorded NN-interval series (ms; .npy or one value per line) to replay as every "
        "device's resting rhythm instead of synthetic noise",
    )
    scenario.add_argument(
        "--rested-at-start",
        action="store_true",
        help="devices have rested before the run starts: a short run has episodes from its first minute",
    )
    scenario.add_argument(
        "--short-episodes",
        action="store_true",
        help="episodes, bouts and outages as short as the detector allows (the demo's): with "
        "--rested-at-start a two-minute run has episodes from its first minute",
    )
    sending = parser.add_argument_group("how devices send (simulator.uplink)")
    sending.add_argument(
        "--samples-per-message",
        type=positive_int,
        default=1,
        metavar="N",
        help="each device buffers N samples per message; an abnormal sample sends the buffer at once "
        "(default 1: every sample its own message)",
    )
    sending.add_argument(
        "--offline-rate",
        type=_share,
        default=0.0,
        metavar="P",
        help="share of devices that go offline once during the run, keep sampling and upload the "
        "backlog on reconnect (default 0)",
    )
    sending.add_argument(
        "--offline-duration",
        type=duration_ms(1_000),
        default=20 * MS_PER_MINUTE,
        help="how long an offline device stays offline (default 20m)",
    )
    scenario.add_argument("--duplicate-prob", type=_probability, default=0.001, metavar="P")
    scenario.add_argument("--out-of-order-prob", type=_probability, default=0.001, metavar="P")
    scenario.add_argument("--malformed-prob", type=_probability, default=0.0005, metavar="P")


def _publishers_attribute(name: str) -> Any:
    """``simulator.publishers.<name>``, or None while that module does not provide it."""
    try:
        from simulator import publishers  # noqa: PLC0415  (heavy clients, optional)
    except ImportError:
        return None
    return getattr(publishers, name, None)


def run(args: argparse.Namespace) -> int:
    """Validate the flags (usage errors exit 2), run the fleet into its sink, print the counts."""
    if (args.out is None) == (args.target is None):
        return _usage_error("give exactly one of --out FILE.jsonl and --target {" + ",".join(TARGETS) + "}")
    if args.anomaly_rate < 0:
        return _usage_error(f"--anomaly-rate must be ≥ 0, got {args.anomaly_rate}")
    if args.duration < args.interval:
        return _usage_error("--duration must cover at least one --interval")
    if not 0 <= args.incidental_rate <= MAX_INCIDENTAL_RATE:
        return _usage_error(
            f"--incidental-rate must be within 0..{MAX_INCIDENTAL_RATE:g}, got {args.incidental_rate}"
        )
    if args.offline_rate > 0 and args.offline_duration + OFFLINE_MARGIN_MS > args.duration:
        return _usage_error(
            f"--offline-duration plus {OFFLINE_MARGIN_MS // 1000} s to reconnect must fit in --duration"
        )
    nn_intervals: tuple[float, ...] = ()
    if args.variability is not None:
        try:
            nn_intervals = load_nn_intervals(args.variability)
        except (OSError, VariabilityFormatError) as exc:
            return _usage_error(f"--variability {args.variability}: {exc}")
    rates = default_rates(args.anomaly_rate)
    rates.update(dict(args.segment_rate))
    scenario = Scenario(
        rates=rates,
        duplicate_prob=args.duplicate_prob,
        out_of_order_prob=args.out_of_order_prob,
        malformed_prob=args.malformed_prob,
        incidental_rate=0.0 if args.no_incidental_movement else args.incidental_rate,
        nn_intervals_ms=nn_intervals,
        rested_at_start=args.rested_at_start,
        durations=dict(SHORT_DURATIONS if args.short_episodes else DEFAULT_DURATIONS),
        samples_per_message=args.samples_per_message,
        offline_share=args.offline_rate,
        offline_ms=args.offline_duration,
    )
    try:
        fleet = Fleet(
            args.devices, args.seed, args.start, args.start + args.duration, args.interval, scenario
        )
    except VariabilityFormatError as exc:
        return _usage_error(f"--variability {args.variability}: {exc}")
    publisher: Publisher | None = None
    if args.target is not None:
        build = _publishers_attribute("build_publisher")
        if build is None:
            return _usage_error(f"--target {args.target}: simulator.publishers is not available")
        try:
            publisher = build(args)
        except (ValueError, OSError) as exc:
            return _usage_error(f"--target {args.target}: {exc}")
    try:
        report = _run(fleet, args, publisher)
    except OSError as exc:
        print(f"vitalstream simulate: error: {exc}", file=sys.stderr)
        return 1
    counts = fleet.counts
    samples = f" ({counts.samples_sent:,} samples)" if args.samples_per_message > 1 else ""
    print(
        f"events generated {counts.generated:,}, sent {report.sent:,}{samples}, retried {report.retried:,}, "
        f"failed {report.failed:,}; malformed injected {counts.malformed:,}, duplicates injected "
        f"{counts.duplicates:,}, out of order {counts.out_of_order:,}, dropped {counts.dropped:,}, "
        f"sent in reconnect bursts {counts.buffered:,}"
        + (f", devices offline with a backlog {counts.offline:,}" if args.offline_rate > 0 else "")
    )
    return 0


def _run(fleet: Fleet, args: argparse.Namespace, publisher: Publisher | None) -> PublishReport:
    report = PublishReport()
    progress = _Progress(sys.stderr) if sys.stderr.isatty() else None
    with ExitStack() as stack:
        if publisher is not None:
            stack.callback(publisher.close)
        out = stack.enter_context(args.out.open("wb")) if args.out is not None else None
        truth = stack.enter_context(args.truth.open("wb")) if args.truth is not None else None
        if progress is not None:
            stack.callback(progress.done)
        messages: list[Message] = []
        for sends, low, high in paced(fleet, args.realtime):
            if publisher is not None and low == 0:
                messages = sends.messages()
            if out is not None and high > low:
                out.write(b"\n".join(sends.payloads[low:high]) + b"\n")
                report.sent += high - low
            if publisher is not None:
                report.add(publisher.publish(messages[low:high]))
            if high == len(sends):
                _write_truth(fleet, truth)
                if progress is not None:
                    progress.update(fleet.counts.generated)
        _write_truth(fleet, truth)
    return report


def _write_truth(fleet: Fleet, truth: IO[bytes] | None) -> None:
    entries = fleet.drain_truth()
    if truth is not None and entries:
        truth.write(encode_truth(entries))


class _Progress:
    """One status line on a terminal, rewritten at most once per second."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream, self.started, self.last = stream, time.monotonic(), 0.0

    def update(self, events: int) -> None:
        now = time.monotonic()
        if now - self.last >= 1.0:
            self.last = now
            rate = events / max(now - self.started, 1e-9)
            self.stream.write(f"\r{events:,} events, {rate:,.0f} events/s")
            self.stream.flush()

    def done(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


def _usage_error(message: str) -> int:
    print(f"vitalstream simulate: error: {message}", file=sys.stderr)
    return 2

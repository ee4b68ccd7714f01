"""``vitalstream score``: alerts against ground truth, episode by episode.

Matching rule: an alert matches an episode of the same device and type when its ``detectedAt``
falls within [episode start, episode end + grace]. Each alert is matched to the earliest episode it
can match that no earlier alert detected yet, else to the earliest it can match (then it is a
*duplicate*: a second alert for one episode). Per anomaly type:

- recall = detected episodes / episodes; precision = matched alerts (duplicates included) / alerts;
  alerts that match no episode are *false positives* and are listed;
- detection delay = first matching alert's ``detectedAt`` - episode start (p50, p95, max);
- separately, alerts of any type raised within a RUN activity window (the run and its recovery)
  are counted: a correct detector raises none.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from service.cli.args import parse_duration_ms
from service.core.telemetry import parse_rfc3339_ms
from service.tools.jsonl import read_objects
from simulator.truth import TruthEntry, TruthFormatError, read_truth

DEFAULT_GRACE = "120s"


@dataclass(frozen=True, slots=True)
class ScoredAlert:
    device_id: str
    type: str
    detected_ms: int
    line: int


@dataclass(slots=True)
class TypeScore:
    episodes: int = 0
    detected: int = 0
    alerts: int = 0
    matched: int = 0
    duplicates: int = 0
    false_positives: list[ScoredAlert] = field(default_factory=list)
    missed: list[TruthEntry] = field(default_factory=list)
    delays_ms: list[int] = field(default_factory=list)

    @property
    def recall(self) -> float | None:
        return self.detected / self.episodes if self.episodes else None

    @property
    def precision(self) -> float | None:
        return self.matched / self.alerts if self.alerts else None

    def delay_s(self, quantile: float) -> float | None:
        """Nearest-rank percentile of the detection delays, in seconds."""
        if not self.delays_ms:
            return None
        ordered = sorted(self.delays_ms)
        rank = max(1, math.ceil(quantile * len(ordered)))
        return ordered[rank - 1] / 1000


@dataclass(slots=True)
class Scorecard:
    by_type: dict[str, TypeScore] = field(default_factory=dict)
    runs: int = 0
    alerts_in_runs: list[ScoredAlert] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "types": {
                name: {
                    "episodes": s.episodes,
                    "detected": s.detected,
                    "recall": s.recall,
                    "alerts": s.alerts,
                    "matched": s.matched,
                    "duplicates": s.duplicates,
                    "falsePositives": len(s.false_positives),
                    "precision": s.precision,
                    "delaySeconds": {"p50": s.delay_s(0.5), "p95": s.delay_s(0.95), "max": s.delay_s(1.0)},
                }
                for name, s in sorted(self.by_type.items())
            },
            "runs": self.runs,
            "alertsInRuns": len(self.alerts_in_runs),
        }


def score(truth: Iterable[TruthEntry], alerts: Iterable[ScoredAlert], grace_ms: int) -> Scorecard:
    """Score ``alerts`` against the episodes and RUN activity windows of ``truth``."""
    card = Scorecard()
    episodes: dict[tuple[str, str], list[TruthEntry]] = defaultdict(list)
    runs: dict[str, list[TruthEntry]] = defaultdict(list)
    for entry in truth:
        if entry.kind == "episode":
            episodes[entry.device_id, entry.type].append(entry)
            card.by_type.setdefault(entry.type, TypeScore()).episodes += 1
        elif entry.kind == "activity" and entry.type == "RUN":
            runs[entry.device_id].append(entry)
            card.runs += 1
    for candidates in episodes.values():
        candidates.sort(key=lambda e: e.start_ms)
    first_alert: dict[TruthEntry, int] = {}
    for alert in sorted(alerts, key=lambda a: (a.detected_ms, a.line)):
        stats = card.by_type.setdefault(alert.type, TypeScore())
        stats.alerts += 1
        if any(run.start_ms <= alert.detected_ms <= run.end_ms for run in runs.get(alert.device_id, ())):
            card.alerts_in_runs.append(alert)
        matching = [
            e
            for e in episodes.get((alert.device_id, alert.type), ())
            if e.start_ms <= alert.detected_ms <= e.end_ms + grace_ms
        ]
        if not matching:
            stats.false_positives.append(alert)
            continue
        stats.matched += 1
        fresh = [e for e in matching if e not in first_alert]
        if fresh:
            first_alert[fresh[0]] = alert.detected_ms
        else:
            stats.duplicates += 1
    _tally_episodes(card, episodes, first_alert)
    return card


def _tally_episodes(
    card: Scorecard, episodes: dict[tuple[str, str], list[TruthEntry]], first_alert: dict[TruthEntry, int]
) -> None:
    for (_, anomaly), entries in episodes.items():
        stats = card.by_type[anomaly]
        for entry in entries:
            detected = first_alert.get(entry)
            if detected is None:
                stats.missed.append(entry)
            else:
                stats.detected += 1
                stats.delays_ms.append(detected - entry.start_ms)


class AlertFormatError(ValueError):
    """An alerts line cannot be read; the message names the line."""


def read_alerts(path: Path) -> Iterator[ScoredAlert]:
    """Alerts of a JSON Lines file (``replay``'s alerts.jsonl, the demo's alert history)."""
    for number, body in read_objects(path, AlertFormatError):
        device_id, anomaly, detected = body.get("deviceId"), body.get("type"), body.get("detectedAt")
        if not (isinstance(device_id, str) and isinstance(anomaly, str) and isinstance(detected, str)):
            raise AlertFormatError(f"line {number}: deviceId, type and detectedAt must be strings")
        detected_ms = parse_rfc3339_ms(detected)
        if detected_ms is None:
            raise AlertFormatError(f"line {number}: detectedAt is not an RFC 3339 time: {detected!r}")
        yield ScoredAlert(device_id, anomaly, detected_ms, number)


def render(card: Scorecard, *, listed: int = 10) -> str:
    """The human-readable table, then the first ``listed`` false positives and missed episodes."""
    header = (
        f"{'type':<14}{'episodes':>9}{'detected':>9}{'recall':>8}{'alerts':>8}{'dup':>5}{'FP':>5}"
        f"{'precision':>10}{'p50 s':>8}{'p95 s':>8}{'max s':>8}"
    )
    rows = [header, "-" * len(header)]
    for name, s in sorted(card.by_type.items()):
        rows.append(
            f"{name:<14}{s.episodes:>9,}{s.detected:>9,}{_ratio(s.recall):>8}{s.alerts:>8,}{s.duplicates:>5}"
            f"{len(s.false_positives):>5}{_ratio(s.precision):>10}{_seconds(s.delay_s(0.5)):>8}"
            f"{_seconds(s.delay_s(0.95)):>8}{_seconds(s.delay_s(1.0)):>8}"
        )
    rows.append(f"alerts during RUN activity: {len(card.alerts_in_runs)} (runs: {card.runs:,})")
    for name, s in sorted(card.by_type.items()):
        rows.extend(
            f"false positive {name}: {a.device_id} detectedAt {_iso(a.detected_ms)} (alerts line {a.line})"
            for a in s.false_positives[:listed]
        )
        rows.extend(
            f"missed {name}: {e.device_id} {_iso(e.start_ms)} .. {_iso(e.end_ms)}" for e in s.missed[:listed]
        )
    rows.extend(
        f"alert in a run: {a.type} {a.device_id} detectedAt {_iso(a.detected_ms)}"
        for a in card.alerts_in_runs[:listed]
    )
    return "\n".join(rows)


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _iso(ms: int) -> str:
    from service.core.records import iso_ms  # noqa: PLC0415

    return iso_ms(ms)


# --- command line -------------------------------------------------------------------------------


def _grace(text: str) -> int:
    try:
        return parse_duration_ms(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--truth", type=Path, required=True, metavar="TRUTH.jsonl", help="ground truth")
    parser.add_argument("--alerts", type=Path, required=True, metavar="ALERTS.jsonl", help="alerts to score")
    parser.add_argument(
        "--grace",
        type=_grace,
        default=parse_duration_ms(DEFAULT_GRACE),
        metavar="DURATION",
        help=f"how long after an episode's end an alert still matches it (default {DEFAULT_GRACE})",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")


def run(args: argparse.Namespace) -> int:
    """Read both files (unreadable or malformed → exit 2 naming the file), print the table."""
    try:
        truth = list(read_truth(args.truth))
    except (OSError, TruthFormatError) as exc:
        return _usage_error(f"--truth {args.truth}: {_reason(exc)}")
    try:
        alerts = list(read_alerts(args.alerts))
    except (OSError, AlertFormatError) as exc:
        return _usage_error(f"--alerts {args.alerts}: {_reason(exc)}")
    card = score(truth, alerts, args.grace)
    print(render(card))
    if args.json is not None:
        try:
            args.json.write_bytes(msgspec.json.format(msgspec.json.encode(card.to_dict()), indent=2) + b"\n")
        except OSError as exc:
            print(f"vitalstream score: error: --json {args.json}: {_reason(exc)}", file=sys.stderr)
            return 1
    return 0


def _reason(exc: Exception) -> str:
    return exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc)


def _usage_error(message: str) -> int:
    print(f"vitalstream score: error: {message}", file=sys.stderr)
    return 2

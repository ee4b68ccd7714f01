"""The fleet simulator: determinism, every injected item visible in the telemetry, the offline loop."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from service.cli import main
from service.core.telemetry import parse_rfc3339_ms
from simulator.fleet import Fleet
from simulator.scenario import (
    ANOMALY_TYPES,
    DEFAULT_INCIDENTAL_RATE,
    DEFAULT_INCIDENTAL_STEPS,
    FAULT_TYPES,
    Scenario,
    Segment,
    default_rates,
)
from simulator.truth import TruthEntry, read_truth

START = "2026-11-28T00:00:00Z"
START_MS = 1_795_824_000_000
HOUR_MS = 3_600_000
BUSY = ("--anomaly-rate", "0.5", "--segment-rate", "DROPOUT=0.3", "--segment-rate", "RECONNECT_BURST=0.3")
BUSY_FAULTS = ("--duplicate-prob", "0.01", "--out-of-order-prob", "0.01", "--malformed-prob", "0.01")


def _simulate(out_dir: Path, seed: int, *flags: str) -> tuple[bytes, bytes]:
    """Payload and truth bytes of a busy 40-device hour written by ``vitalstream simulate``."""
    out_dir.mkdir()
    out, truth = out_dir / "fleet.jsonl", out_dir / "truth.jsonl"
    argv = ["simulate", "--devices", "40", "--duration", "1h", "--seed", str(seed), "--start", START]
    assert main([*argv, "--out", str(out), "--truth", str(truth), *BUSY, *BUSY_FAULTS, *flags]) == 0
    return out.read_bytes(), truth.read_bytes()


def test_same_seed_same_bytes_and_another_seed_differs(tmp_path: Path) -> None:
    first = _simulate(tmp_path / "a", seed=11)
    second = _simulate(tmp_path / "b", seed=11)
    other = _simulate(tmp_path / "c", seed=12)
    assert first[0]
    assert first[1]
    assert first == second
    assert first[0] != other[0]
    assert first[1] != other[1]


# --- one busy fleet, inspected in detail --------------------------------------------------------


class Run:
    """Every message of a busy fleet, with its send order, and the fleet's ground truth."""

    def __init__(self) -> None:
        rates = default_rates(0.5) | {Segment.DROPOUT: 0.3, Segment.RECONNECT_BURST: 0.3}
        scenario = Scenario(rates=rates, duplicate_prob=0.01, out_of_order_prob=0.01, malformed_prob=0.01)
        self.fleet = Fleet(60, 5, START_MS, START_MS + 2 * HOUR_MS, scenario=scenario)
        self.lines: list[tuple[str, bytes, int, int]] = []  # device, payload, event ms, send ms
        self.truth: list[TruthEntry] = []
        for sends in self.fleet.ticks():
            self.lines.extend(
                zip(sends.device_ids, sends.payloads, sends.event_ms, sends.send_ms, strict=True)
            )
            self.truth.extend(self.fleet.drain_truth())
        self.truth.extend(self.fleet.drain_truth())
        self.samples: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)  # by device
        self.sent: dict[str, list[tuple[bytes, int, int]]] = defaultdict(list)  # by device, in send order
        for position, (device_id, payload, event_ms, send_ms) in enumerate(self.lines):
            self.sent[device_id].append((payload, event_ms, send_ms))
            body = _telemetry(payload)
            if body is not None:
                self.samples[device_id].append((position, body))

    def during(self, entry: TruthEntry) -> list[dict[str, Any]]:
        return [
            body
            for _, body in self.samples[entry.device_id]
            if entry.start_ms <= _event_ms(body) <= entry.end_ms
        ]

    def of(self, kind: str, anomaly: str) -> list[TruthEntry]:
        return [e for e in self.truth if e.kind == kind and e.type == anomaly]


def _telemetry(payload: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(payload)
    except ValueError:
        return None
    return body if isinstance(body.get("heartRate"), int) else None


def _event_ms(body: dict[str, Any]) -> int:
    value = parse_rfc3339_ms(body["timestamp"])
    assert value is not None
    return value


@pytest.fixture(scope="module")
def run() -> Run:
    return Run()


def test_every_anomaly_fault_and_run_is_in_the_ground_truth(run: Run) -> None:
    kinds = {(e.kind, e.type) for e in run.truth}
    assert {t for k, t in kinds if k == "episode"} == set(ANOMALY_TYPES)
    assert {t for k, t in kinds if k == "fault"} == set(FAULT_TYPES)
    assert ("activity", "RUN") in kinds
    assert {e.detail for e in run.of("episode", "SENSOR_FAULT")} == {"NO_READING", "STUCK_READING"}


@pytest.mark.parametrize(
    ("anomaly", "low", "high"),
    [("TACHYCARDIA", 121, 165), ("BRADYCARDIA", 30, 40), ("HR_SPIKE", 41, 119)],
)
def test_heart_rate_anomalies_hold_their_range_at_rest(run: Run, anomaly: str, low: int, high: int) -> None:
    episodes = run.of("episode", anomaly)
    assert episodes
    for entry in episodes:
        samples = run.during(entry)
        assert len(samples) >= 10
        assert all(low <= s["heartRate"] <= high for s in samples), entry
        assert all(s["steps"] <= DEFAULT_INCIDENTAL_STEPS[1] for s in samples), entry  # a burst at most
        assert sum(s["steps"] for s in samples) <= 2 * len(samples), entry  # no walking cadence


def _bursts(samples: list[tuple[int, dict[str, Any]]]) -> list[int]:
    """Step counts of samples with ≥ 2 steps between samples with fewer: incidental bursts."""
    steps = [0, *(body["steps"] for _, body in samples), 0]
    return [
        n
        for before, n, after in zip(steps, steps[1:], steps[2:], strict=False)
        if n >= 2 and before < 2 > after
    ]


def test_resting_wearers_take_incidental_bursts_of_steps(run: Run) -> None:
    bursts = [n for samples in run.samples.values() for n in _bursts(samples)]
    device_hours = len(run.samples) * 2
    low, high = DEFAULT_INCIDENTAL_STEPS

    assert 0.5 * DEFAULT_INCIDENTAL_RATE <= len(bursts) / device_hours <= DEFAULT_INCIDENTAL_RATE
    assert min(bursts) == low
    assert max(bursts) == high
    during = [n for entry in run.of("episode", "TACHYCARDIA") for n in _bursts(run.samples[entry.device_id])]
    assert during  # devices with episodes move too


def test_a_spike_departs_from_the_devices_resting_rate(run: Run) -> None:
    for entry in run.of("episode", "HR_SPIKE"):
        before = [
            s["heartRate"]
            for _, s in run.samples[entry.device_id]
            if entry.start_ms - 300_000 <= _event_ms(s) < entry.start_ms
        ]
        resting = sorted(before)[len(before) // 2]
        assert min(s["heartRate"] for s in run.during(entry)) >= resting + 28, entry


def test_low_spo2_and_sensor_faults_are_visible(run: Run) -> None:
    for entry in run.of("episode", "LOW_SPO2"):
        assert all(80 <= s["spo2"] < 90 for s in run.during(entry))
    for entry in run.of("episode", "SENSOR_FAULT"):
        readings = {s["heartRate"] for s in run.during(entry)}
        assert readings == {0} if entry.detail == "NO_READING" else len(readings) == 1 and 0 not in readings
        assert entry.end_ms - entry.start_ms >= (60_000 if entry.detail == "NO_READING" else 300_000)


def test_runs_have_many_steps_and_a_high_heart_rate(run: Run) -> None:
    runs = run.of("activity", "RUN")
    assert runs
    for entry in runs:
        samples = run.during(entry)
        assert max(s["heartRate"] for s in samples) >= 135
        assert max(s["steps"] for s in samples) >= 12


def test_duplicates_are_sent_twice(run: Run) -> None:
    for entry in run.of("fault", "DUPLICATE"):
        sent = [p for p, ev, _ in run.sent[entry.device_id] if ev == entry.start_ms]
        assert len(sent) == 2
        assert sent[0] == sent[1]


def test_out_of_order_swaps_a_devices_adjacent_samples(run: Run) -> None:
    for entry in run.of("fault", "OUT_OF_ORDER"):
        order = [ev for _, ev, _ in run.sent[entry.device_id]]
        assert order.index(entry.start_ms) == order.index(entry.end_ms) + 1


def test_malformed_payloads_are_rejects(run: Run) -> None:
    malformed = run.of("fault", "MALFORMED")
    invalid = [p for _, p, _, _ in run.lines if _telemetry(p) is None]
    assert len(invalid) == len(malformed) > 0
    assert {e.detail for e in malformed} == {"TRUNCATED", "WRONG_TYPE", "GARBAGE"}
    assert all(b"\n" not in p for p in invalid)


def test_dropouts_are_silent_and_bursts_arrive_late(run: Run) -> None:
    for entry in run.of("fault", "DROPOUT"):
        assert entry.end_ms - entry.start_ms >= 60_000
        assert not run.during(entry)
    for entry in run.of("fault", "RECONNECT_BURST"):
        late = [
            (ev, send) for _, ev, send in run.sent[entry.device_id] if entry.start_ms <= ev <= entry.end_ms
        ]
        assert len(late) >= 20
        assert all(send - ev >= 0 for ev, send in late)
        assert late[0][1] - late[0][0] >= entry.end_ms - entry.start_ms  # all sent at reconnect


def test_seq_strictly_increases_per_device_among_valid_samples(run: Run) -> None:
    for samples in run.samples.values():
        seqs = sorted({s["seq"] for _, s in samples})
        events = sorted({_event_ms(s) for _, s in samples})
        assert len(seqs) == len(events)


# --- command line and the offline loop ----------------------------------------------------------


def test_incidental_movement_off_moves_nothing_else(tmp_path: Path) -> None:
    on, off = tmp_path / "on", tmp_path / "off"
    payloads_on, truth_on = _simulate(on, seed=11)
    payloads_off, truth_off = _simulate(off, 11, "--no-incidental-movement")

    def bursts(payloads: bytes) -> list[int]:
        devices: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
        for line in payloads.splitlines():
            if (body := _telemetry(line)) is not None:
                devices[body["deviceId"]].append((0, body))
        return [n for samples in devices.values() for n in _bursts(samples)]

    assert truth_off == truth_on
    assert payloads_off != payloads_on
    assert bursts(payloads_on)
    assert not bursts(payloads_off)


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--devices", "0", "--out", "x.jsonl"], "--devices"),
        (["--devices", "5", "--duration", "soon", "--out", "x.jsonl"], "--duration"),
        (["--devices", "5", "--interval", "0.2s", "--out", "x.jsonl"], "--interval"),
        (["--devices", "5"], "--out"),
        (["--devices", "5", "--incidental-rate", "-1", "--out", "x.jsonl"], "--incidental-rate"),
        (["--devices", "5", "--variability", "missing.npy", "--out", "x.jsonl"], "--variability"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(
    flags: list[str],
    named: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["simulate", *flags]) == 2
    assert named in capsys.readouterr().err


def test_simulate_replay_score_detects_every_episode_and_nothing_in_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet, truth, out, figures = (
        tmp_path / n for n in ("fleet.jsonl", "truth.jsonl", "replay", "score.json")
    )
    argv = ["simulate", "--devices", "100", "--duration", "2h", "--seed", "3", "--anomaly-rate", "0.5"]
    assert main([*argv, *BUSY[2:], "--out", str(fleet), "--truth", str(truth)]) == 0
    assert main(["replay", str(fleet), "--out", str(out)]) == 0
    assert (
        main(["score", "--truth", str(truth), "--alerts", str(out / "alerts.jsonl"), "--json", str(figures)])
        == 0
    )
    table = capsys.readouterr().out
    scores = json.loads(figures.read_text())
    assert set(scores["types"]) == set(ANOMALY_TYPES), table
    for name, figure in scores["types"].items():
        assert figure["episodes"] >= 10, (name, table)
        assert figure["recall"] >= 0.99, (name, table)
        assert figure["precision"] >= 0.99, (name, table)
    assert scores["runs"] > 0
    assert scores["alertsInRuns"] == 0, table
    assert len(list(read_truth(truth))) > 0

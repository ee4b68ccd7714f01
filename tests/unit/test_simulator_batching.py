"""Devices that batch (simulator.uplink): the packing changes, the samples and the ground truth do not."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from service.cli import main
from service.core.telemetry import parse_rfc3339_ms
from service.runtime.publishing import Message
from simulator.fleet import Fleet
from simulator.publishers.iot_data import IotDataPublisher
from simulator.publishers.mqtt import telemetry_topic
from simulator.scenario import Scenario, Segment, default_rates
from simulator.truth import TruthEntry, read_truth
from simulator.uplink import OFFLINE_FAULT

START = "2026-11-28T00:00:00Z"
START_MS = 1_795_824_000_000
HOUR_MS = 3_600_000
N = 12


class Sent:
    """Every message of a fleet and its ground truth."""

    def __init__(self, scenario: Scenario, devices: int = 60, hours: int = 2, seed: int = 5) -> None:
        self.fleet = Fleet(devices, seed, START_MS, START_MS + hours * HOUR_MS, scenario=scenario)
        self.messages: list[tuple[str, bytes, int, int]] = []  # device, payload, event ms, send ms
        self.truth: list[TruthEntry] = []
        for sends in self.fleet.ticks():
            self.messages.extend(
                zip(sends.device_ids, sends.payloads, sends.event_ms, sends.send_ms, strict=True)
            )
            self.truth.extend(self.fleet.drain_truth())
        self.truth.extend(self.fleet.drain_truth())

    def samples(self) -> dict[str, list[tuple[bytes, int]]]:
        """Per device, in send order: each sample as a single-sample payload, and its send time."""
        devices: dict[str, list[tuple[bytes, int]]] = defaultdict(list)
        for device_id, payload, _, send_ms in self.messages:
            head = f'{{"deviceId":"{device_id}",'.encode()
            if not payload.startswith(head + b'"samples":['):
                devices[device_id].append((payload, send_ms))
                continue
            for sample in json.loads(payload)["samples"]:
                single = head + _compact(sample)[1:] if isinstance(sample, dict) else sample.encode("latin-1")
                devices[device_id].append((single, send_ms))
        return devices

    def of(self, kind: str, anomaly: str) -> list[TruthEntry]:
        return [e for e in self.truth if e.kind == kind and e.type == anomaly]


def _compact(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _busy(**uplink: Any) -> Scenario:
    rates = default_rates(0.5) | {Segment.DROPOUT: 0.3, Segment.RECONNECT_BURST: 0.3}
    return Scenario(rates=rates, duplicate_prob=0.01, out_of_order_prob=0.01, malformed_prob=0.01, **uplink)


def _valid(sample: Any) -> bool:
    return isinstance(sample, dict) and isinstance(sample.get("heartRate"), int)


@pytest.fixture(scope="module")
def single() -> Sent:
    return Sent(_busy())


@pytest.fixture(scope="module")
def batched() -> Sent:
    return Sent(_busy(samples_per_message=N))


def test_each_device_sends_the_same_samples_in_the_same_order_and_the_truth_is_unchanged(
    single: Sent, batched: Sent
) -> None:
    # duplicates, swapped neighbours, reconnect bursts and malformed samples included
    assert batched.truth == single.truth
    assert len(batched.messages) < len(single.messages) / 4
    expected = {d: [p for p, _ in samples] for d, samples in single.samples().items()}
    assert {d: [p for p, _ in samples] for d, samples in batched.samples().items()} == expected
    assert batched.fleet.counts.samples_sent == len(single.messages) == single.fleet.counts.samples_sent


def test_messages_follow_the_batch_contract(batched: Sent) -> None:
    last_send: dict[str, int] = {}
    for device_id, payload, event_ms, send_ms in batched.messages:
        body = json.loads(payload)
        assert payload.startswith(f'{{"deviceId":"{device_id}","samples":[{{'.encode()) or payload.startswith(
            f'{{"deviceId":"{device_id}","samples":["'.encode()
        )
        assert _compact(body) == payload
        assert list(body) == ["deviceId", "samples"]
        assert 1 <= len(body["samples"]) <= N
        assert not any(isinstance(s, dict) and "deviceId" in s for s in body["samples"])
        last = body["samples"][-1]
        if isinstance(last, dict) and isinstance(last.get("timestamp"), str):
            assert event_ms == parse_rfc3339_ms(last["timestamp"])
        assert send_ms >= last_send.get(device_id, 0)
        last_send[device_id] = send_ms


def test_abnormal_samples_leave_the_device_at_once(batched: Sent) -> None:
    held = {(e.device_id, e.start_ms) for e in batched.of("fault", "OUT_OF_ORDER")}  # a stream fault
    episodes = defaultdict(list)
    for entry in batched.truth:
        if entry.kind == "episode":
            episodes[entry.device_id].append(entry)
    checked: dict[str, int] = defaultdict(int)
    for device_id, payload, _, send_ms in batched.messages:
        for sample in json.loads(payload)["samples"]:
            if not _valid(sample):
                continue
            event_ms = parse_rfc3339_ms(sample["timestamp"])
            assert event_ms is not None
            for entry in episodes[device_id]:
                stuck_warming = entry.detail == "STUCK_READING" and event_ms - entry.start_ms < 60_000
                during = entry.start_ms <= event_ms <= entry.end_ms and not stuck_warming
                if during and (device_id, event_ms) not in held:
                    assert send_ms - event_ms < 1_000, (entry, sample)
                    checked[entry.type] += 1
    assert set(checked) == {"TACHYCARDIA", "BRADYCARDIA", "LOW_SPO2", "HR_SPIKE", "SENSOR_FAULT"}
    assert min(checked.values()) >= 500


def test_resting_walking_and_running_devices_send_full_messages() -> None:
    calm = Sent(Scenario(samples_per_message=N), devices=100, hours=1, seed=3)
    samples = sum(len(json.loads(p)["samples"]) for _, p, _, _ in calm.messages)
    full = sum(1 for _, p, _, _ in calm.messages if len(json.loads(p)["samples"]) == N)
    assert calm.of("activity", "RUN")
    assert full * N >= 0.9 * samples


def test_invalid_samples_sit_inside_batches_one_for_each_malformed_fault(batched: Sent) -> None:
    malformed = batched.of("fault", "MALFORMED")
    invalid: list[Any] = []
    for _, payload, _, _ in batched.messages:
        samples = json.loads(payload)["samples"]
        invalid.extend(s for s in samples if not _valid(s))
        if any(not _valid(s) for s in samples):
            assert any(_valid(s) for s in samples) or len(samples) == 1
    assert len(invalid) == len(malformed) > 0
    assert {e.detail for e in malformed} == {"TRUNCATED", "WRONG_TYPE", "GARBAGE"}
    assert {type(s) for s in invalid} == {dict, str}


def test_offline_devices_upload_their_backlog_in_messages_of_n_on_reconnect(single: Sent) -> None:
    offline = Sent(_busy(samples_per_message=N, offline_share=0.2))
    windows = offline.of("fault", OFFLINE_FAULT)
    assert len(windows) == round(0.2 * 60) == offline.fleet.counts.offline
    assert [e for e in offline.truth if e.type != OFFLINE_FAULT] == single.truth
    samples = offline.samples()
    assert {d: [p for p, _ in s] for d, s in samples.items()} == {
        d: [p for p, _ in s] for d, s in single.samples().items()
    }
    for window in windows:
        skew = offline.fleet.skew[offline.fleet.ids.index(window.device_id)]
        went, came = window.start_ms - skew, window.end_ms - skew  # fleet time
        sends = [(p, e, s) for d, p, e, s in offline.messages if d == window.device_id]
        assert not [s for _, _, s in sends if went <= s < came]
        reconnect = min(s for _, _, s in sends if s >= came)  # later after an outage of its own
        backlog = [(p, e) for p, e, s in sends if s == reconnect]
        assert len(backlog) >= (came - went) // 5_000 // N
        assert all(len(json.loads(p)["samples"]) <= N for p, _ in backlog)
        assert [e for _, e in backlog] == sorted(e for _, e in backlog)
        # every sample made while offline left at reconnect, with its own event time
        stayed = [e for p, _ in backlog for e in _event_times(p)]
        assert stayed[0] <= window.start_ms + 5_000
        assert stayed[-1] >= window.end_ms - 5_000


def _event_times(payload: bytes) -> list[int]:
    times = []
    for sample in json.loads(payload)["samples"]:
        if _valid(sample) and (event_ms := parse_rfc3339_ms(sample["timestamp"])) is not None:
            times.append(event_ms)
    return times


def test_one_sample_per_message_offline_sends_single_sample_payloads(single: Sent) -> None:
    offline = Sent(_busy(offline_share=0.2))
    assert offline.of("fault", OFFLINE_FAULT)
    assert all(b'"samples"' not in p for _, p, _, _ in offline.messages)
    assert sorted(p for _, p, _, _ in offline.messages) == sorted(p for _, p, _, _ in single.messages)
    assert [(d, p) for d, p, _, _ in offline.messages] != [(d, p) for d, p, _, _ in single.messages]


class RecordingIotData:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    def publish(self, *, topic: str, qos: int, payload: bytes) -> None:
        self.published.append((topic, payload))


def test_a_target_publishes_each_batch_as_one_message_on_its_devices_topic(batched: Sent) -> None:
    client = RecordingIotData()
    publisher = IotDataPublisher(client)
    first_ticks = batched.messages[:500]
    messages = [Message(d, p, e, s) for d, p, e, s in first_ticks]
    assert publisher.publish(messages).sent == len(messages)
    assert client.published == [(telemetry_topic(d), p) for d, p, _, _ in first_ticks]


# --- command line -------------------------------------------------------------------------------


def _simulate(tmp_path: Path, *flags: str) -> tuple[list[bytes], list[TruthEntry], str]:
    out, truth = tmp_path / "fleet.jsonl", tmp_path / "truth.jsonl"
    argv = ["simulate", "--devices", "50", "--seed", "7", "--start", START, "--anomaly-rate", "3"]
    assert main([*argv, "--out", str(out), "--truth", str(truth), *flags]) == 0
    return out.read_bytes().splitlines(), list(read_truth(truth)), str(out)


def test_out_writes_one_message_per_line_and_the_truth_does_not_depend_on_n(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "1").mkdir()
    (tmp_path / "12").mkdir()
    lines_1, truth_1, _ = _simulate(tmp_path / "1", "--duration", "30m")
    capsys.readouterr()
    lines_12, truth_12, _ = _simulate(tmp_path / "12", "--duration", "30m", "--samples-per-message", "12")
    printed = capsys.readouterr().out
    assert truth_12 == truth_1
    bodies = [json.loads(line) for line in lines_12]
    samples = sum(len(body["samples"]) for body in bodies)
    assert samples == len(lines_1)
    assert f"sent {len(lines_12):,} ({samples:,} samples)" in printed


def test_rested_at_start_gives_a_two_minute_run_episodes_from_its_first_minute(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    (tmp_path / "rested").mkdir()
    short = ("--duration", "2m", "--anomaly-rate", "20", "--short-episodes")
    _, plain, _ = _simulate(tmp_path / "plain", *short)
    _, rested, _ = _simulate(tmp_path / "rested", *short, "--rested-at-start")
    assert not [e for e in plain if e.kind == "episode"]
    assert [e for e in rested if e.kind == "episode" and e.start_ms < START_MS + 60_000]


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--samples-per-message", "0"], "--samples-per-message"),
        (["--offline-rate", "1.5"], "--offline-rate"),
        (["--offline-rate", "0.05", "--duration", "10m"], "--offline-duration"),
        (["--offline-duration", "soon"], "--offline-duration"),
    ],
)
def test_bad_sending_flags_exit_2_naming_the_flag(
    flags: list[str], named: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["simulate", "--devices", "5", "--out", str(tmp_path / "x.jsonl"), *flags]) == 2
    assert named in capsys.readouterr().err

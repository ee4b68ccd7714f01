"""``vitalstream score`` on hand-made ground truth and alerts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.cli import main
from service.core.records import iso_ms
from service.tools.score import ScoredAlert, score
from simulator.truth import TruthEntry

T0 = 1_795_831_200_000  # 2026-11-28T02:00:00Z
MIN = 60_000
GRACE = 2 * MIN


def _episode(device: str, anomaly: str, start_min: int, end_min: int) -> TruthEntry:
    return TruthEntry("episode", device, anomaly, T0 + start_min * MIN, T0 + end_min * MIN)


def _alert(device: str, anomaly: str, detected_ms: int, line: int = 1) -> ScoredAlert:
    return ScoredAlert(device, anomaly, detected_ms, line)


TRUTH = [
    _episode("d1", "TACHYCARDIA", 10, 15),  # detected twice: one match, one duplicate
    _episode("d2", "TACHYCARDIA", 10, 15),  # missed
    _episode("d1", "LOW_SPO2", 30, 35),  # detected at exactly end + grace
    TruthEntry("activity", "d3", "RUN", T0, T0 + 40 * MIN),
]


def test_true_positive_duplicate_missed_and_false_positives() -> None:
    alerts = [
        _alert("d1", "TACHYCARDIA", T0 + 10 * MIN + 30_000),
        _alert("d1", "TACHYCARDIA", T0 + 12 * MIN),  # same episode again
        _alert("d3", "TACHYCARDIA", T0 + 11 * MIN),  # no episode on d3: a false positive, in a run
        _alert("d2", "BRADYCARDIA", T0 + 11 * MIN),  # d2's episode is TACHYCARDIA: wrong type
        _alert("d1", "LOW_SPO2", T0 + 35 * MIN + GRACE),  # the last moment of the window
    ]
    card = score(TRUTH, alerts, GRACE)
    tachy = card.by_type["TACHYCARDIA"]
    assert (tachy.episodes, tachy.detected, tachy.alerts, tachy.matched, tachy.duplicates) == (2, 1, 3, 2, 1)
    assert tachy.recall == 0.5
    assert tachy.precision == pytest.approx(2 / 3)
    assert [a.device_id for a in tachy.false_positives] == ["d3"]
    assert [e.device_id for e in tachy.missed] == ["d2"]
    assert tachy.delays_ms == [30_000]
    brady = card.by_type["BRADYCARDIA"]
    assert (brady.episodes, brady.alerts, brady.precision, brady.recall) == (0, 1, 0.0, None)
    spo2 = card.by_type["LOW_SPO2"]
    assert (spo2.recall, spo2.precision, spo2.delay_s(1.0)) == (1.0, 1.0, 7 * 60.0)
    assert [a.device_id for a in card.alerts_in_runs] == ["d3"]
    assert card.runs == 1


@pytest.mark.parametrize(
    ("detected_ms", "matches"),
    [
        (T0 + 30 * MIN - 1, False),  # before the episode started
        (T0 + 30 * MIN, True),
        (T0 + 35 * MIN + GRACE, True),
        (T0 + 35 * MIN + GRACE + 1, False),
    ],
)
def test_grace_window_boundaries(detected_ms: int, matches: bool) -> None:
    card = score(TRUTH, [_alert("d1", "LOW_SPO2", detected_ms)], GRACE)
    assert card.by_type["LOW_SPO2"].detected == int(matches)
    assert len(card.by_type["LOW_SPO2"].false_positives) == int(not matches)


def test_two_alerts_in_overlapping_windows_detect_two_episodes() -> None:
    truth = [_episode("d1", "HR_SPIKE", 0, 2), _episode("d1", "HR_SPIKE", 3, 5)]
    alerts = [_alert("d1", "HR_SPIKE", T0 + 1 * MIN), _alert("d1", "HR_SPIKE", T0 + 3 * MIN + 10_000)]
    card = score(truth, alerts, GRACE)  # the second alert is within grace of the first episode too
    assert (card.by_type["HR_SPIKE"].detected, card.by_type["HR_SPIKE"].duplicates) == (2, 0)


def _write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_command_scores_replay_style_alerts_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truth = tmp_path / "truth.jsonl"
    truth.write_bytes(b"".join(entry.to_json() + b"\n" for entry in TRUTH))
    alert = {
        "alertId": "a1",
        "deviceId": "d1",
        "type": "TACHYCARDIA",
        "severity": "HIGH",
        "startedAt": iso_ms(T0 + 10 * MIN),
        "detectedAt": iso_ms(T0 + 10 * MIN + 35_000),
        "value": 130,
        "threshold": 120,
        "message": "heart rate 130 bpm ≥ 120 bpm at rest for 35 s",
    }
    alerts = _write_jsonl(tmp_path / "alerts.jsonl", [alert])
    figures = tmp_path / "score.json"
    argv = ["score", "--truth", str(truth), "--alerts", str(alerts), "--grace", "2m", "--json", str(figures)]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "TACHYCARDIA" in table
    assert "alerts during RUN activity: 0" in table
    written = json.loads(figures.read_text())
    assert written["types"]["TACHYCARDIA"]["recall"] == 0.5
    assert written["types"]["TACHYCARDIA"]["precision"] == 1.0
    assert written["types"]["TACHYCARDIA"]["delaySeconds"]["p50"] == 35.0
    assert written["types"]["LOW_SPO2"]["recall"] == 0.0


@pytest.mark.parametrize(
    ("truth_text", "alerts_text", "named"),
    [
        ("not json\n", "", "--truth"),
        ('{"kind":"episode","deviceId":"d","type":"X","start":"yesterday","end":"now"}\n', "", "--truth"),
        ("", '{"deviceId":"d","type":"X"}\n', "--alerts"),
        ("", "[1, 2]\n", "--alerts"),
    ],
)
def test_bad_files_exit_2_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], truth_text: str, alerts_text: str, named: str
) -> None:
    truth, alerts = tmp_path / "t.jsonl", tmp_path / "a.jsonl"
    truth.write_text(truth_text, encoding="utf-8")
    alerts.write_text(alerts_text, encoding="utf-8")
    assert main(["score", "--truth", str(truth), "--alerts", str(alerts)]) == 2
    err = capsys.readouterr().err
    assert named in err
    assert "line 1" in err


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    alerts = tmp_path / "a.jsonl"
    alerts.write_text("", encoding="utf-8")
    assert main(["score", "--truth", str(tmp_path / "nope.jsonl"), "--alerts", str(alerts)]) == 2
    assert "nope.jsonl" in capsys.readouterr().err

"""``vitalstream replay`` over the shipped example file, in-process and as a real process."""

from __future__ import annotations

import base64
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from service.cli import main
from service.core import DEFAULT_CONFIG, Detector
from service.tools.replay import replay

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "telemetry.jsonl"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_example", ROOT / "examples" / "make_example.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR = _load_generator()
ROLES: dict[str, str] = GENERATOR.ROLES


def _jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("replay")
    command = [sys.executable, "-m", "service.cli", "replay", str(EXAMPLE), "--out", str(out)]
    completed = subprocess.run(
        [*command, "--batch-size", "97"], check=False, capture_output=True, text=True, cwd=ROOT
    )
    code, printed = completed.returncode, completed.stdout + completed.stderr
    assert code == 0, printed
    return out, printed


def test_example_file_is_what_the_generator_writes() -> None:
    expected = "".join(line + "\n" for line in GENERATOR.lines())
    assert EXAMPLE.read_text(encoding="utf-8") == expected


def test_replay_raises_one_alert_per_scripted_episode(replayed: tuple[Path, str]) -> None:
    out, _ = replayed
    alerts = {(a["deviceId"], a["type"]) for a in _jsonl(out / "alerts.jsonl")}
    assert alerts == {
        (ROLES["tachycardia"], "TACHYCARDIA"),
        (ROLES["low_spo2"], "LOW_SPO2"),
        (ROLES["bradycardia"], "BRADYCARDIA"),
        (ROLES["sensor_fault"], "SENSOR_FAULT"),
    }
    assert len(_jsonl(out / "alerts.jsonl")) == 4


def test_the_runner_is_busy_but_never_alerted(replayed: tuple[Path, str]) -> None:
    out, _ = replayed
    runner = [r for r in _jsonl(out / "processed.jsonl") if r["deviceId"] == ROLES["runner"]]
    assert any(r["status"] == "HIGH_HEART_RATE" for r in runner)  # the run did happen
    assert all(r["anomalies"] == [] for r in runner)
    assert all(a["deviceId"] != ROLES["runner"] for a in _jsonl(out / "alerts.jsonl"))


def test_garbage_lines_are_rejected_with_their_line_and_reason(replayed: tuple[Path, str]) -> None:
    out, _ = replayed
    lines = EXAMPLE.read_bytes().split(b"\n")
    rejects = _jsonl(out / "rejects.jsonl")
    by_line = {r["line"]: r["reason"] for r in rejects}
    assert sorted(by_line.values()) == sorted(
        [
            "invalid_json",
            "invalid_json",
            "out_of_range",
            "missing_field",
            "invalid_timestamp",
            "not_an_object",
            "invalid_device_id",
            "wrong_type",
        ]
    )
    for reject in rejects:
        line = reject["line"]
        assert isinstance(line, int)
        assert reject["sequenceNumber"] == str(line)
        assert isinstance(reject["data"], str)
        assert base64.b64decode(reject["data"]) == lines[line - 1]
        assert lines[line - 1].decode() in GENERATOR.GARBAGE.values()


def test_every_valid_line_is_processed_once_and_the_duplicate_is_counted(replayed: tuple[Path, str]) -> None:
    out, printed = replayed
    processed = _jsonl(out / "processed.jsonl")
    assert len(processed) == GENERATOR.DEVICES * GENERATOR.TICKS
    assert len({(r["deviceId"], r["seq"]) for r in processed}) == len(processed)
    assert "duplicates  1 (device repeats)" in printed
    assert "processed   7,200" in printed
    assert "1 blank" in printed


def test_in_process_main_writes_the_same_alerts(tmp_path: Path, replayed: tuple[Path, str]) -> None:
    assert main(["replay", str(EXAMPLE), "--out", str(tmp_path)]) == 0
    subprocess_out, _ = replayed
    assert _unstamped(tmp_path / "alerts.jsonl") == _unstamped(subprocess_out / "alerts.jsonl")
    assert all("publishedAt" in alert for alert in _jsonl(tmp_path / "alerts.jsonl"))


def _unstamped(alerts: Path) -> list[dict[str, object]]:
    """The alerts without the time each run published them."""
    return [{k: v for k, v in a.items() if k not in ("publishedAt", "delayMs")} for a in _jsonl(alerts)]


def test_processed_at_comes_from_the_injected_clock(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(
        '{"deviceId":"d1","timestamp":"2026-11-28T02:00:00.000Z","heartRate":70,"steps":0,"extra":"kept"}\n'
    )
    summary = replay(source, tmp_path / "out", Detector(DEFAULT_CONFIG), clock=lambda: 1_796_000_000.5)
    [record] = _jsonl(tmp_path / "out" / "processed.jsonl")
    assert record["processedAt"] == "2026-11-30T00:53:20.500Z"
    assert record["extra"] == "kept"
    assert (summary.records, summary.processed, summary.rejected.total()) == (1, 1, 0)


def test_missing_input_file_is_a_usage_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-file.jsonl"
    assert main(["replay", str(missing), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_out_that_is_a_file_is_a_usage_error_naming_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    occupied = tmp_path / "occupied"
    occupied.write_text("")
    assert main(["replay", str(EXAMPLE), "--out", str(occupied)]) == 2
    assert "--out" in capsys.readouterr().err


def test_bad_batch_size_is_a_usage_error(tmp_path: Path) -> None:
    assert main(["replay", str(EXAMPLE), "--out", str(tmp_path), "--batch-size", "0"]) == 2

"""The commands that start the embedded emulator say plainly when it is not installed, and how to go on."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.cli import main


@pytest.mark.parametrize("command", [["demo"], ["local", "up"]])
def test_a_missing_embedded_emulator_is_named_with_the_way_out(
    command: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VITALSTREAM_MINISTACK", str(tmp_path / "no-such" / "ministack"))

    assert main(command) == 2

    err = capsys.readouterr().err
    assert f"MiniStack is not installed at {tmp_path / 'no-such' / 'ministack'}" in err
    assert "python3 scripts/dev.py demo" in err
    assert "--emulator moto" in err

"""The shim reports every invocation — one that returns and one that raises — as its log lines and one
EMF line, written to ``OUTPUT``; in-memory sinks stand in for AWS."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from lambda_shim import handler as shim
from service.runtime.window import WindowCommitError
from tests.emf import check_emf, emf_lines
from tests.unit.test_window import Sinks, calm, windowed


@pytest.fixture
def sinks(monkeypatch: pytest.MonkeyPatch) -> Sinks:
    made = Sinks()
    monkeypatch.setattr(shim, "_runtime", lambda: made.processor().pipeline)
    return made


@pytest.fixture
def output(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    lines = io.StringIO()
    monkeypatch.setattr(shim, "OUTPUT", lines)
    return lines


def read(output: io.StringIO) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    text = output.getvalue()
    output.seek(0)
    output.truncate()
    (metrics,) = emf_lines(text)
    check_emf(metrics)
    logs = [json.loads(line) for line in text.splitlines() if not line.startswith('{"_aws"')]
    return logs, metrics


def test_a_window_invocation_then_a_refused_commit_each_write_their_lines(
    sinks: Sinks, output: io.StringIO
) -> None:
    response = shim.handler(windowed(calm("watch-a", 0, 30)), None)

    logs, metrics = read(output)
    assert [line["message"] for line in logs] == ["batch processed"]
    assert (metrics["mode"], metrics["Samples_processed"], metrics["InvocationErrors"]) == ("window", 6, 0)
    assert metrics["WindowStateSize"] == len(json.dumps(response["state"]))

    sinks.states.refuse_writes.add("watch-a")
    with pytest.raises(WindowCommitError):
        shim.handler(windowed([], response["state"], final=True), None)

    logs, metrics = read(output)
    assert [(line["level"], line["message"]) for line in logs] == [
        ("ERROR", "invocation failed"),
        ("WARNING", "sink error"),
    ]
    assert logs[0]["error"] == "WindowCommitError"
    assert (metrics["InvocationErrors"], metrics["SinkErrors_device_state"]) == (1, 1)

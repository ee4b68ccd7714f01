"""The local event source mapping's worker process: one per shard, the function outside our process."""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from service.tools.esm.worker import FunctionError, Isolated, WorkerSandbox

CONTEXT = SimpleNamespace(invoked_function_arn="arn:test", aws_request_id="r")


@pytest.fixture
def sandbox() -> Iterator[WorkerSandbox]:
    worker = WorkerSandbox(
        Isolated("tests.unit.esm_functions:handler", probe="tests.unit.esm_functions:calls"), "t"
    )
    yield worker
    worker.close()


def test_the_function_runs_in_another_process_with_the_event_and_response_as_json(
    sandbox: WorkerSandbox,
) -> None:
    response = sandbox.invoke({"echo": {"a": [1, "b"]}}, CONTEXT)
    assert response["pid"] != os.getpid()
    assert response["echo"] == {"a": [1, "b"]}
    assert response["arn"] == "arn:test"


def test_a_raising_function_is_a_function_error_and_its_worker_stays_warm(sandbox: WorkerSandbox) -> None:
    first = sandbox.invoke({}, CONTEXT)["pid"]
    with pytest.raises(FunctionError, match="ValueError: as asked"):
        sandbox.invoke({"raise": True}, CONTEXT)
    assert sandbox.invoke({}, CONTEXT)["pid"] == first
    assert sandbox.latest_probes() == [3]  # module state kept across invocations, read back by the probe


def test_a_dead_worker_is_a_function_error_and_the_next_invocation_gets_a_new_one(
    sandbox: WorkerSandbox,
) -> None:
    first = sandbox.invoke({}, CONTEXT)["pid"]
    with pytest.raises(FunctionError, match="died"):
        sandbox.invoke({"die": True}, CONTEXT)
    assert sandbox.invoke({}, CONTEXT)["pid"] != first
    assert sandbox.latest_probes() == [1, 1]  # each worker's latest count: the dead one's, the new one's

"""What the sinks answered: per batch (``BatchSinks``), over time (``SinkHealth``), and as log fields.

Both modes keep every ``SinkError`` they catch — none is dropped. A batch collects them in a
``BatchSinks`` along with the sinks it used (read or written) that answered in full. Kubernetes mode
feeds each batch's into the replica's ``SinkHealth``, which says which causes are new (log them once)
and which cleared (their sink has answered a call of the same access in full since), and whether a
permanent one is outstanding (the replica is not ready). Lambda mode logs each invocation's distinct
causes once (``service.runtime.invocation.log_lines``).
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from service.runtime.ports import Access, Cause, FailedDevices, Sink, SinkError, Use, causes_of, distinct

SINK_ERROR_MESSAGE = "sink error"
SINK_RECOVERED_MESSAGE = "sink recovered"


@dataclass(slots=True)
class BatchSinks:
    """The sinks' answers within one batch: every error, and which sinks were used (read or written)."""

    errors: list[SinkError] = field(default_factory=list)
    used: set[Use] = field(default_factory=set)

    def raised(self, error: SinkError) -> None:
        """A port raised ``error`` (the whole call failed)."""
        self.used.add(error.use)
        self.errors.append(error)

    def answered(self, sink: Sink, failed: Collection[object], access: Access = Access.WRITE) -> None:
        """A port answered a call to ``sink`` with ``failed`` (empty: everything landed)."""
        self.used.add((sink, access))
        self.errors.extend(causes_of(failed, sink, access))

    def loaded(self, unavailable: Collection[str], causes: Iterable[SinkError]) -> None:
        """The device table was read; ``unavailable`` devices could not be, for ``causes``."""
        self.answered(Sink.DEVICE_STATE, FailedDevices(unavailable, causes), Access.READ)

    @property
    def failed(self) -> frozenset[Sink]:
        return frozenset(error.sink for error in self.errors)

    @property
    def succeeded(self) -> frozenset[Use]:
        """The sinks used in this batch, each with how, that answered every such call in full."""
        return frozenset(self.used) - {error.use for error in self.errors}

    def distinct(self) -> tuple[SinkError, ...]:
        return distinct(self.errors)


@dataclass(frozen=True, slots=True)
class Changes:
    appeared: tuple[SinkError, ...] = ()  # causes not outstanding before: log each once
    cleared: tuple[SinkError, ...] = ()  # outstanding causes whose sink has answered in full since


class SinkHealth:
    """The outstanding sink-error causes of one process (a consumer replica), safe across threads.

    A cause — (sink, code, resource) — is outstanding from the first error that names it until its
    sink next answers in full a call of the same access (``observe`` with that (sink, access) among
    ``succeeded``: a read that works does not clear a refused write). While any outstanding cause is
    permanent, ``permanent`` is true: the replica reports not ready.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._outstanding: dict[Cause, SinkError] = {}

    def observe(self, errors: Iterable[SinkError], succeeded: Collection[Use] = ()) -> Changes:
        with self._lock:
            cleared = tuple(e for e in self._outstanding.values() if e.use in succeeded)
            for error in cleared:
                del self._outstanding[error.cause]
            appeared = []
            for error in distinct(errors):
                if error.cause not in self._outstanding:
                    self._outstanding[error.cause] = error
                    appeared.append(error)
            return Changes(tuple(appeared), cleared)

    @property
    def permanent(self) -> bool:
        with self._lock:
            return any(error.permanent for error in self._outstanding.values())

    def outstanding(self) -> tuple[SinkError, ...]:
        with self._lock:
            return tuple(self._outstanding.values())


def cause_fields(error: SinkError) -> dict[str, Any]:
    """The structured fields of a cause's log line (no device id, no payload)."""
    return {
        "sink": error.sink.value,
        "code": error.code,
        "resource": error.resource,
        "permanent": error.permanent,
        "error": type(error.__cause__).__name__ if error.__cause__ is not None else type(error).__name__,
    }

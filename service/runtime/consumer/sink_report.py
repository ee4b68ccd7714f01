"""A replica's sink errors made visible: counted by sink and code, each cause logged once, readiness.

``SinkReport.report`` is called with every attempt's errors (one per distinct cause) and the sink uses
it saw answered in full. It counts each error in ``vitalstream_sink_errors_total{sink,code}``, logs a
cause once when it appears (ERROR when permanent, WARNING when transient; the JSON line carries
``sink``, ``code``, ``resource``, ``permanent`` and the bound shard) and once when it clears ("sink
recovered"), and keeps ``vitalstream_sink_permanent_errors{sink}``. The ``SinkHealth`` behind it is the
replica's, shared by its shards: the scheduler reads readiness from it.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence

from service.runtime.consumer.metrics import ConsumerMetrics
from service.runtime.ports import SinkError, Use
from service.runtime.sink_health import SINK_ERROR_MESSAGE, SINK_RECOVERED_MESSAGE, SinkHealth, cause_fields

log = logging.getLogger("service.runtime.consumer.sinks")


class SinkReport:
    def __init__(self, metrics: ConsumerMetrics, health: SinkHealth) -> None:
        self._metrics, self._health = metrics, health

    def report(self, errors: Sequence[SinkError], succeeded: Collection[Use] = ()) -> None:
        """Count ``errors``, log the causes that appeared and those that cleared (their sink and access
        are among ``succeeded``), and keep the permanent-error gauge."""
        for error in errors:
            self._metrics.sink_errors.labels(error.sink.value, error.code).inc()
        changes = self._health.observe(errors, succeeded)
        for error in changes.appeared:
            level = logging.ERROR if error.permanent else logging.WARNING
            log.log(level, SINK_ERROR_MESSAGE, extra=cause_fields(error))
        for error in changes.cleared:
            log.info(SINK_RECOVERED_MESSAGE, extra=cause_fields(error))
        if changes.appeared or changes.cleared:
            self._metrics.observe_permanent(self._health.outstanding())

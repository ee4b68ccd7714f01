"""The ingest lines: IoT Core (connectivity, messaging by volume tier, rules and actions), the MQTT
bridge's compute when IoT Core is not used, and Kinesis (provisioned shards, PUT payload units,
retention, enhanced fan-out; on-demand as an alternative not added to the total).

A message of ``samples_per_message`` samples is one IoT Core message metered by its payload and topic
in 5 KB steps (rules and actions too) and one Kinesis record (one PUT payload unit per 25 KB; shards
by records/s and bytes/s). Sizes: ``Deployment.metered_bytes`` and ``record_bytes``.
"""

from __future__ import annotations

from service.tools.cost.data import Prices
from service.tools.cost.model import (
    HOURS_PER_MONTH,
    SECONDS_PER_MONTH,
    Deployment,
    Ingest,
    Line,
    shards,
    units,
)

GIB = 1024**3
BRIDGE_CPU_SECONDS_PER_MESSAGE = 50e-6  # ESTIMATE (not measured): Mosquitto + bridge per message
BRIDGE_MIN_VCPU = 0.5  # one small pod, always on
BRIDGE_GB_PER_VCPU = 2.0


def iot_core(d: Deployment, prices: Prices, sample_bytes: float) -> list[Line]:
    if d.ingest is Ingest.BRIDGE:
        return []
    minutes = d.devices * d.connected_fraction * 60 * HOURS_PER_MONTH
    lines = [
        Line(
            "iot-core",
            "connectivity",
            minutes,
            "connection-minute",
            prices.price("iot-core", "connection_minute"),
        )
    ]
    metered = (
        d.messages_per_s
        * SECONDS_PER_MONTH
        * units(d.metered_bytes(sample_bytes), prices.price("iot-core", "message_metering_bytes"))
    )
    if d.ingest is Ingest.IOT_CORE:
        lines += messaging(metered, prices)
    lines += [
        Line(
            "iot-core",
            "rules triggered (5 KB steps)",
            metered,
            "rule",
            prices.price("iot-core", "rule_triggered"),
        ),
        Line(
            "iot-core",
            "actions executed (Kinesis, 5 KB steps)",
            metered,
            "action",
            prices.price("iot-core", "action_executed"),
        ),
    ]
    return lines


def messaging(metered: float, prices: Prices) -> list[Line]:
    """One line per volume tier the month reaches (the first billion at the first tier's price...)."""
    lines, left, start = [], metered, 0.0
    for size, price in prices.tiers("iot-core", "message_tiers"):
        used = left if size is None else min(left, size)
        if used <= 0:
            break
        if size is None:
            name = f"messaging, beyond {_billions(start)}B/month"
        else:
            name = f"messaging, {'first' if start == 0 else 'next'} {_billions(size)}B/month"
        lines.append(Line("iot-core", name, used, "message (5 KB)", price))
        left -= used
        start += size or 0.0
    return lines


def bridge(d: Deployment, prices: Prices) -> list[Line]:
    if d.ingest is not Ingest.BRIDGE:
        return []
    vcpu = max(BRIDGE_MIN_VCPU, d.messages_per_s * BRIDGE_CPU_SECONDS_PER_MESSAGE)
    return [
        Line(
            "compute",
            "MQTT bridge vCPU (estimate: 50 µs per message)",
            vcpu * HOURS_PER_MONTH,
            "vCPU-hour",
            prices.price("compute", "vcpu_hour"),
        ),
        Line(
            "compute",
            "MQTT bridge memory",
            vcpu * BRIDGE_GB_PER_VCPU * HOURS_PER_MONTH,
            "GB-hour",
            prices.price("compute", "gb_hour"),
        ),
    ]


def stream_shards(d: Deployment, prices: Prices, sample_bytes: float) -> int:
    return shards(
        d,
        d.record_bytes(sample_bytes),
        prices.price("kinesis", "shard_records_per_s"),
        prices.price("kinesis", "shard_bytes_per_s"),
    )


def kinesis(d: Deployment, prices: Prices, sample_bytes: float) -> list[Line]:
    n = stream_shards(d, prices, sample_bytes) if d.devices else 0
    record_bytes = d.record_bytes(sample_bytes)
    records = d.messages_per_s * SECONDS_PER_MONTH
    put_units = records * units(record_bytes, prices.price("kinesis", "put_payload_unit_bytes"))
    lines = [
        Line(
            "kinesis",
            f"shard-hours ({n} shards, headroom {d.shard_headroom:g})",
            n * HOURS_PER_MONTH,
            "shard-hour",
            prices.price("kinesis", "shard_hour"),
        ),
        Line(
            "kinesis",
            "PUT payload units (25 KB)",
            put_units,
            "unit",
            prices.price("kinesis", "put_payload_unit"),
        ),
    ]
    gb = records * record_bytes / GIB
    if d.retention_hours > 24:
        lines.append(
            Line(
                "kinesis",
                "extended retention (24 h to 7 days)",
                n * HOURS_PER_MONTH,
                "shard-hour",
                prices.price("kinesis", "extended_retention_shard_hour"),
            )
        )
    if d.retention_hours > 168:
        kept = gb / HOURS_PER_MONTH * (d.retention_hours - 168)
        lines.append(
            Line(
                "kinesis",
                "long-term retention (beyond 7 days)",
                kept,
                "GB-month",
                prices.price("kinesis", "long_term_retention_gb_month"),
            )
        )
    if d.efo:
        lines += [
            Line(
                "kinesis",
                "enhanced fan-out consumer-shard-hours",
                n * HOURS_PER_MONTH,
                "consumer-shard-hour",
                prices.price("kinesis", "efo_consumer_shard_hour"),
            ),
            Line("kinesis", "enhanced fan-out data retrieved", gb, "GB", prices.price("kinesis", "efo_gb")),
        ]
    return lines


def kinesis_on_demand(d: Deployment, prices: Prices, sample_bytes: float) -> list[Line]:
    """The on-demand stream for the same traffic (records rounded up to 1 KB): an alternative."""
    kb = units(d.record_bytes(sample_bytes), prices.price("kinesis", "on_demand_record_bytes"))
    gb = d.messages_per_s * SECONDS_PER_MONTH * kb * 1024 / GIB
    return [
        Line(
            "kinesis",
            "on-demand stream-hours",
            HOURS_PER_MONTH,
            "stream-hour",
            prices.price("kinesis", "on_demand_stream_hour"),
        ),
        Line(
            "kinesis",
            "on-demand data in (1 KB per record)",
            gb,
            "GB",
            prices.price("kinesis", "on_demand_gb_in"),
        ),
        Line(
            "kinesis",
            "on-demand data out (one consumer)",
            gb,
            "GB",
            prices.price("kinesis", "on_demand_gb_out"),
        ),
    ]


def _billions(n: float) -> str:
    return f"{n / 1e9:g}"

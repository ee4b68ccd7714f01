"""The one topic a wearable publishes its telemetry to, on AWS IoT Core and on a self-hosted broker alike:
``$aws/rules/{rule}/wearables/{deviceId}/telemetry`` (Basic Ingest).

On IoT Core the ``$aws/rules/{rule}/`` prefix hands the message straight to the IoT rule ``{rule}``
without the message broker, so no messaging charge; the rule's ``topic()`` functions do not see the
prefix, so ``topic(2)`` is still the device id. The device policy of ``infra/template.yaml`` allows a
device exactly this topic with its own thing name. On a self-hosted Mosquitto, ``infra/mosquitto``'s ACL
allows it for the certificate's own CN and ``vitalstream bridge`` subscribes to it: the device firmware is
the same for both. ``DEFAULT_RULE`` is the rule name of the template's default ``NamePrefix``.
"""

from __future__ import annotations

import re

DEFAULT_RULE = "vitalstream_telemetry"
RULE_NAME_PATTERN = re.compile(r"[A-Za-z0-9_]{1,128}")  # what IoT Core accepts as a rule name
_PREFIX = "$aws/rules/"


def telemetry_topic(device_id: str, rule: str = DEFAULT_RULE) -> str:
    """The Basic Ingest topic ``device_id`` publishes to."""
    return f"{_PREFIX}{rule}/wearables/{device_id}/telemetry"


def topic_filter(rule: str = DEFAULT_RULE) -> str:
    """The subscription that receives every device's telemetry topic for ``rule`` (on a broker that
    delivers Basic Ingest topics to subscribers, as Mosquitto does and IoT Core does not)."""
    return telemetry_topic("+", rule)


def topic_device_id(topic: str, rule: str = DEFAULT_RULE) -> str | None:
    """The device id of ``rule``'s telemetry topic, or None for any other topic (another rule's, a
    plain ``wearables/{deviceId}/telemetry``, an empty or multi-level id)."""
    head = f"{_PREFIX}{rule}/wearables/"
    if not topic.startswith(head) or not topic.endswith("/telemetry"):
        return None
    device_id = topic[len(head) : -len("/telemetry")]
    return device_id if device_id and "/" not in device_id else None


def rule_name(text: str) -> str:
    """``text`` if it is a valid IoT rule name, else ``ValueError`` (an ``argparse`` type)."""
    if RULE_NAME_PATTERN.fullmatch(text) is None:
        raise ValueError(f"not an IoT rule name (letters, digits, _; at most 128): {text!r}")
    return text

"""Local serverless mode: a Kinesis event source mapping that invokes the Lambda shim in-process."""

from service.tools.esm.policy import EsmConfig, GiveUpReason
from service.tools.esm.runner import EsmStats, EventSourceMapping, Invocation

__all__ = ["EsmConfig", "EsmStats", "EventSourceMapping", "GiveUpReason", "Invocation"]

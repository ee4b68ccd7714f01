"""Local serverless mode: a Kinesis event source mapping that invokes the Lambda shim, in a worker process
per shard (``Isolated``) or in-process."""

from service.tools.esm.policy import EsmConfig, GiveUpReason
from service.tools.esm.runner import EsmStats, EventSourceMapping, Invocation
from service.tools.esm.worker import Isolated

__all__ = ["EsmConfig", "EsmStats", "EventSourceMapping", "GiveUpReason", "Invocation", "Isolated"]

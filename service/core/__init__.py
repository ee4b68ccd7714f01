"""The pure processing core: no I/O, no clock, no environment. Time comes in as an argument."""

from service.core.anomalies import (
    DEFAULT_CONFIG,
    Alert,
    AnomalyType,
    DetectionConfig,
    Severity,
    Status,
    alert_id,
)
from service.core.batch import BatchResult, process_batch
from service.core.decode import (
    DecodedBatch,
    LambdaBatch,
    Sample,
    decode_records,
    record_from_api,
    records_from_lambda_event,
)
from service.core.detection import Detector
from service.core.records import (
    KinesisRecord,
    ProcessedRecord,
    Reject,
    RejectReason,
    iso_ms,
    padded_sequence,
)
from service.core.state import DeviceState, StateFormatError, decode_state, encode_state

__all__ = [
    "DEFAULT_CONFIG",
    "Alert",
    "AnomalyType",
    "BatchResult",
    "DecodedBatch",
    "DetectionConfig",
    "Detector",
    "DeviceState",
    "KinesisRecord",
    "LambdaBatch",
    "ProcessedRecord",
    "Reject",
    "RejectReason",
    "Sample",
    "Severity",
    "StateFormatError",
    "Status",
    "alert_id",
    "decode_records",
    "decode_state",
    "encode_state",
    "iso_ms",
    "padded_sequence",
    "process_batch",
    "record_from_api",
    "records_from_lambda_event",
]

"""A run's AWS requests per 1,000 records, from the request accounting (``service.runtime.accounting``).

``PerThousand`` divides a run's counts by the records it sent: the demo report's accounting, and what
``vitalstream cost --from-report`` prices. S3 bills PUT, COPY, POST and LIST requests at the PUT price,
DELETE nothing and every other request (GET, HEAD) at the GET price.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from service.runtime.accounting import RequestCounts, calls_in

S3_PUT_TIER = frozenset(
    {
        "PutObject",
        "CopyObject",
        "PostObject",
        "ListObjects",
        "ListObjectsV2",
        "ListObjectVersions",
        "ListBuckets",
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPartCopy",
        "CompleteMultipartUpload",
    }
)
S3_FREE = frozenset({"DeleteObject", "DeleteObjects", "AbortMultipartUpload"})


def s3_tier(operation: str) -> str | None:
    """``"put"``, ``"get"`` or None (free) for an S3 operation."""
    if operation in S3_PUT_TIER:
        return "put"
    return None if operation in S3_FREE else "get"


@dataclass(frozen=True, slots=True)
class PerThousand:
    """Requests by (service, operation) and DynamoDB items by table, per 1,000 records."""

    requests: Mapping[tuple[str, str], float] = field(default_factory=dict)
    item_writes: Mapping[str, float] = field(default_factory=dict)
    item_reads: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, counts: RequestCounts, records: int) -> PerThousand:
        """``counts`` spread over ``records`` records (all zero when there were none)."""
        scale = 1000 / records if records > 0 else 0.0
        return cls(
            {key: n * scale for key, n in counts.requests.items()},
            {table: n * scale for table, n in counts.item_writes.items()},
            {table: n * scale for table, n in counts.item_reads.items()},
        )

    def calls(self, service: str | None = None, operation: str | None = None) -> float:
        return calls_in(self.requests, service, operation)

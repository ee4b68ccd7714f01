"""botocore error inspection and classification by error code and HTTP status, never by message text.

``classify`` sorts a failed AWS call into transient (retrying with back-off can succeed: throttling,
5xx, the network) or permanent (nothing changes until someone changes the deployment: access denied,
a missing resource, a validation error, any other 4xx). ``sink_error`` turns it into the ``SinkError``
the ports promise, which the caller raises ``from`` the SDK's exception.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
)

from service.runtime.ports import Access, Sink, SinkError


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def http_status(exc: ClientError) -> int:
    """The HTTP status of a service answer (0 when the response carries none)."""
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


# What an AWS call can fail with besides a bug: the service's answer, the SDK's own errors, the network.
CALL_ERRORS: tuple[type[Exception], ...] = (ClientError, BotoCoreError, OSError)

# Throttling and server-side codes: transient whatever the status (several come as 400).
TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "Throttled",  # SNS
        "RequestThrottled",  # SQS
        "RequestThrottledException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "TooManyRequestsException",
        "SlowDown",
        "BandwidthLimitExceeded",
        "TransactionInProgressException",
        "KMSThrottlingException",
        "KMSThrottling",
        "KmsThrottled",
        "InternalServerError",
        "InternalServerErrorException",
        "InternalFailure",
        "InternalError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
# Known permanent codes (any other 4xx is permanent too; these are named for readers and for answers
# that carry no status).
PERMANENT_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "AuthorizationError",  # SNS
        "UnauthorizedOperation",
        "UnrecognizedClientException",
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "MissingAuthenticationToken",
        "ValidationException",
        "ValidationError",
        "ResourceNotFoundException",
        "NoSuchBucket",
        "NotFound",  # an SNS topic
        "QueueDoesNotExist",
        "AWS.SimpleQueueService.NonExistentQueue",
        "InvalidParameter",
        "InvalidParameterValue",
        "InvalidParameterException",
        "InvalidParameterValueException",
        "KMSAccessDenied",
        "KMSAccessDeniedException",
        "KMS.AccessDeniedException",
        "KMSDisabled",
        "KMSDisabledException",
        "KMS.DisabledException",
        "KmsAccessDenied",
        "KmsDisabled",
        "KMSInvalidState",
        "KMSInvalidStateException",
        "KMS.KMSInvalidStateException",
        "KMSNotFound",
        "KMSNotFoundException",
        "KMSOptInRequired",
        "AllAccessDisabled",
        "ItemCollectionSizeLimitExceededException",
    }
)
# SDK errors that no retry fixes: no credentials, no region, a request the SDK itself refuses.
PERMANENT_SDK_ERRORS: tuple[type[BotoCoreError], ...] = (
    NoCredentialsError,
    PartialCredentialsError,
    NoRegionError,
    ParamValidationError,
)


@dataclass(frozen=True, slots=True)
class Classified:
    code: str  # the AWS error code, else the exception's type name
    permanent: bool


def classify(exc: BaseException) -> Classified:
    """Transient or permanent, by the answer's error code, then its HTTP status; an SDK or network
    error by its type. An answer with an unknown code and no status counts as transient."""
    if isinstance(exc, ClientError):
        code, status = error_code(exc), http_status(exc)
        if code in TRANSIENT_CODES or status == 429 or status >= 500:
            return Classified(code or str(status), permanent=False)
        permanent = code in PERMANENT_CODES or 400 <= status < 500
        return Classified(code or str(status), permanent=permanent)
    return Classified(type(exc).__name__, permanent=isinstance(exc, PERMANENT_SDK_ERRORS))


def describe(exc: BaseException) -> str:
    """The error code of a service answer, else the exception's type name (for logs and labels)."""
    return error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__


def sink_error(sink: Sink, resource: str, exc: BaseException, access: Access = Access.WRITE) -> SinkError:
    """The ``SinkError`` for ``exc`` (one of ``CALL_ERRORS``) on ``resource``, chained to it: raise it
    ``from exc``, or return it as a partial failure's cause."""
    classified = classify(exc)
    error = SinkError(sink, classified.code, resource, permanent=classified.permanent, access=access)
    error.__cause__ = exc
    return error


@contextmanager
def calling(sink: Sink, resource: str, access: Access = Access.WRITE) -> Iterator[None]:
    """Raise any of ``CALL_ERRORS`` inside the block as ``sink_error(sink, resource, exc, access)``,
    chained."""
    try:
        yield
    except CALL_ERRORS as exc:
        raise sink_error(sink, resource, exc, access) from exc

"""Which AWS errors are worth retrying: throttling, 5xx and dropped connections, by code, whatever the
service (S3's SlowDown, DynamoDB's ProvisionedThroughputExceededException, ...)."""

from __future__ import annotations

from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "InternalError",
        "ServiceUnavailable",
        "RequestTimeout",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "InternalServerError",
    }
)


def is_transient(exc: BaseException) -> bool:
    """True when `exc`, or an error it was raised from or during, is an AWS error a retry can cure
    (boto3's S3UploadFailedError wraps the ClientError of the part that failed)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ClientError):
            error = current.response.get("Error", {})
            status = int(current.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            return error.get("Code") in TRANSIENT_CODES or status >= 500
        if isinstance(current, ConnectionError | HTTPClientError):
            return True
        current = current.__cause__ or current.__context__
    return False

"""Short-lived download links for stored videos: S3 presigned GETs, made without a call to AWS.

A presigned URL works only while the credentials that signed it do: signed with a role's temporary
credentials (a Lambda function's), it dies with their session token, whatever its X-Amz-Expires. So
a link's lifetime is the one asked for, cut to what the signing credentials have left when that is
known (botocore knows it for credentials that carry an expiry: an assumed role, a container or
SnapStart provider, AWS_CREDENTIAL_EXPIRATION); the expiry handed out is the one the link can keep.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kling_pipeline.adapters import aws_clients, per_container

LEAST_LIFETIME_S = 1  # S3's minimum X-Amz-Expires


class VideoLinks:
    def __init__(self, *, ttl_s: int, s3: Any = None) -> None:
        self._s3 = s3 or aws_clients.client("s3", signature_version="s3v4")
        self.ttl_s = ttl_s

    def download_url(self, s3_uri: str) -> tuple[str, str]:
        """(a presigned GET of `s3_uri`, when it expires as UTC ISO 8601)."""
        bucket, _, key = s3_uri.removeprefix("s3://").partition("/")
        url, expires = presigned_get(self._s3, bucket, key, self.ttl_s)
        return url, expires.isoformat(timespec="seconds").replace("+00:00", "Z")


def presigned_get(s3: Any, bucket: str, key: str, ttl_s: int) -> tuple[str, datetime]:
    """A presigned GET of s3://bucket/key and when it stops working: `ttl_s` from now, or sooner when
    the signing credentials expire sooner (a link cannot outlive them)."""
    lifetime = ttl_s
    left = credentials_seconds_left(s3)
    if left is not None:
        lifetime = max(LEAST_LIFETIME_S, min(ttl_s, int(left)))
    now = datetime.now(UTC)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=lifetime)
    return str(url), now + timedelta(seconds=lifetime)


def credentials_seconds_left(s3: Any) -> float | None:
    """Seconds until the credentials `s3` signs with expire; None when they do not say (long-term keys,
    or temporary ones given without an expiry, as Lambda's environment gives them)."""
    # botocore exposes a client's credentials and their expiry only on private attributes; read them
    # defensively, so a botocore that moves them gives "unknown", never an error.
    credentials = getattr(getattr(s3, "_request_signer", None), "_credentials", None)
    if credentials is None or not hasattr(credentials, "_seconds_remaining"):
        return None
    try:
        credentials.get_frozen_credentials()  # refreshes them first when they are about to expire
        left = credentials._seconds_remaining()
    except Exception:  # an unreadable expiry is an unknown one
        return None
    return float(left) if left is not None else None


@per_container
def video_links(ttl_s: int) -> VideoLinks:
    return VideoLinks(ttl_s=ttl_s)

"""Short-lived download links for stored videos: S3 presigned GETs, made without a call to AWS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kling_pipeline.adapters import aws_clients, per_container


class VideoLinks:
    def __init__(self, *, ttl_s: int, s3: Any = None) -> None:
        self._s3 = s3 or aws_clients.client("s3", signature_version="s3v4")
        self.ttl_s = ttl_s

    def download_url(self, s3_uri: str) -> tuple[str, str]:
        """(a presigned GET of `s3_uri`, when it expires as UTC ISO 8601)."""
        bucket, _, key = s3_uri.removeprefix("s3://").partition("/")
        url = self._s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=self.ttl_s)
        expires = datetime.now(UTC) + timedelta(seconds=self.ttl_s)
        return str(url), expires.isoformat(timespec="seconds").replace("+00:00", "Z")


@per_container
def video_links(ttl_s: int) -> VideoLinks:
    return VideoLinks(ttl_s=ttl_s)

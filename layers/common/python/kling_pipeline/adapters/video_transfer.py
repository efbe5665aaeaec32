"""The video transfer: a finished Kling video from its CDN into S3, only from allowed hosts, streamed,
checked, never half-written.

Memory stays at a few multipart parts whatever the video's size: the HTTP body is read in chunks
by boto3's managed transfer (upload_fileobj), hashed and counted on the way through. A failed or
cut stream aborts the multipart upload, so no partial object ever becomes visible.

The whole transfer (DNS included) ends by the current deadline (adapters/deadlines.py: the download
function sets the invocation's remaining time, less a margin to record the outcome): a CDN that
drips the video fails the attempt in time to say so, never the Lambda's timeout.
"""

from __future__ import annotations

import contextvars
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import httpx
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from kling_pipeline.adapters import aws_clients, per_container
from kling_pipeline.adapters.pinned_http import pinned_client, pinned_request
from kling_pipeline.adapters.public_addresses import DownloadPolicy as DownloadPolicy  # the download's policy, here too
from kling_pipeline.adapters.public_addresses import check_url
from kling_pipeline.errors import DownloadRefusedError, TransientDownloadError, VideoLinkRefusedError
from kling_pipeline.redaction import redact, redact_url

MP4_BOX_TYPE = b"ftyp"
MAX_REDIRECTS = 3
PART_SIZE = 8 * 1024 * 1024


@dataclass(frozen=True)
class StoredVideo:
    bucket: str
    key: str
    size: int
    sha256: str
    content_type: str

    @property
    def s3_uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class _HashingReader(io.RawIOBase):
    """A file-like view of the HTTP body for upload_fileobj: checks, counts and hashes as it goes.

    boto3 reads it on a thread of its own: each read runs in the context the reader was made in, so the
    deadline set around the transfer holds for the body too."""

    def __init__(self, chunks: Iterator[bytes], max_bytes: int, expected_size: int | None = None) -> None:
        self._chunks = chunks
        self._context = contextvars.copy_context()
        self._expected_size = expected_size
        self._buffer = b""
        self._max_bytes = max_bytes
        self.size = 0
        self.sha256 = hashlib.sha256()
        self._checked_header = False

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer:
            try:
                chunk = self._context.run(next, self._chunks)
            except StopIteration:
                if not self._checked_header:
                    self._check_header(b"")
                if self._expected_size is not None and self.size != self._expected_size:
                    # Raised before the upload completes, so the short object never becomes visible.
                    raise TransientDownloadError(
                        f"the video stream ended at {self.size} of {self._expected_size} bytes"
                    ) from None
                return 0
            except httpx.HTTPError as exc:
                raise TransientDownloadError(
                    f"the video stream broke after {self.size} bytes: {type(exc).__name__}: {redact(str(exc))}"
                ) from exc
            self._take(chunk)
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n

    def _take(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self._max_bytes:
            raise DownloadRefusedError(
                "VIDEO_TOO_LARGE", f"the video is larger than the {self._max_bytes}-byte limit (MaxVideoBytes)"
            )
        self.sha256.update(chunk)
        self._buffer = chunk
        if not self._checked_header:
            self._check_header(chunk)

    def _check_header(self, first: bytes) -> None:
        self._checked_header = True
        if len(first) < 8 or first[4:8] != MP4_BOX_TYPE:
            raise DownloadRefusedError(
                "NOT_MP4", "the downloaded file is not an MP4 video (no 'ftyp' box at the start)"
            )


def stream_to_s3(
    url: str,
    *,
    bucket: str,
    key: str,
    policy: DownloadPolicy,
    s3: Any,
    metadata: dict[str, str],
    http: httpx.Client | None = None,
) -> StoredVideo:
    """Fetch `url` (following redirects only to allowed hosts) and stream it to s3://bucket/key."""
    # identity: a compressed body would not match Content-Length, and the bytes stored must be the MP4's.
    client = http or pinned_client(
        timeout=httpx.Timeout(policy.timeout_s, connect=10.0), headers={"Accept-Encoding": "identity"}
    )
    try:
        with _open_checked(client, url, policy) as response:
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > policy.max_bytes:
                raise DownloadRefusedError(
                    "VIDEO_TOO_LARGE",
                    f"the video is {declared} bytes, over the {policy.max_bytes}-byte limit (MaxVideoBytes)",
                )
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                # Asked for identity: a compressed body would hold the size cap to the decoded bytes, and
                # what is stored must be the MP4 as Kling made it.
                raise DownloadRefusedError(
                    "ENCODED_BODY",
                    f"the CDN sent the video with Content-Encoding {encoding[:40]}; only identity is stored",
                )
            expected = int(declared) if declared and declared.isdigit() else None
            # The raw bytes as they cross the wire: the size cap holds on what is received.
            reader = _HashingReader(response.iter_raw(1024 * 1024), policy.max_bytes, expected)
            s3.upload_fileobj(
                io.BufferedReader(reader, buffer_size=1024 * 1024),
                bucket,
                key,
                ExtraArgs={"ContentType": "video/mp4", "Metadata": metadata},
                Config=transfer_config(),
            )
    except httpx.HTTPError as exc:
        raise TransientDownloadError(
            f"fetching {redact_url(url)} failed: {type(exc).__name__}: {redact(str(exc), url)}"
        ) from exc
    finally:
        if http is None:
            client.close()
    stored = StoredVideo(bucket, key, reader.size, reader.sha256.hexdigest(), "video/mp4")
    # The object carries its own checksum: if recording it on the job fails, a repair can tell a whole
    # copy from the object alone, without fetching the video from Kling again.
    s3.put_object_tagging(Bucket=bucket, Key=key, Tagging={"TagSet": [{"Key": "sha256", "Value": stored.sha256}]})
    return stored


def transfer_config() -> TransferConfig:
    """Two parts in flight and at most three read ahead: memory stays near 5 x PART_SIZE for any size."""
    config = TransferConfig(
        multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE, max_concurrency=2, use_threads=True
    )
    # s3transfer buffers up to ten parts of a non-seekable stream by default; boto3 does not expose it.
    config.max_in_memory_upload_chunks = 3
    return config


class _open_checked:
    """GET with redirects followed by hand, each hop checked against the policy."""

    def __init__(self, client: httpx.Client, url: str, policy: DownloadPolicy) -> None:
        self._client = client
        self._url = url
        self._policy = policy
        self._response: httpx.Response | None = None

    def __enter__(self) -> httpx.Response:
        url = self._url
        for _ in range(MAX_REDIRECTS + 1):
            target = check_url(url, self._policy)
            response = self._client.send(
                pinned_request(self._client, "GET", target), stream=True, follow_redirects=False
            )
            if response.is_redirect:
                location = response.headers.get("location", "")
                response.close()
                url = urljoin(url, location)
                continue
            if response.status_code in (401, 403, 404, 410):
                response.close()
                # Expired, or not at this edge yet: the caller tells them apart by the task's age.
                raise VideoLinkRefusedError(
                    response.status_code, f"the CDN answered {response.status_code} for {redact_url(url)}"
                )
            if response.status_code >= 400:
                response.close()
                raise TransientDownloadError(f"the CDN answered {response.status_code} for {redact_url(url)}")
            self._response = response
            return response
        raise DownloadRefusedError("TOO_MANY_REDIRECTS", f"more than {MAX_REDIRECTS} redirects from {redact_url(url)}")

    def __exit__(self, *exc: object) -> None:
        if self._response is not None:
            self._response.close()


# What HeadObject / GetObjectTagging answer for a missing key: 404, or 403 to a role without s3:ListBucket.
NOT_STORED_CODES = ("404", "NoSuchKey", "NotFound", "403", "AccessDenied", "Forbidden")


@per_container
def s3_client() -> Any:
    return aws_clients.client("s3")


def stored_video(s3: Any, bucket: str, key: str) -> StoredVideo | None:
    """The object a finished copy left, with the checksum it was tagged with; None when there is none
    (or it has no checksum tag: a copy that did not finish its bookkeeping is not trusted).

    S3 answers a missing key with 403, not 404, to a role that may not s3:ListBucket: a 403 here means
    missing-or-forbidden, and is taken as not stored. The caller then downloads again, which is safe
    (the copy is exactly once per attempt; a forbidden bucket fails that attempt visibly)."""
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
        tags = s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in NOT_STORED_CODES:
            return None
        raise
    sha256 = next((t["Value"] for t in tags if t["Key"] == "sha256"), None)
    if sha256 is None:
        return None
    return StoredVideo(bucket, key, int(head["ContentLength"]), sha256, str(head.get("ContentType", "video/mp4")))

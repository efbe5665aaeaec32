"""Input images where users keep them: read just enough of each to check it, and hand Kling a URL it
can fetch.

- `s3://bucket/key` (only the input bucket: the submit function's IAM policy allows no other) is
  read with a ranged GET for its header and size, and replaced by a presigned GET URL that lives
  `InputUrlLifetimeSeconds`: users never make a bucket public, and Kling never holds a lasting key.
- An https URL is asked for its first bytes (a ranged GET, which also proves it answers) under the
  download's address rules (public_addresses.check_url: allowed hosts, no private addresses, port 443,
  the connection pinned to the checked address, redirects checked hop by hop); Kling gets the URL
  itself.
- Raw base64 was checked when the message was parsed.

Each image is held to Kling's rules (kling_pipeline.images) before any money is spent; a refusal
raises ImageRefusedError naming the field and the rule. A URL that does not answer (refused,
timed out, 4xx, 5xx) is a refusal too, never a retry loop: no money has been spent, and the job
is refused with the reason. S3's own faults (5xx, throttling) are not the image's: they raise as
they are, and SQS delivers the message again, as for any AWS error.
"""

from __future__ import annotations

import contextvars
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urljoin

import httpx
from botocore.exceptions import ClientError

from kling_pipeline.adapters import aws_clients, per_container
from kling_pipeline.adapters.deadlines import within
from kling_pipeline.adapters.pinned_http import pinned_client, pinned_request
from kling_pipeline.adapters.public_addresses import DownloadPolicy, check_url
from kling_pipeline.adapters.video_links import presigned_get
from kling_pipeline.errors import DownloadRefusedError, ImageRefusedError, TransientDownloadError
from kling_pipeline.images import HEADER_BYTES, MAX_IMAGE_BYTES, check_image, image_source, s3_location
from kling_pipeline.redaction import redact, redact_url
from kling_pipeline.requests import JobRequest

IMAGE_TIMEOUT_S = 5.0  # for the whole probe of one image (DNS, connect, redirects, the first bytes)
MAX_REDIRECTS = 3
MAX_PARALLEL = 4  # up to 7 images (omni-video) checked within a few seconds, not 7 timeouts in a row
# S3 answers that are about the object (missing, not ours, empty), not about S3's health.
S3_REFUSALS = frozenset(
    {"NoSuchKey", "NoSuchBucket", "AccessDenied", "InvalidRange", "InvalidObjectState", "403", "404", "416"}
)
_CONTENT_RANGE_TOTAL = re.compile(r"/(\d+)\s*$")


@dataclass(frozen=True)
class InputImagePolicy:
    """Where images may come from: the input bucket (empty: none), how long a presigned URL lives,
    and the URL rules (the download's, with the ImageUrlHosts patterns)."""

    input_bucket: str
    url_lifetime_s: int
    urls: DownloadPolicy

    @classmethod
    def from_settings(
        cls,
        *,
        input_bucket: str,
        url_lifetime_s: int,
        image_url_hosts: str,
        production: bool,
        timeout_s: float = IMAGE_TIMEOUT_S,
    ) -> InputImagePolicy:
        urls = DownloadPolicy.from_setting(image_url_hosts, max_bytes=MAX_IMAGE_BYTES, production=production)
        return cls(input_bucket, url_lifetime_s, replace(urls, timeout_s=timeout_s))


class InputImages:
    """Checks a request's images and gives the references to send Kling (S3 ones presigned)."""

    def __init__(self, policy: InputImagePolicy, s3: Any, http: httpx.Client | None = None) -> None:
        self.policy = policy
        self._s3 = s3
        self._http = http or pinned_client(
            timeout=httpx.Timeout(policy.urls.timeout_s, connect=min(3.0, policy.urls.timeout_s)),
            headers={"Accept-Encoding": "identity", "User-Agent": "kling-pipeline/0.1"},
        )

    def resolve(self, request: JobRequest) -> dict[str, str]:
        """Field -> the reference to send, for every URL and S3 image; raises ImageRefusedError."""
        slots = [(field, value) for field, value in request.image_slots() if image_source(field, value) != "base64"]
        if not slots:
            return {}
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(slots))) as pool:
            # Each probe runs in a copy of this context: the invocation's deadline goes with it.
            sent = list(pool.map(lambda slot: contextvars.copy_context().run(self.resolve_one, *slot), slots))
        return {field: value for (field, _), value in zip(slots, sent, strict=True)}

    def resolve_one(self, field: str, value: str) -> str:
        source = image_source(field, value)
        if source == "s3":
            return self._from_s3(field, value)
        if source == "url":
            self._probe(field, value)
        return value

    # -- S3 ---------------------------------------------------------------------------------------

    def _from_s3(self, field: str, value: str) -> str:
        bucket, key = s3_location(field, value)
        expected = self.policy.input_bucket
        if not expected:
            raise ImageRefusedError(
                field, "input-bucket", "s3:// images need an input bucket (the InputBucketName parameter is empty)"
            )
        if bucket != expected:
            raise ImageRefusedError(
                field,
                "input-bucket",
                f"bucket {bucket} is not the input bucket {expected}; put the image there "
                "(the pipeline may read only the bucket named by InputBucketName)",
            )
        try:
            answer = self._s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{HEADER_BYTES - 1}")
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code not in S3_REFUSALS:
                raise  # S3's own fault: the message is delivered again
            detail = "is empty" if code in ("InvalidRange", "416") else f"cannot be read ({code})"
            raise ImageRefusedError(field, "s3-object", f"s3://{bucket}/{key} {detail}") from None
        with answer["Body"] as body:
            head = body.read(HEADER_BYTES)
        check_image(field, head, _s3_total(answer))
        # Kling fetches it at the create: the link lasts url_lifetime_s, or what the signing credentials have left.
        url, _ = presigned_get(self._s3, bucket, key, self.policy.url_lifetime_s)
        return url

    # -- https ------------------------------------------------------------------------------------

    def _probe(self, field: str, url: str) -> None:
        """Ask for the first bytes, following redirects by hand under the same checks, all of it within
        the policy's timeout (and the invocation's deadline): a host that drips its answer is one that
        did not answer, and the job is refused saying so."""
        with within(self.policy.urls.timeout_s) as given:
            self._probe_within(field, url, given if given is not None else self.policy.urls.timeout_s)

    def _probe_within(self, field: str, url: str, given_s: float) -> None:
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            try:
                target = check_url(current, self.policy.urls, what="image", hosts_parameter="ImageUrlHosts")
            except DownloadRefusedError as exc:
                raise ImageRefusedError(field, "image-url-allowed", exc.message) from None
            except TransientDownloadError as exc:
                raise ImageRefusedError(
                    field, "image-url-answers", f"{redact(str(exc), current)}; Kling could not fetch it"
                ) from None
            request = pinned_request(self._http, "GET", target)
            request.headers["Range"] = f"bytes=0-{HEADER_BYTES - 1}"
            try:
                response = self._http.send(request, stream=True, follow_redirects=False)
            except httpx.HTTPError as exc:
                raise ImageRefusedError(field, "image-url-answers", _no_answer(current, exc, given_s)) from None
            try:
                if response.is_redirect:
                    current = urljoin(current, response.headers.get("location", ""))
                    continue
                if response.status_code not in (200, 206):
                    raise ImageRefusedError(
                        field,
                        "image-url-answers",
                        f"{redact_url(current)} answered HTTP {response.status_code}; Kling fetches the image from "
                        "there, so it must be publicly readable",
                    )
                total = _http_total(response)
                head = _first_bytes(response, field, current, given_s)
            finally:
                response.close()
            check_image(field, head, total)
            return
        raise ImageRefusedError(
            field, "image-url-answers", f"more than {MAX_REDIRECTS} redirects from {redact_url(url)}"
        )


def _first_bytes(response: httpx.Response, field: str, url: str, given_s: float) -> bytes:
    head = b""
    try:
        for chunk in response.iter_raw(64 * 1024):
            head += chunk
            if len(head) >= HEADER_BYTES:
                break
    except httpx.HTTPError as exc:
        raise ImageRefusedError(field, "image-url-answers", _no_answer(url, exc, given_s)) from None
    return head[:HEADER_BYTES]


def _no_answer(url: str, exc: httpx.HTTPError, given_s: float) -> str:
    within_s = f" within {given_s:.3g} s" if isinstance(exc, httpx.TimeoutException) else ""
    return (
        f"{redact_url(url)} did not answer{within_s} ({type(exc).__name__}); Kling fetches the image from there. If "
        "the host was down for a moment, send the job again with a new job_id"
    )


def _s3_total(answer: dict[str, Any]) -> int | None:
    match = _CONTENT_RANGE_TOTAL.search(str(answer.get("ContentRange") or ""))
    if match:
        return int(match.group(1))
    length = answer.get("ContentLength")
    return int(length) if isinstance(length, int) else None


def _http_total(response: httpx.Response) -> int | None:
    if response.status_code == 206:
        match = _CONTENT_RANGE_TOTAL.search(response.headers.get("content-range", ""))
        return int(match.group(1)) if match else None
    length = response.headers.get("content-length", "")
    return int(length) if length.isdigit() else None


@per_container
def input_images(
    input_bucket: str, url_lifetime_s: int, image_url_hosts: str, production: bool, timeout_s: float = IMAGE_TIMEOUT_S
) -> InputImages:
    """One per container; presigned URLs are signed by the function's own role."""
    policy = InputImagePolicy.from_settings(
        input_bucket=input_bucket,
        url_lifetime_s=url_lifetime_s,
        image_url_hosts=image_url_hosts,
        production=production,
        timeout_s=timeout_s,
    )
    return InputImages(policy, signing_s3_client())


@per_container
def signing_s3_client() -> Any:
    """S3 for input images: SigV4, which presigned URLs need (and the only signature S3 takes now)."""
    return aws_clients.client("s3", signature_version="s3v4")

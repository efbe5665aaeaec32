"""`submit --image FILE`: local image files checked and uploaded to the input bucket."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from kling_local.connection import PipelineConnection
from kling_local.terminal import UsageError
from kling_pipeline.images import HEADER_BYTES, check_image, s3_location

IMAGE_FILE_SUFFIXES = (".png", ".jpg", ".jpeg")


UPLOAD_PREFIX = "uploads"


class InputImages:
    """A job's images as the pipeline takes them, checked before anything is sent: a local file is
    checked with Kling's rules and uploaded to the input bucket (referred to as s3://), an s3:// image
    must be in the input bucket and pass the same rules, a URL must be https. The submit function
    checks them again; these checks only spare a job that would fail a moment later in the DLQ."""

    def __init__(self, connection: Callable[[], PipelineConnection], base: Path, *, flags: bool) -> None:
        self._connection = connection  # called when first needed: a job of URLs needs no pipeline
        self._base = base  # a jobs file's paths are relative to the file
        self._flags = flags
        self._uploads: dict[str, tuple[str, str, bytes, str]] = {}  # s3 uri -> bucket, key, data, type

    def placed(self, job: dict[str, Any], number: int) -> dict[str, Any]:
        placed = dict(job)
        for field in ("image", "image_tail", "static_mask"):
            if isinstance(job.get(field), str):
                placed[field] = self._place(self._label(number, field), job[field])
        if isinstance(job.get("image_list"), list):
            items = []
            for index, item in enumerate(job["image_list"]):
                label = self._label(number, f"image_list[{index}]")
                if isinstance(item, str):
                    item = self._place(label, item)
                elif isinstance(item, dict) and isinstance(item.get("image"), str):
                    item = item | {"image": self._place(label, item["image"])}
                items.append(item)
            placed["image_list"] = items
        return placed

    def _label(self, number: int, field: str) -> str:
        if self._flags:
            return "--image" if field.startswith("image_list") else f"--{field.replace('_', '-')}"
        return f"job {number}: {field}"

    def upload(self) -> None:
        if not self._uploads:
            return
        s3 = self._connection().client("s3")
        for bucket, key, data, content_type in self._uploads.values():
            s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)

    def _place(self, label: str, value: str) -> str:
        lowered = value[:16].lower()
        if lowered.startswith("http://"):
            raise UsageError(f"{label} {value}: an image URL must be https:// (Kling fetches it itself)")
        if lowered.startswith("https://") or value.startswith("data:"):
            return value  # the host is checked by the submit function; data: is refused by validation
        if lowered.startswith("s3://"):
            self._check_in_input_bucket(label, value)
            return value
        path = Path(value).expanduser()
        path = path if path.is_absolute() else self._base / path
        if path.is_file():
            return self._file(label, value, path)
        if value.lower().endswith(IMAGE_FILE_SUFFIXES) or value.startswith(("./", "../", "~", "/")):
            raise UsageError(f"{label} {value}: no such file")
        return value  # raw base64, checked by validation

    def _input_bucket(self, label: str, value: str, what: str) -> str:
        connection: PipelineConnection = self._connection()
        if not connection.input_bucket:
            raise UsageError(
                f"{label} {value}: {what} the input bucket, and this pipeline has none: deploy it with "
                "InputBucketName=YOUR-BUCKET (or give --input-bucket), or give an https URL"
            )
        return connection.input_bucket

    def _check_in_input_bucket(self, label: str, value: str) -> None:
        bucket, key = s3_location(label, value)
        input_bucket = self._input_bucket(label, value, "s3:// images come from")
        if bucket != input_bucket:
            raise UsageError(
                f"{label} {value}: s3:// images come from the input bucket, {input_bucket}; put it there, or "
                "give the image's file (the CLI uploads it)"
            )
        try:
            answer = (
                self._connection().client("s3").get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{HEADER_BYTES - 1}")
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NoSuchBucket"):
                raise UsageError(f"{label} {value}: no such object in {bucket}") from None
            raise
        total = str(answer.get("ContentRange", "")).rpartition("/")[2]
        check_image(f"{label} {value}", answer["Body"].read(), int(total) if total.isdigit() else None)

    def _file(self, label: str, value: str, path: Path) -> str:
        data = path.read_bytes()
        info = check_image(f"{label} {value}", data[:HEADER_BYTES], len(data))
        bucket = self._input_bucket(label, value, "a file is uploaded to")
        name = "".join(c if c.isalnum() or c in "._-" else "-" for c in path.name)
        key = f"{UPLOAD_PREFIX}/{hashlib.sha256(data).hexdigest()[:16]}/{name}"
        uri = f"s3://{bucket}/{key}"
        self._uploads[uri] = (bucket, key, data, "image/png" if info.format == "PNG" else "image/jpeg")
        return uri

"""Kling's rules for input images, and how an image is referred to in a job request.

An image (`image`, `image_tail`, `image_list` items, motion-brush masks) is an https URL, raw base64,
or `s3://bucket/key` in the input bucket. Kling refuses a bad image only after the request reached
it, and a refused request is still a round trip, so the pipeline checks every image before any
money is spent: its type by content (Pillow reads the header only), its size, its short side and
its aspect ratio. Base64 images are checked when the message is parsed; URL and S3 images by the
submit function (adapters/input_images.py fetches the header), with these same rules.

Every refusal names the field and the rule (`ImageRefusedError`).
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from dataclasses import dataclass
from typing import Literal

from kling_pipeline.errors import ImageRefusedError

MAX_IMAGE_BYTES = 10 * 1024 * 1024
MIN_SIDE_PX = 300
MIN_ASPECT = 1 / 2.5
MAX_ASPECT = 2.5
# Enough for Pillow to find the dimensions of a JPEG behind its EXIF and ICC blocks, or of a PNG.
HEADER_BYTES = 256 * 1024
IMAGE_FORMATS = ("JPEG", "PNG")
KLING_RULES = "Kling's image rules, docs/kling-contract.md image2video, checked 2026-11-23"
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")
_S3_URI = re.compile(r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(.+)$")

ImageSource = Literal["url", "s3", "base64"]


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int


def image_source(field: str, value: str) -> ImageSource:
    """Which of the three forms an image reference is; refuses anything else, naming the field."""
    if value.startswith("data:"):
        raise ImageRefusedError(
            field, "image-form", "send the image as a URL or raw base64 without the 'data:...;base64,' prefix"
        )
    lowered = value[:16].lower()
    if lowered.startswith(("https://", "http://")):
        return "url"
    if lowered.startswith("s3://"):
        s3_location(field, value)
        return "s3"
    if "://" in lowered:
        raise ImageRefusedError(field, "image-form", "an image URL must be https:// (or s3://bucket/key)")
    if len(value) % 4 or not _BASE64.match(value):
        raise ImageRefusedError(field, "image-form", "is neither an https URL, an s3://bucket/key URI nor raw base64")
    return "base64"


def s3_location(field: str, value: str) -> tuple[str, str]:
    """(bucket, key) of an `s3://bucket/key` reference."""
    match = _S3_URI.match(value)
    if match is None:
        raise ImageRefusedError(field, "image-form", "an S3 image is s3://bucket/key (a bucket name, then the key)")
    return match.group(1), match.group(2)


def check_base64_image(field: str, value: str) -> ImageInfo:
    """Decode a raw base64 image and apply Kling's rules to it."""
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ImageRefusedError(field, "image-form", "is not valid base64") from None
    return check_image(field, data[:HEADER_BYTES], len(data))


def check_image(field: str, head: bytes, total_bytes: int | None) -> ImageInfo:
    """Kling's rules on an image's first bytes and its size (None when the server did not say)."""
    if total_bytes is not None and total_bytes > MAX_IMAGE_BYTES:
        raise ImageRefusedError(
            field, "image-bytes", f"is {total_bytes} bytes; Kling takes images of at most 10 MB", KLING_RULES
        )
    info = read_header(head)
    if info is None:
        raise ImageRefusedError(field, "image-type", "is not a JPEG or PNG image (by its content)", KLING_RULES)
    if min(info.width, info.height) < MIN_SIDE_PX:
        raise ImageRefusedError(
            field,
            "image-min-side",
            f"is {info.width}x{info.height} px; Kling needs {MIN_SIDE_PX} px or more on the short side",
            KLING_RULES,
        )
    if not MIN_ASPECT <= info.width / info.height <= MAX_ASPECT:
        raise ImageRefusedError(
            field,
            "image-aspect-ratio",
            f"is {info.width}x{info.height} px; Kling takes aspect ratios from 1:2.5 to 2.5:1",
            KLING_RULES,
        )
    return info


def read_header(head: bytes) -> ImageInfo | None:
    """Format and size from the header alone (Pillow opens lazily and decodes no pixels here)."""
    # Imported here: only requests with images pay for Pillow's import.
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(head), formats=IMAGE_FORMATS) as image:
                width, height = image.size
                return ImageInfo(str(image.format), int(width), int(height))
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError):
        return None

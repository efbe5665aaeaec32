"""Kling's image rules, by content (Pillow reads the header only): each refusal names the field and
the rule. Raw base64 images are held to them when the message is parsed."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from kling_pipeline.errors import ImageRefusedError
from kling_pipeline.images import HEADER_BYTES, check_image, image_source, read_header
from kling_pipeline.requests import JobRequest
from tests.unit.test_capabilities import refusal


def picture(width: int, height: int, image_format: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), "teal").save(out, format=image_format)
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "total", "rule", "says"),
    [
        (b"GIF89a" + b"\0" * 100, None, "image-type", "not a JPEG or PNG"),
        (picture(400, 400, "GIF"), None, "image-type", "not a JPEG or PNG"),
        (picture(400, 400, "WEBP"), None, "image-type", "not a JPEG or PNG"),
        (picture(640, 299), None, "image-min-side", "640x299 px"),
        (picture(1000, 390), None, "image-aspect-ratio", "1:2.5 to 2.5:1"),
        (picture(390, 1000, "JPEG"), None, "image-aspect-ratio", "1:2.5 to 2.5:1"),
        (picture(640, 360), 10 * 1024 * 1024 + 1, "image-bytes", "at most 10 MB"),
    ],
)
def test_each_image_rule_refuses_naming_the_field_and_the_rule(
    data: bytes, total: int | None, rule: str, says: str
) -> None:
    with pytest.raises(ImageRefusedError) as info:
        check_image("image_list[2]", data[:HEADER_BYTES], total)
    assert info.value.rule == rule
    assert str(info.value).startswith("image_list[2]: ") and str(info.value).endswith(f"(rule {rule})")
    assert says in str(info.value)


def test_a_good_image_is_read_from_its_header_alone() -> None:
    data = picture(1280, 720, "JPEG")
    info = check_image("image", data[:2048], len(data))
    assert (info.format, info.width, info.height) == ("JPEG", 1280, 720)
    assert read_header(data[:16]) is None  # too little to know: refused as not an image, never a crash


@pytest.mark.parametrize(
    ("value", "source"),
    [
        ("https://example.com/a.png", "url"),
        ("http://127.0.0.1:8766/samples/640x360.png", "url"),
        ("s3://my-inputs/folder/a.png", "s3"),
        (base64.b64encode(b"abc").decode(), "base64"),
    ],
)
def test_an_image_is_a_url_an_s3_uri_or_raw_base64(value: str, source: str) -> None:
    assert image_source("image", value) == source


def test_a_base64_image_is_checked_when_the_message_is_parsed() -> None:
    small = base64.b64encode(picture(200, 200)).decode()
    message = refusal(kind="image2video", image=small)
    assert message == (
        "invalid job request: image: is 200x200 px; Kling needs 300 px or more on the short side (rule image-min-side)"
    )
    good = base64.b64encode(picture(640, 360)).decode()
    assert JobRequest.model_validate({"kind": "image2video", "image": good}).image == good
    assert "image_list.1.image: " in refusal(kind="multi-image2video", prompt="p", image_list=[good, small])
    assert "rule image-form" in refusal(kind="image2video", image="not base64!")

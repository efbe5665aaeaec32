"""Image URLs fetched at the create, as Kling does: an image Kling cannot fetch, or that breaks its
rules, refuses the create with 1201 naming the field. Runs before the simulator takes its lock (the
URL may be the simulator's own CDN), and only with `fetch_image_urls` on (the local stack turns it
on; a bare simulator does not reach out to hosts it was not pointed at)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from kling_local.sim.errors import invalid
from kling_local.sim.validation import MAX_IMAGE_BYTES, check_image_bytes

FETCH_TIMEOUT_S = 5.0


def image_urls(kind: str, body: Any) -> list[tuple[str, str]]:
    """(field, url) of every image given as an http(s) URL in a create body."""
    if not isinstance(body, dict):
        return []
    found: list[tuple[str, Any]] = [(name, body.get(name)) for name in ("image", "image_tail", "static_mask")]
    item_key = "image_url" if kind == "omni-video" else "image"
    for i, item in enumerate(body.get("image_list") or [] if isinstance(body.get("image_list"), list) else []):
        if isinstance(item, dict):
            found.append((f"image_list[{i}].{item_key}", item.get(item_key)))
    for i, item in enumerate(body.get("dynamic_masks") or [] if isinstance(body.get("dynamic_masks"), list) else []):
        if isinstance(item, dict):
            found.append((f"dynamic_masks[{i}].mask", item.get("mask")))
    for i, item in enumerate(body.get("contents") or [] if isinstance(body.get("contents"), list) else []):
        if isinstance(item, dict):  # the newer design's frames and elements
            found.append((f"contents[{i}].image", item.get("image")))
    return [
        (field, value)
        for field, value in found
        if isinstance(value, str) and urlsplit(value).scheme in ("http", "https") and urlsplit(value).netloc
    ]


def fetch_images(kind: str, body: Any, record: Any) -> dict[str, tuple[int, int]]:
    """url -> (width, height) for each image URL; raises SimApiError (1201) for one that fails.
    `record(url, ok)` counts each fetch in the simulator's stats."""
    sizes: dict[str, tuple[int, int]] = {}
    for field, url in image_urls(kind, body):
        if url in sizes:
            continue
        try:
            with httpx.Client(timeout=FETCH_TIMEOUT_S, follow_redirects=True, max_redirects=3) as client:
                response = client.get(url)
        except httpx.HTTPError as exc:
            record(url, ok=False)
            raise invalid(f"{field}: the image could not be fetched ({type(exc).__name__})") from None
        if response.status_code != 200:
            record(url, ok=False)
            raise invalid(f"{field}: the image could not be fetched (HTTP {response.status_code})")
        try:
            sizes[url] = check_image_bytes(field, response.content[: MAX_IMAGE_BYTES + 1])
        except Exception:
            record(url, ok=False)
            raise
        record(url, ok=True)
    return sizes


def describe_fetch(url: str) -> dict[str, Any]:
    """What the stats keep of a fetched URL: where, and whether it was presigned (never the signature)."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    return {"host": parts.netloc, "path": parts.path, "signed": "X-Amz-Signature" in query}

"""Bytes the simulator serves or inspects: result videos made on the fly, sample images, image sniffing.

A result video is, by default, a real MP4 clip a person can play (`clip_mp4`): a few seconds at a
small size showing the prompt, the model and the task id, as long as the task asked and in its
aspect ratio, encoded with PyAV (FFmpeg's libraries, bundled in its wheel; the same library the
tests decode them with). With `video_size_bytes` set it is instead a synthetic body, an `ftyp` box,
an `mdat` box header and deterministic filler, produced chunk by chunk from any offset, so a 2 GB
video costs one 64 KiB block of memory (the streaming benchmarks).
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import struct
import textwrap
import zlib
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

FTYP_BOX = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
BLOCK_SIZE = 64 * 1024
HTML_BODY = (
    b"<!DOCTYPE html>\n<html><head><title>Service Unavailable</title></head>"
    b"<body><h1>Service Unavailable</h1><p>The edge node could not fetch the object.</p></body></html>\n"
)


def video_prefix(total_size: int) -> bytes:
    """The `ftyp` box plus an `mdat` header covering the rest (64-bit size past 4 GiB)."""
    rest = total_size - len(FTYP_BOX)
    if rest < 16:
        return FTYP_BOX[:total_size]
    if rest < 2**32:
        return FTYP_BOX + struct.pack(">I4s", rest, b"mdat")
    return FTYP_BOX + struct.pack(">I4sQ", 1, b"mdat", rest)


@lru_cache(maxsize=16)
def _filler_block(seed: str) -> bytes:
    """64 KiB of pseudo-random bytes derived from the task id (cheap, cached for a few tasks)."""
    key = seed.encode()
    return b"".join(hashlib.sha256(key + i.to_bytes(4, "big")).digest() for i in range(BLOCK_SIZE // 32))


def iter_video(seed: str, total_size: int, start: int = 0, end: int | None = None) -> Iterator[bytes]:
    """Bytes [start, end) of the video for `seed`, in chunks of at most 64 KiB."""
    end = total_size if end is None else min(end, total_size)
    prefix = video_prefix(total_size)
    pos = start
    if pos < len(prefix):
        head = prefix[pos : min(len(prefix), end)]
        yield head
        pos += len(head)
    if pos >= end:
        return
    block = memoryview(_filler_block(seed))
    while pos < end:
        offset = (pos - len(prefix)) % BLOCK_SIZE
        n = min(BLOCK_SIZE - offset, end - pos)
        yield bytes(block[offset : offset + n])
        pos += n


def video_sha256(seed: str, total_size: int) -> str:
    """SHA-256 of the synthetic video `iter_video` serves for `seed`: what a copy of it must hash to."""
    digest = hashlib.sha256()
    for chunk in iter_video(seed, total_size):
        digest.update(chunk)
    return digest.hexdigest()


def image_info(data: bytes) -> tuple[str, int, int] | None:
    """(format, width, height) of a PNG or JPEG, or None if it is neither (or is truncated)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return "png", width, height
    if data.startswith(b"\xff\xd8"):
        return _jpeg_info(data)
    return None


_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_info(data: bytes) -> tuple[str, int, int] | None:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _SOF_MARKERS:
            if pos + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return "jpeg", width, height
        pos += 2 + length
    return None


def png_bytes(width: int = 512, height: int = 512) -> bytes:
    """A valid grey PNG of the given size (tests and demos need images Kling would accept)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def png_base64(width: int = 512, height: int = 512) -> str:
    """`png_bytes` as raw base64, the form Kling takes (no `data:` prefix)."""
    return base64.b64encode(png_bytes(width, height)).decode("ascii")


# -- playable clips -------------------------------------------------------------------------------

CLIP_SIZES = {"16:9": (320, 180), "9:16": (180, 320), "1:1": (240, 240)}
CLIP_FPS = 10
ASPECT_RATIOS = {"16:9": 16 / 9, "9:16": 9 / 16, "1:1": 1.0}


@dataclass(frozen=True)
class ClipSpec:
    """What a result clip shows; equal specs make the same bytes (cached)."""

    task_id: str
    kind: str
    model: str
    prompt: str
    seconds: float
    aspect_ratio: str
    sound: bool = False  # the task asked for sound (`sound: "on"`): an AAC track, a soft chord


def nearest_aspect_ratio(width: int, height: int) -> str:
    """The output aspect ratio an input image of this size gives (Kling: the image decides)."""
    ratio = width / height
    return min(ASPECT_RATIOS, key=lambda name: abs(ASPECT_RATIOS[name] - ratio))


@lru_cache(maxsize=64)
def clip_mp4(spec: ClipSpec) -> bytes:
    """An H.264 MP4 of `spec.seconds` at 10 fps: the task's facts in text, a moving bar and a clock.
    Cheap (tens of milliseconds for 5 s): the frames are a still card plus a bar, at 320x180 or so."""
    # Imported here: only the simulator's CDN needs them, and only in clip mode.
    import av
    from PIL import Image, ImageDraw, ImageFont

    width, height = CLIP_SIZES.get(spec.aspect_ratio, CLIP_SIZES["16:9"])
    frames = max(1, round(spec.seconds * CLIP_FPS))
    font = ImageFont.load_default(size=11)
    card = Image.new("RGB", (width, height), _background(spec.task_id))
    draw = ImageDraw.Draw(card)
    columns = max(16, width // 7)
    lines = [
        "Kling simulator",
        f"{spec.model} | {spec.kind}",
        f"task {spec.task_id}",
        "",
        *textwrap.wrap(spec.prompt or "(no prompt)", columns)[: max(1, (height - 90) // 14)],
    ]
    draw.multiline_text((8, 8), "\n".join(lines), fill=(255, 255, 255), font=font, spacing=3)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=CLIP_FPS, options={"preset": "ultrafast", "crf": "28"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream("aac", rate=CLIP_AUDIO_RATE, layout="mono") if spec.sound else None
        for index in range(frames):
            frame = card.copy()
            paint = ImageDraw.Draw(frame)
            x = (width - 24) * index // max(1, frames - 1)
            paint.rectangle((x, height - 18, x + 24, height - 8), fill=(255, 196, 0))
            paint.text((width - 54, height - 34), f"{index / CLIP_FPS:5.1f}s", fill=(255, 255, 255), font=font)
            for packet in stream.encode(av.VideoFrame.from_image(frame)):  # type: ignore[no-untyped-call]
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if audio is not None:
            _mux_audio(container, audio, spec.seconds)
    return buffer.getvalue()


CLIP_AUDIO_RATE = 22_050
AAC_FRAME = 1024  # samples per AAC frame


def _mux_audio(container: Any, audio: Any, seconds: float) -> None:
    """An AAC track as long as the clip: a quiet two-note chord, so a player shows (and plays) sound."""
    import av

    total = round(seconds * CLIP_AUDIO_RATE)
    for start in range(0, total, AAC_FRAME):
        count = min(AAC_FRAME, total - start)
        wave = array(
            "h",
            (
                round(4000 * (math.sin(2 * math.pi * 440 * t) + math.sin(2 * math.pi * 660 * t)))
                for t in ((start + i) / CLIP_AUDIO_RATE for i in range(count))
            ),
        )
        frame = av.AudioFrame(format="s16", layout="mono", samples=count)
        frame.planes[0].update(wave.tobytes())
        frame.sample_rate, frame.pts = CLIP_AUDIO_RATE, start
        for packet in audio.encode(frame):
            container.mux(packet)
    for packet in audio.encode():
        container.mux(packet)


def _background(seed: str) -> tuple[int, int, int]:
    digest = hashlib.sha256(seed.encode()).digest()
    return (20 + digest[0] % 40, 30 + digest[1] % 50, 60 + digest[2] % 60)


# -- sample images --------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def sample_image(width: int, height: int, image_format: str = "png") -> bytes:
    """A picture for demos and tests (a gradient, a sun, its size written on it), PNG or JPEG."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    draw = ImageDraw.Draw(image)
    radius = min(width, height) // 6
    draw.ellipse((width // 2 - radius, height // 3 - radius, width // 2 + radius, height // 3 + radius), fill="orange")
    draw.text((10, 10), f"sample {width}x{height}", fill="white", font=ImageFont.load_default(size=18))
    out = io.BytesIO()
    image.save(out, format="JPEG" if image_format in ("jpg", "jpeg") else "PNG")
    return out.getvalue()

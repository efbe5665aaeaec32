"""The result CDN: streamed MP4s, ranges, signed expiring URLs and its fault knobs."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from kling_local.sim import make_token

FTYP = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"


def _video_url(api, **fields) -> str:
    data = api.wait_terminal("text2video", api.create_ok(**fields))
    assert data["task_status"] == "succeed"
    return str(data["task_result"]["videos"][0]["url"])


def _download(url: str, client: httpx.Client | None = None, **kwargs) -> tuple[httpx.Response, int, bytes, str]:
    """Stream a URL; return (response, byte count, first 64 bytes, sha256)."""
    digest = hashlib.sha256()
    head = b""
    count = 0
    with (client or httpx).stream("GET", url, timeout=30, **kwargs) as response:
        for chunk in response.iter_raw(1 << 20):
            if len(head) < 64:
                head += chunk[: 64 - len(head)]
            count += len(chunk)
            digest.update(chunk)
    return response, count, head, digest.hexdigest()


def test_streams_a_20_mb_mp4(make_sim, make_api):
    size = 20 * 1024 * 1024
    sim = make_sim(video_size_bytes=size)
    url = _video_url(make_api(sim))
    response, count, head, digest = _download(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    assert int(response.headers["content-length"]) == size
    assert count == size
    assert head.startswith(FTYP)
    assert head[28:32] == b"mdat"
    assert int.from_bytes(head[24:28], "big") == size - len(FTYP)
    # The same video hashes the same on every download.
    assert _download(url)[3] == digest
    cdn = sim.stats()["cdn"]
    assert cdn["downloads_started"] == 2
    assert cdn["downloads_completed"] == 2
    assert cdn["bytes_sent"] == 2 * size


def test_different_tasks_have_different_bytes(api):
    assert _download(_video_url(api))[3] != _download(_video_url(api))[3]


def test_range_and_head(api):
    url = _video_url(api)
    full = httpx.get(url, timeout=10).content
    partial = httpx.get(url, headers={"Range": "bytes=10-99"}, timeout=10)
    assert partial.status_code == 206
    assert partial.headers["content-range"] == f"bytes 10-99/{len(full)}"
    assert partial.content == full[10:100]
    tail = httpx.get(url, headers={"Range": "bytes=-16"}, timeout=10)
    assert tail.content == full[-16:]
    assert httpx.get(url, headers={"Range": f"bytes={len(full)}-"}, timeout=10).status_code == 416
    head = httpx.head(url, timeout=10)
    assert head.status_code == 200
    assert int(head.headers["content-length"]) == len(full)
    assert head.content == b""


def test_result_urls_expire(make_sim, make_api, wait):
    # 2000 simulated seconds at speed 1000: the URL works for about 2 s.
    sim = make_sim(url_lifetime_s=2000.0)
    url = _video_url(make_api(sim))
    first = httpx.get(url, timeout=10)
    assert first.status_code == 200
    expired = wait(lambda: (r := httpx.get(url, timeout=10)).status_code != 200 and r, timeout=20, what="expiry")
    assert expired.status_code in (403, 404)
    assert sim.stats()["cdn"]["refused"] >= 1


def test_a_result_can_be_refused_for_its_first_seconds_then_served(make_sim, make_api, wait):
    # An edge still propagating (or a WAF): the good URL answers the chosen 4xx at first, then the video.
    sim = make_sim(cdn_not_ready_s=1.5, cdn_not_ready_status=403)
    url = _video_url(make_api(sim))
    assert httpx.get(url, timeout=10).status_code == 403
    served = wait(lambda: (r := httpx.get(url, timeout=10)).status_code == 200 and r, timeout=20, what="the edge")
    assert served.content[4:8] == b"ftyp"
    assert sim.stats()["cdn"]["not_ready"] >= 1 and sim.stats()["faults"]["cdn_not_ready"] >= 1


def test_tampered_or_missing_pkey_is_403(api):
    url = _video_url(api)
    parts = urlsplit(url)
    pkey = re.search(r"pkey=([^&]+)", parts.query).group(1)
    forged = pkey[:-2] + ("AA" if pkey[-2:] != "AA" else "BB")
    assert httpx.get(url.replace(pkey, forged), timeout=10).status_code == 403
    assert httpx.get(urlunsplit(parts._replace(query="x-kcdn-pid=112757")), timeout=10).status_code == 403
    # A pkey signed for another path does not open this one.
    other = urlsplit(_video_url(api))
    assert httpx.get(urlunsplit(parts._replace(query=other.query)), timeout=10).status_code == 403


def test_unknown_paths_and_methods_on_the_cdn(api, sim):
    url = _video_url(api)
    assert (
        httpx.get(
            f"{sim.cdn_base_url}/bs2/upload-kling-api/1/text2video/nope-0_raw_video_1.mp4", timeout=10
        ).status_code
        == 404
    )
    assert httpx.get(f"{sim.cdn_base_url}/", timeout=10).status_code == 404
    assert httpx.post(url, content=b"x", timeout=10).status_code == 405
    sim.reset()
    assert httpx.get(url, timeout=10).status_code == 404


def test_video_extend_needs_an_unexpired_source(make_sim, make_api, wait):
    sim = make_sim(url_lifetime_s=500.0)
    api = make_api(sim)
    video = api.wait_terminal("text2video", api.create_ok())["task_result"]["videos"][0]
    wait(lambda: httpx.get(video["url"], timeout=10).status_code != 200, what="expiry")
    refused = api.create("video-extend", {"video_id": video["id"]})
    assert refused.json()["code"] == 1201
    assert "expired" in refused.json()["message"]


def test_cdn_drop_cuts_the_body(make_sim, make_api):
    sim = make_sim(cdn_drop_rate=1.0, cdn_drop_after_bytes=1000, video_size_bytes=1_000_000)
    url = _video_url(make_api(sim))
    received = 0
    with pytest.raises(httpx.RemoteProtocolError), httpx.stream("GET", url, timeout=10) as response:
        assert int(response.headers["content-length"]) == 1_000_000
        for chunk in response.iter_raw():
            received += len(chunk)
    assert received == 1000
    assert sim.stats()["cdn"]["downloads_dropped"] == 1


def test_cdn_drop_rate_is_a_share(make_sim, make_api):
    sim = make_sim(cdn_drop_rate=0.5, cdn_drop_after_bytes=100, seed=8)
    url = _video_url(make_api(sim))
    dropped = 0
    with httpx.Client() as client:
        for _ in range(40):
            try:
                _download(url, client)
            except httpx.RemoteProtocolError:
                dropped += 1
    assert 8 <= dropped <= 32
    assert sim.stats()["cdn"]["downloads_dropped"] == dropped


def test_cdn_redirect(api, sim):
    url = _video_url(api)
    sim.configure(cdn_redirect_url="https://evil.example.net/video.mp4")
    response = httpx.get(url, timeout=10, follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == "https://evil.example.net/video.mp4"
    assert sim.stats()["cdn"]["redirected"] == 1


def test_cdn_html_body(api, sim):
    url = _video_url(api)
    sim.configure(cdn_body="html")
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.content.startswith(b"<!DOCTYPE html")
    assert b"ftyp" not in response.content
    # A CDN that lies about the type: only a content check catches it.
    sim.configure(cdn_content_type="video/mp4")
    lying = httpx.get(url, timeout=10)
    assert lying.headers["content-type"] == "video/mp4"
    assert lying.content.startswith(b"<!DOCTYPE html")


def test_cdn_host_goes_into_result_urls(api, sim):
    sim.configure(cdn_host="localhost")
    url = _video_url(api)
    assert urlsplit(url).hostname == "localhost"
    assert urlsplit(url).port == sim.cdn_port
    assert sim.cdn_base_url == f"http://localhost:{sim.cdn_port}"


def _rss_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{field} not found")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc to read the RSS")
def test_streams_1_gb_with_flat_memory():
    """A 1 GB video through a simulator in its own process: its peak RSS barely moves."""
    size = 1024 * 1024 * 1024
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kling_local.cli",
            "sim",
            "--port",
            "0",
            "--access-key",
            "ak",
            "--secret-key",
            "sk",
            "--speed",
            "1000",
            "--generation-min-s",
            "1",
            "--generation-max-s",
            "1",
            "--video-size-bytes",
            str(size),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        base_url = re.search(r"ready at (\S+)", line).group(1)
        api = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {make_token('ak', 'sk')}"})
        task_id = api.post("/v1/videos/text2video", json={"prompt": "big"}).json()["data"]["task_id"]
        deadline = time.monotonic() + 30
        while (data := api.get(f"/v1/videos/text2video/{task_id}").json()["data"])["task_status"] != "succeed":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        url = data["task_result"]["videos"][0]["url"]
        _download(url, headers={"Range": "bytes=0-1048575"})  # warm up code paths
        before_kb = _rss_kb(proc.pid, "VmRSS")
        with contextlib.suppress(OSError), open(f"/proc/{proc.pid}/clear_refs", "w") as clear:
            clear.write("5")  # reset VmHWM so the peak below is this download's
        response, count, head, _ = _download(url)
        peak_kb = _rss_kb(proc.pid, "VmHWM")
        assert response.status_code == 200
        assert count == size
        assert head.startswith(FTYP)
        print(f"simulator RSS before {before_kb} kB, peak after {peak_kb} kB")
        assert (peak_kb - before_kb) < 64 * 1024, f"RSS grew by {(peak_kb - before_kb) // 1024} MB"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0

"""Which video URLs the download function fetches: allowed https hosts only, never internal addresses."""

import pytest

from kling_local.stack.template_loader import load_template, parameter_defaults
from kling_pipeline.adapters.public_addresses import DownloadPolicy, check_url
from kling_pipeline.errors import DownloadRefusedError
from tests.support.template import ROOT

PRODUCTION = DownloadPolicy.from_setting("*.klingai.com,*.kechuangai.com", max_bytes=10**9, production=True)


@pytest.mark.parametrize(
    "url",
    [
        "https://cdn.klingai.com/bs2/upload-kling-api/1/text2video/x-0_raw_video_1.mp4?x-kcdn-pid=1&pkey=2",
        "https://v15-kling.klingai.com/a.mp4",
        "https://s21-kling.kechuangai.com/a.mp4",
    ],
)
def test_kling_cdn_hosts_pass_the_host_check(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # No network here: make the name resolve to a public address, as it does on AWS.
    monkeypatch.setattr("socket.getaddrinfo", lambda *a, **k: [(2, 1, 6, "", ("13.32.0.1", 443))])
    check_url(url, PRODUCTION)


def template_default() -> DownloadPolicy:
    hosts = parameter_defaults(load_template(ROOT / "template.yaml"))["AllowedDownloadHosts"]
    return DownloadPolicy.from_setting(str(hosts), max_bytes=10**9, production=True)


@pytest.mark.parametrize(
    "url",
    [
        "https://v3.fal.media/files/rabbit/YYbm6L.mp4",  # fal's CDN (docs.fal.ai, "fal CDN")
        "https://v3b.fal.media/files/b/0aad8e98/output.mp4",
        "https://fal.media/files/elephant/output.mp4",
        "https://cdn.klingai.com/bs2/a.mp4",
    ],
)
def test_the_templates_default_takes_fals_media_cdn(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.getaddrinfo", lambda *a, **k: [(2, 1, 6, "", ("13.32.0.1", 443))])
    check_url(url, template_default())


@pytest.mark.parametrize(
    "url", ["https://fal.media.evil.example/a.mp4", "https://evilfal.media/a.mp4", "https://queue.fal.run/a.mp4"]
)
def test_look_alikes_of_fals_media_hosts_are_refused_by_the_templates_default(url: str) -> None:
    with pytest.raises(DownloadRefusedError) as info:
        check_url(url, template_default())
    assert info.value.code == "URL_NOT_ALLOWED" and "AllowedDownloadHosts" in info.value.message


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://cdn.klingai.com/a.mp4", "https"),
        ("https://evil.example.com/a.mp4", "allow-list"),
        ("https://klingai.com.evil.example/a.mp4", "allow-list"),
        ("https://169.254.169.254/latest/meta-data/", "IP address"),
        ("https://127.0.0.1/a.mp4", "IP address"),
        ("https://[::1]/a.mp4", "IP address"),
        ("https://10.0.0.8/a.mp4", "IP address"),
        ("ftp://cdn.klingai.com/a.mp4", "https"),
        ("https:///a.mp4", "no host"),
    ],
)
def test_hostile_urls_are_refused(url: str, words: str) -> None:
    with pytest.raises(DownloadRefusedError) as info:
        check_url(url, PRODUCTION)
    assert info.value.code == "URL_NOT_ALLOWED"
    assert words in info.value.message


@pytest.mark.parametrize("address", ["127.0.0.1", "169.254.169.254", "10.1.2.3", "192.168.0.5", "::1"])
def test_allowed_name_resolving_inward_is_refused_in_production(address: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.getaddrinfo", lambda *a, **k: [(2, 1, 6, "", (address, 443))])
    with pytest.raises(DownloadRefusedError, match="non-public"):
        check_url("https://cdn.klingai.com/a.mp4", PRODUCTION)


def test_local_http_hosts_work_only_outside_production() -> None:
    local = DownloadPolicy.from_setting("*.klingai.com,http://127.0.0.1:8766", max_bytes=10**9, production=False)
    check_url("http://127.0.0.1:8766/bs2/v.mp4", local)
    with pytest.raises(DownloadRefusedError):
        check_url("http://127.0.0.1:9999/bs2/v.mp4", local)  # another port is another host
    strict = DownloadPolicy.from_setting("*.klingai.com,http://127.0.0.1:8766", max_bytes=10**9, production=True)
    assert strict.local_http_hosts == ()
    with pytest.raises(DownloadRefusedError):
        check_url("http://127.0.0.1:8766/bs2/v.mp4", strict)


def test_refusal_messages_do_not_leak_cdn_signatures() -> None:
    with pytest.raises(DownloadRefusedError) as info:
        check_url("http://cdn.klingai.com/a.mp4?pkey=SECRET-SIGNATURE", PRODUCTION)
    assert "SECRET-SIGNATURE" not in info.value.message


def test_a_local_http_entry_with_any_port_allows_that_host_only_outside_production() -> None:
    # Given `local up --kling-url http://127.0.0.1:8765` (a simulator run alone, whose CDN port is its own)
    local = DownloadPolicy.from_setting("*.klingai.com,http://127.0.0.1:*", max_bytes=10**9, production=False)
    # Then any port of that loopback host is fetched over http, and no other host
    check_url("http://127.0.0.1:8766/bs2/v.mp4", local)
    for refused in ("http://localhost:8766/v.mp4", "http://127.0.0.2:8766/v.mp4", "http://10.0.0.1:8766/v.mp4"):
        with pytest.raises(DownloadRefusedError):
            check_url(refused, local)
    # And in production the entry means nothing
    strict = DownloadPolicy.from_setting("*.klingai.com,http://127.0.0.1:*", max_bytes=10**9, production=True)
    with pytest.raises(DownloadRefusedError):
        check_url("http://127.0.0.1:8766/bs2/v.mp4", strict)

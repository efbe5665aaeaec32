"""What each answer to a fal create proves, and what the client sends (fal's side played by an
httpx.MockTransport: the answers no simulator knob gives, and the exact request on the wire)."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from kling_pipeline.adapters.fal_client import FalClient
from kling_pipeline.errors import (
    ProviderCreateUnsettledError,
    ProviderRefusedError,
    ProviderUnavailableError,
)
from kling_pipeline.providers import TaskRef

BASE = "https://queue.fal.run"
MODEL = "fal-ai/kling-video/v3/pro/text-to-video"
WEBHOOK = "https://api.example/callbacks/job-1?token=sekrit"
HANDLE = {
    "request_id": "req-1",
    "status_url": f"{BASE}/fal-ai/kling-video/requests/req-1/status",
    "response_url": f"{BASE}/fal-ai/kling-video/requests/req-1",
    "cancel_url": f"{BASE}/fal-ai/kling-video/requests/req-1/cancel",
    "queue_position": 4,
}


def client(
    answer: Callable[[httpx.Request], httpx.Response], seen: list[httpx.Request], **options: object
) -> FalClient:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    return FalClient("the-key", queue_base_url=BASE, transport=httpx.MockTransport(handler), **options)  # type: ignore[arg-type]


def test_the_create_sends_the_key_the_webhook_and_the_retention_and_leaves_fals_retries_on() -> None:
    seen: list[httpx.Request] = []
    ref = client(lambda r: httpx.Response(200, json=HANDLE), seen, result_retention_s=86400).create(
        MODEL, {"prompt": "p", "duration": "5"}, webhook_url=WEBHOOK
    )
    sent = seen[0]
    assert (sent.method, sent.url.path) == ("POST", f"/{MODEL}")
    assert sent.url.params["fal_webhook"] == WEBHOOK
    assert sent.headers["authorization"] == "Key the-key"
    assert json.loads(sent.headers["x-fal-object-lifecycle-preference"]) == {"expiration_duration_seconds": 86400}
    assert "x-fal-no-retry" not in sent.headers
    assert json.loads(sent.content) == {"prompt": "p", "duration": "5"}
    assert (ref.id, ref.queue_position, ref.urls["cancel_url"]) == ("req-1", 4, HANDLE["cancel_url"])


def test_fals_own_retries_can_be_turned_off() -> None:
    seen: list[httpx.Request] = []
    client(lambda r: httpx.Response(200, json=HANDLE), seen, fal_retries=False).create(MODEL, {}, webhook_url=WEBHOOK)
    assert seen[0].headers["x-fal-no-retry"] == "1"


@pytest.mark.parametrize(
    ("answer", "raised"),
    [
        (httpx.Response(429, json={"detail": "rate limited"}), ProviderUnavailableError),
        (httpx.Response(422, json={"detail": [{"loc": ["body", "prompt"], "msg": "required"}]}), ProviderRefusedError),
        (httpx.Response(502, text="<html>bad gateway</html>"), ProviderCreateUnsettledError),
        (httpx.Response(200, text="not json"), ProviderCreateUnsettledError),
        (httpx.Response(200, json={"status_url": HANDLE["status_url"]}), ProviderCreateUnsettledError),
        # Handles on another host: our key would go there with every look-up
        (
            httpx.Response(200, json=HANDLE | {"status_url": "https://elsewhere.example/s"}),
            ProviderCreateUnsettledError,
        ),
    ],
)
def test_what_each_create_answer_proves(answer: httpx.Response, raised: type[Exception]) -> None:
    with pytest.raises(raised) as caught:
        client(lambda r: answer, []).create(MODEL, {}, webhook_url=WEBHOOK)
    assert "sekrit" not in str(caught.value)


def test_a_stored_url_off_fals_queue_is_never_sent_our_key() -> None:
    seen: list[httpx.Request] = []
    ref = TaskRef("fal", "req-1", MODEL, {**HANDLE, "status_url": "https://elsewhere.example/status"})  # type: ignore[arg-type]
    with pytest.raises(ProviderUnavailableError):
        client(lambda r: httpx.Response(200, json={"status": "IN_QUEUE"}), seen).look_up(ref)
    assert seen == []

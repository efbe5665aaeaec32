"""Message parsing and the backpressure delay of the submit path (no AWS needed)."""

import random

import pytest

from kling_pipeline.claims import backpressure_delay
from kling_pipeline.errors import InvalidJobMessageError
from kling_pipeline.requests import parse_job_message


def test_job_id_defaults_to_the_sqs_message_id() -> None:
    request = parse_job_message('{"prompt": "a cat"}', "0f1e2d3c-aaaa-bbbb-cccc-111122223333")
    assert request.job_id == "0f1e2d3c-aaaa-bbbb-cccc-111122223333"


def test_producer_job_id_wins() -> None:
    assert parse_job_message('{"prompt": "a cat", "job_id": "order-42"}', "m-1").job_id == "order-42"


def test_malformed_json_names_the_problem_and_keeps_the_message_id() -> None:
    with pytest.raises(InvalidJobMessageError) as info:
        parse_job_message("{not json", "m-1")
    assert "not JSON" in info.value.reason
    assert info.value.job_id == "m-1"


def test_non_object_body_is_refused() -> None:
    with pytest.raises(InvalidJobMessageError, match="JSON object"):
        parse_job_message("[1, 2]", "m-1")


def test_invalid_field_is_named_with_the_producer_job_id() -> None:
    with pytest.raises(InvalidJobMessageError) as info:
        parse_job_message('{"prompt": "a cat", "job_id": "j-9", "duration": "7"}', "m-1")
    assert "duration" in info.value.reason
    assert info.value.job_id == "j-9"


def test_backpressure_delay_grows_with_jitter_and_is_capped() -> None:
    rng = random.Random(1)
    delays = [[backpressure_delay(n, base_s=2, max_s=60, rng=rng) for _ in range(50)] for n in range(8)]
    assert all(1 <= d <= 2 for d in delays[0])
    assert all(8 <= d <= 16 for d in delays[3])
    assert max(delays[7]) <= 60
    assert len(set(delays[5])) > 1  # jittered, so a throttled batch spreads out
    assert min(delays[7]) >= 30

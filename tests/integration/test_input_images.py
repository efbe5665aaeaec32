"""Input images where users keep them, checked before any money is spent: S3 objects read for their
header in moto and handed to Kling presigned; https URLs asked over real HTTP (the simulator's CDN
serves sample images) under the download's address rules. A refused image fails the job on the
existing rejection path: FAILED with INVALID_REQUEST, the message in the DLQ with the reason."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from kling_local.sim import KlingSimulator
from kling_local.sim.media import sample_image
from kling_pipeline.adapters.input_images import InputImagePolicy, InputImages, signing_s3_client
from kling_pipeline.errors import ImageRefusedError
from kling_pipeline.lifecycle import JobState
from kling_pipeline.requests import JobRequest
from tests.support.scenarios import Completion, Pipeline

INPUTS = "user-inputs"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def s3(pipeline: Pipeline) -> Any:
    client = signing_s3_client()
    for bucket in (INPUTS, "someone-elses"):
        client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=INPUTS, Key="ok/portrait.png", Body=sample_image(720, 1280, "png"))
    client.put_object(Bucket=INPUTS, Key="small.jpg", Body=sample_image(320, 200, "jpg"))
    client.put_object(Bucket=INPUTS, Key="notes.txt", Body=b"not an image at all, just words" * 20)
    client.put_object(Bucket="someone-elses", Key="a.png", Body=sample_image(640, 360))
    return client


@pytest.fixture
def images(s3: Any, kling_sim: KlingSimulator) -> Iterator[InputImages]:
    hosts = f"*,{kling_sim.cdn_base_url},http://127.0.0.1:{DEAD_PORT}"
    policy = InputImagePolicy.from_settings(
        input_bucket=INPUTS, url_lifetime_s=600, image_url_hosts=hosts, production=False
    )
    yield InputImages(policy, s3)


DEAD_PORT = closed_port()


def image_job(image: str) -> JobRequest:
    return JobRequest.model_validate({"kind": "image2video", "image": image, "prompt": "it moves"})


def test_an_s3_image_is_checked_by_its_header_and_handed_to_kling_presigned(images: InputImages) -> None:
    # When an image2video request's S3 image is resolved
    sent = images.resolve(image_job(f"s3://{INPUTS}/ok/portrait.png"))
    # Then Kling gets a presigned GET of that object, short-lived, and nothing public
    parts = urlsplit(sent["image"])
    query = parse_qs(parts.query)
    assert f"{parts.netloc}{parts.path}".endswith(f"{INPUTS}.s3.amazonaws.com/ok/portrait.png")
    assert query["X-Amz-Expires"] == ["600"] and "X-Amz-Signature" in query


def test_a_sample_url_image_passes_and_is_sent_as_is(images: InputImages, kling_sim: KlingSimulator) -> None:
    url = f"{kling_sim.cdn_base_url}/samples/1280x720.jpg"
    request = JobRequest.model_validate(
        {"kind": "multi-image2video", "prompt": "p", "image_list": [url, f"s3://{INPUTS}/ok/portrait.png"]}
    )
    sent = images.resolve(request)
    assert sent["image_list[0]"] == url
    assert "X-Amz-Signature" in sent["image_list[1]"]


@pytest.mark.parametrize(
    ("image", "rule", "says"),
    [
        ("s3://someone-elses/a.png", "input-bucket", "is not the input bucket user-inputs"),
        (f"s3://{INPUTS}/missing.png", "s3-object", "cannot be read (NoSuchKey)"),
        (f"s3://{INPUTS}/small.jpg", "image-min-side", "320x200 px"),
        (f"s3://{INPUTS}/notes.txt", "image-type", "not a JPEG or PNG"),
        ("{cdn}/samples/200x900.png", "image-min-side", "200x900 px"),
        ("{cdn}/samples/1300x500.png", "image-aspect-ratio", "1300x500 px"),
        ("{cdn}/bs2/upload-kling-api/1/image2video/nothing.png", "image-url-answers", "answered HTTP 404"),
        (f"http://127.0.0.1:{DEAD_PORT}/a.png", "image-url-answers", "did not answer (ConnectError)"),
        ("http://images.example.com/a.png", "image-url-allowed", "only https image URLs are fetched"),
    ],
)
def test_each_image_refusal_names_the_field_and_the_rule(
    images: InputImages, kling_sim: KlingSimulator, image: str, rule: str, says: str
) -> None:
    with pytest.raises(ImageRefusedError) as info:
        images.resolve(image_job(image.replace("{cdn}", kling_sim.cdn_base_url)))
    assert info.value.field == "image" and info.value.rule == rule
    assert says in str(info.value)


@pytest.mark.parametrize(
    ("image", "says"),
    [
        ("https://127.0.0.1/a.png", "IP address hosts are not fetched"),
        ("https://localhost/a.png", "resolves to a non-public address"),
        ("https://images.example.com:8443/a.png", "only port 443"),
        ("s3://user-inputs/ok/portrait.png", "InputBucketName parameter is empty"),
    ],
)
def test_in_production_private_addresses_are_refused_before_any_request(s3: Any, image: str, says: str) -> None:
    # Given production rules and no input bucket
    policy = InputImagePolicy.from_settings(input_bucket="", url_lifetime_s=600, image_url_hosts="*", production=True)
    # When the image is resolved, Then it is refused without a connection to the address
    with pytest.raises(ImageRefusedError, match=says):
        InputImages(policy, s3).resolve(image_job(image))


def test_a_refused_image_fails_the_job_and_dead_letters_its_message(pipeline: Pipeline, s3: Any) -> None:
    # Given the submit function with an input bucket, and a job whose S3 image is too small
    handler = pipeline.submit_handler(INPUT_BUCKET=INPUTS)
    pipeline.send({"job_id": "tiny-image", "kind": "image2video", "image": f"s3://{INPUTS}/small.jpg"})
    # When the message is delivered
    pipeline.drain(handler, lambda: len(pipeline.dead_letters()) == 1)
    # Then the job is FAILED as an invalid request naming the field and the rule, before any Kling call
    job = pipeline.store.get("tiny-image")
    assert job.state is JobState.FAILED and job.error_code == "INVALID_REQUEST"
    assert "image: is 320x200 px" in (job.error_message or "") and "rule image-min-side" in (job.error_message or "")
    (dead,) = pipeline.dead_letters()
    assert "rule image-min-side" in dead["MessageAttributes"]["failure_reason"]["StringValue"]
    assert pipeline.sim.stats()["creates"]["accepted"] == 0


def test_a_refused_image_is_announced_and_its_waiting_caller_told_once(completion: Completion, s3: Any) -> None:
    pipeline = completion.pipeline
    sfn = boto3.client("stepfunctions")
    # Given a Step Functions caller waiting on a job whose S3 image is too small
    execution = pipeline.caller_waiting_for(
        {"job_id": "tiny-announced", "kind": "image2video", "image": f"s3://{INPUTS}/small.jpg"}
    )
    handler = pipeline.submit_handler(INPUT_BUCKET=INPUTS)
    # When the submit function reads it and refuses the image
    pipeline.drain(handler, lambda: sfn.describe_execution(executionArn=execution)["status"] != "RUNNING")
    # Then the end is announced like every other (a webhook hangs on this event), naming the refusal
    (event,) = completion.events()
    assert event["detail-type"] == "Video Failed"
    assert (event["detail"]["state"], event["detail"]["error_code"]) == ("FAILED", "INVALID_REQUEST")
    # And the caller was resumed with the refusal, and the job keeps no token to tell it again
    assert sfn.describe_execution(executionArn=execution)["status"] == "FAILED"
    job = pipeline.store.get("tiny-announced")
    assert job.state is JobState.FAILED and job.task_token is None
    assert "task_token" not in pipeline.stored_attributes("tiny-announced")

"""`kling-pipeline dlq --redrive`: a redriven message stays the same job, and never becomes a new one."""

from __future__ import annotations

import json

import pytest

from kling_local.commands.dlq import NotRedriven, redrive_body


def test_redrive_keeps_the_job_id_of_a_message_that_had_none() -> None:
    dead = {
        "MessageId": "m-1",
        "Body": json.dumps({"prompt": "x"}),
        "MessageAttributes": {"job_id": {"StringValue": "m-0", "DataType": "String"}},
    }
    assert json.loads(redrive_body(dead)) == {"prompt": "x", "job_id": "m-0"}
    assert json.loads(redrive_body({"MessageId": "m-1", "Body": '{"prompt": "x"}'}))["job_id"] == "m-1"
    kept = {"MessageId": "m-1", "Body": json.dumps({"prompt": "x", "job_id": "mine"})}
    assert json.loads(redrive_body(kept))["job_id"] == "mine"


@pytest.mark.parametrize("body", ["<empty>", "{broken", "[1, 2]", '"text"'])
def test_a_body_that_is_no_request_is_never_sent_as_it_is(body: str) -> None:
    # Given a dead letter whose body is no JSON object and whose message names no job
    dead = {"MessageId": "m-1", "Body": body}
    # When it is redriven, Then it is refused with why (sent, it would become a FAILED job of a new message id)
    with pytest.raises(NotRedriven, match="not a JSON object and names no job"):
        redrive_body(dead)


def test_a_body_that_is_no_request_of_a_named_job_goes_back_as_a_reference_to_that_job() -> None:
    # Given a parked job's dead letter whose body was lost (an earlier version dead-lettered it empty)
    dead = {
        "MessageId": "m-1",
        "Body": "<empty>",
        "MessageAttributes": {"job_id": {"StringValue": "stuck-job", "DataType": "String"}},
    }
    # When it is redriven, Then it names that job, whose request the submit path reads from its record
    assert json.loads(redrive_body(dead)) == {"job_id": "stuck-job", "resume": True}

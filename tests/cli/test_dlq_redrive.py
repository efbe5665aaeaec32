"""`kling-pipeline dlq --redrive`: a redriven message stays the same job."""

from __future__ import annotations

import json

from kling_local.operator import redrive_body


def test_redrive_keeps_the_job_id_of_a_message_that_had_none() -> None:
    dead = {
        "MessageId": "m-1",
        "Body": json.dumps({"prompt": "x"}),
        "MessageAttributes": {"job_id": {"StringValue": "m-0", "DataType": "String"}},
    }
    assert json.loads(redrive_body(dead)) == {"prompt": "x", "job_id": "m-0"}
    assert json.loads(redrive_body({"MessageId": "m-1", "Body": '{"prompt": "x"}'}))["job_id"] == "m-1"
    assert redrive_body({"MessageId": "m-1", "Body": "{broken"}) == "{broken"
    kept = {"MessageId": "m-1", "Body": json.dumps({"prompt": "x", "job_id": "mine"})}
    assert json.loads(redrive_body(kept))["job_id"] == "mine"

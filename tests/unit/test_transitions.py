"""A decision about a job is one Transition value, and the job store's write is exactly that value
(plus what every transition writes: adapters.job_store.transition_write)."""

from typing import Any

import pytest

from kling_pipeline.adapters.job_store import UNLOGGED_ATTR, TransitionWrite, transition_write
from kling_pipeline.claims import claim
from kling_pipeline.errors import InvalidTransitionError
from kling_pipeline.lifecycle import LEASE, Job, JobState, Transition


def make_job(state: JobState, **fields: object) -> Job:
    return Job.model_validate(
        {
            "job_id": "j1",
            "state": state,
            "version": 3,
            "kind": "text2video",
            "request": {"prompt": "x"},
            "created_at": "2026-01-01T00:00:00.000Z",
            "updated_at": "2026-01-01T00:00:00.000Z",
        }
        | fields
    )


def write_of(job: Job, move: Transition) -> tuple[dict[str, Any], list[str], TransitionWrite]:
    """The decision's attributes the write sets (by name, with its unlogged move), those it removes, and the write."""
    write = transition_write(job, move, now="2026-01-02T00:00:00.000Z", expires_at=0)
    sets, _, removes = write.update_expression.removeprefix("SET ").partition(" REMOVE ")
    assigned: dict[str, Any] = {}
    for clause in sets.split(", "):
        target, _, value = clause.partition(" = ")
        if target.startswith("#c"):
            assigned[write.names[target]] = write.values[value]
        elif target == UNLOGGED_ATTR:
            assigned[target] = write.values[value]
    return assigned, [write.names[r] for r in removes.split(", ")] if removes else [], write


def test_a_move_the_lifecycle_does_not_allow_cannot_even_be_decided() -> None:
    with pytest.raises(InvalidTransitionError):
        Transition(JobState.COMPLETED, JobState.QUEUED, by="test")


def test_a_decision_made_on_a_job_in_another_state_is_not_written() -> None:
    # Given a decision made on the job as QUEUED, and the job as SUBMITTING
    move = Transition(JobState.QUEUED, JobState.FAILED, {"error_code": "X"}, by="test")
    # Then the store builds no write for it
    with pytest.raises(InvalidTransitionError):
        transition_write(make_job(JobState.SUBMITTING), move, now="2026-01-02T00:00:00.000Z", expires_at=0)


def test_a_decision_that_does_not_say_who_made_it_is_not_written() -> None:
    with pytest.raises(ValueError, match="who made it"):
        transition_write(
            make_job(JobState.QUEUED), Transition(JobState.QUEUED, JobState.FAILED), now="2026-01-02", expires_at=0
        )


def test_the_write_is_the_decision_its_changes_removals_counters_and_unlogged_note() -> None:
    # Given a backpressure decision: clear a field, drop the lease, count a cycle, not logged
    job = make_job(JobState.SUBMITTING, lease_owner="w", lease_expires_at=9, held_for="budget")
    move = Transition(
        JobState.SUBMITTING,
        JobState.QUEUED,
        {"held_for": None, "next_poll_at": 5},
        "busy",
        by="submit",
        remove=LEASE,
        add={"backpressure_count": 1},
        logged=False,
    )
    # When the store builds its write
    assigned, removed, write = write_of(job, move)
    # Then it sets what the decision sets, removes what it removes, adds its counter, and keeps its note unlogged
    assert assigned == {
        "next_poll_at": 5,
        UNLOGGED_ATTR: {"state": "QUEUED", "at": "2026-01-02T00:00:00.000Z", "by": "submit", "note": "busy"},
    }
    assert set(removed) == {"lease_owner", "lease_expires_at", "held_for"}
    assert "#a0 = if_not_exists(#a0, :zero) + :a0" in write.update_expression
    assert write.names["#a0"] == "backpressure_count" and write.values[":a0"] == 1
    assert "history" not in write.update_expression


def test_a_claim_is_decided_with_its_lease_and_an_expired_one_is_reconciled() -> None:
    # Given a QUEUED job, and a SUBMITTING job whose lease (claimed at 100) has expired
    queued = make_job(JobState.QUEUED)
    abandoned = make_job(JobState.SUBMITTING, lease_owner="gone", lease_expires_at=150, claimed_at=100)
    # When each is claimed at 200 for 60 s
    first = claim(queued, owner="me", lease_s=60, now=200)
    again = claim(abandoned, owner="me", lease_s=60, now=200)
    # Then both move to SUBMITTING held by "me" until 260, counting an attempt
    for move in (first, again):
        assert move.to_state is JobState.SUBMITTING and move.by == "submit"
        assert move.changes["lease_owner"] == "me" and move.changes["lease_expires_at"] == 260
        assert move.add == {"submit_attempts": 1}
    # And only the abandoned one is marked for reconciliation from its earlier claim, saying why
    assert "needs_reconcile" not in first.changes and first.note is None
    assert again.changes["needs_reconcile"] is True and again.changes["unsettled_since"] == 100
    assert again.note == "re-claimed after the lease of gone expired"

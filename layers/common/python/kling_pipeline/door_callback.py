"""A provider's callback (POST /callbacks/{job_id}/{provider}?token=...): our URL token first, then the
provider's own check, acted on through the one lifecycle (lifecycle.advance_job) as the Kling callback is.

- **Signed** doors (fal: ED25519 over fal's JWKS; Replicate: Standard Webhooks with the account's secret)
  are verified by the client's `read_callback`; one that does not verify is 401 and changes nothing.
  De-duplicated on the provider's key (fal's request_id, Replicate's webhook-id). What a signed callback
  says is acted on; an answer that proves nothing (fal's ERROR, or OK without a video) is read back once.
- **Unsigned** doors (AceData): the token in the URL is all that is checked, the body is a hint naming a
  task, and the task is read back (`look_up`: AceData's retrieve) before anything is done; a callback
  that lies (says succeed while the task runs, or names another URL) moves nothing the read-back does not.
- A job whose create was unsettled (no task id recorded) adopts the task the callback names: the URL
  carries our token for this job, and only one create was ever sent for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kling_pipeline.adapters.callback_tokens import verify_job_token
from kling_pipeline.callback import BY, MAX_CALLBACK_BYTES, CallbackAnswer, CallbackDependencies, answered
from kling_pipeline.door_submit import as_kling_task, observed_changes
from kling_pipeline.doors import DOORS, PROVIDER_TASK, UNSETTLED_AT, Door, door_of, task_ref
from kling_pipeline.errors import ProviderNotEnabledError, ProviderSignatureError, ProviderUnavailableError
from kling_pipeline.job_ids import is_valid_job_id
from kling_pipeline.lifecycle import AWAITING_KLING, JobState, advance_job
from kling_pipeline.observability import Metric, logger, record
from kling_pipeline.providers import CallbackEvent, ProviderTask


def handle_door_callback(
    provider: str,
    job_id: str,
    token: str | None,
    raw_body: str | bytes | None,
    deps: CallbackDependencies,
    headers: Mapping[str, str] | None = None,
) -> CallbackAnswer:
    """Everything a provider's callback endpoint does; never raises for anything a caller sent."""
    door = DOORS.get(provider)
    if door is None:
        answer = CallbackAnswer(404, {"message": f"no provider {provider[:40]}"})
    else:
        answer = answer_door_callback(door, job_id, token, raw_body, deps, headers or {})
    record(Metric.CALLBACKS, status=str(answer.status))
    return answer


def answer_door_callback(
    door: Door,
    job_id: str,
    token: str | None,
    raw_body: str | bytes | None,
    deps: CallbackDependencies,
    headers: Mapping[str, str],
) -> CallbackAnswer:
    if not verify_job_token(deps.signing_secrets, job_id, token):
        logger.warning("provider callback refused: bad or missing token", extra={"job_id": job_id[:80]})
        return CallbackAnswer(401, {"message": "invalid or missing callback token"})
    job = deps.store.find(job_id) if is_valid_job_id(job_id) else None
    if job is None or door_of(job) is not door:
        return CallbackAnswer(404, {"message": f"no {door.name} job {job_id[:80]}"})
    logger.set_correlation_id(job_id)
    body = raw_body.encode("utf-8", "surrogatepass") if isinstance(raw_body, str) else (raw_body or b"")
    if len(body) > MAX_CALLBACK_BYTES:
        return CallbackAnswer(413, {"message": f"callback body over {MAX_CALLBACK_BYTES} bytes"})
    try:
        event: CallbackEvent = deps.door(door.name).read_callback(body, headers)
    except (ProviderSignatureError, ProviderNotEnabledError) as exc:
        logger.warning("provider callback refused", extra={"provider": door.name, "reason": str(exc)[:300]})
        return CallbackAnswer(401, {"message": f"invalid {door.name} callback"})
    ref = task_ref(job)
    if ref is not None and ref.id != event.task.id:
        return answered(job, f"not this job's {door.label} task")
    if ref is None and job.provider_unsettled_at is None:
        # The create's answer is being recorded right now (or, Replicate, the job is being reconciled by
        # listing): the provider sends again on a non-2xx.
        return CallbackAnswer(409, {"message": f"the job's {door.label} task is not recorded yet; send again"})
    seen = f"{door.name}:{event.dedup_key}"
    if event.signed and not deps.store.remember_callback(job.job_id, seen):
        return answered(job, f"duplicate {door.label} callback ({event.dedup_key[:60]} seen before)")
    try:
        return apply_door_callback(door, job_id, event, deps)
    except BaseException:
        if event.signed:
            deps.store.forget_callback(job.job_id, seen)  # the provider's redelivery will be handled
        raise


def apply_door_callback(door: Door, job_id: str, event: CallbackEvent, deps: CallbackDependencies) -> CallbackAnswer:
    job = deps.store.get(job_id)
    if job.state is JobState.DOWNLOADING:
        deps.workflow.start(job)
        return answered(job, "download already under way")
    if job.state not in AWAITING_KLING:
        return answered(job, "nothing to do")
    client = deps.door(door.name)
    said = event.task
    ref = task_ref(job)
    adopting: dict[str, Any] = {}
    if ref is None:
        ref = door.adopt(job, said, deps)
        adopting = {"task_id": ref.id, PROVIDER_TASK: ref.as_record(), UNSETTLED_AT: None}
        logger.info("unsettled create settled by its callback", extra={"provider": door.name, "task_id": ref.id})
    task: ProviderTask | None = said
    if not event.signed or said.status == "unknown":
        try:
            task = client.look_up(ref)  # once: an answer that proves nothing is for the poller
        except ProviderUnavailableError as exc:
            logger.info("task not readable yet; left for the poller", extra={"error": str(exc)[:300]})
            task = None
    observed = None
    if task is not None:
        observed = as_kling_task(task, client.charge(ref, door.charge_arguments(job), task))
    if observed is None:
        if adopting:
            observed = as_kling_task(ProviderTask(said.provider, ref.id, "running"))
            assert observed is not None
            moved, _ = advance_job(job, observed, deps, by=BY, record_also=adopting)
            return answered(moved, "task adopted; its result is left for the poller")
        return answered(job, "result not readable yet: left for the poller")
    assert task is not None
    moved, action = advance_job(job, observed, deps, by=BY, record_also=adopting | observed_changes(task))
    return answered(moved, action)

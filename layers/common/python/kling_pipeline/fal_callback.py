"""fal's webhook (POST /callbacks/{job_id}/fal?token=...): our URL token, then fal's ED25519 signature
(adapters/fal_signatures.py via FalClient.read_callback), de-duplicated on fal's request_id, acted on
through the one lifecycle (lifecycle.advance_job) as the Kling callback is.

- A webhook that does not verify is 401 and changes nothing (never a 5xx for what a caller sent).
- OK with a video: DOWNLOADING with no status query (zero queries per completed video).
- ERROR, or OK without a video: the result is fetched once (FalClient.look_up): 422 is Kling's refusal
  through fal (FAILED, with fal's detail); a 5xx/504 is left for the poller, which asks again.
- A job whose create was unsettled (no request id recorded) adopts the request the webhook names: the
  URL carries our token for this job, and only one create was ever sent for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kling_pipeline.adapters.callback_tokens import verify_job_token
from kling_pipeline.callback import BY, MAX_CALLBACK_BYTES, CallbackAnswer, CallbackDependencies, answered
from kling_pipeline.errors import ProviderSignatureError, ProviderUnavailableError
from kling_pipeline.fal_door import (
    PROVIDER_TASK,
    UNSETTLED_AT,
    FalNotEnabledError,
    adopted_ref,
    as_kling_task,
    charge_arguments,
    is_fal,
    task_ref,
    unsettled_since,
)
from kling_pipeline.job_ids import is_valid_job_id
from kling_pipeline.lifecycle import AWAITING_KLING, JobState, advance_job
from kling_pipeline.observability import Metric, logger, record
from kling_pipeline.providers import ProviderTask


def handle_fal_callback(
    job_id: str,
    token: str | None,
    raw_body: str | bytes | None,
    deps: CallbackDependencies,
    headers: Mapping[str, str] | None = None,
) -> CallbackAnswer:
    """Everything the fal webhook endpoint does; never raises for anything a caller sent."""
    answer = answer_fal_callback(job_id, token, raw_body, deps, headers or {})
    record(Metric.CALLBACKS, status=str(answer.status))
    return answer


def answer_fal_callback(
    job_id: str, token: str | None, raw_body: str | bytes | None, deps: CallbackDependencies, headers: Mapping[str, str]
) -> CallbackAnswer:
    if not verify_job_token(deps.signing_secrets, job_id, token):
        logger.warning("fal webhook refused: bad or missing token", extra={"job_id": job_id[:80]})
        return CallbackAnswer(401, {"message": "invalid or missing callback token"})
    job = deps.store.find(job_id) if is_valid_job_id(job_id) else None
    if job is None or not is_fal(job):
        return CallbackAnswer(404, {"message": f"no fal job {job_id[:80]}"})
    logger.set_correlation_id(job_id)
    body = raw_body.encode("utf-8", "surrogatepass") if isinstance(raw_body, str) else (raw_body or b"")
    if len(body) > MAX_CALLBACK_BYTES:
        return CallbackAnswer(413, {"message": f"callback body over {MAX_CALLBACK_BYTES} bytes"})
    try:
        fal = deps.fal()
        event = fal.read_callback(body, headers)
    except (ProviderSignatureError, FalNotEnabledError) as exc:
        logger.warning("fal webhook refused: bad signature", extra={"reason": str(exc)[:300]})
        return CallbackAnswer(401, {"message": "invalid fal webhook signature"})
    ref = task_ref(job)
    if ref is not None and ref.id != event.dedup_key:
        return answered(job, "not this job's fal request")
    if ref is None and unsettled_since(job) is None:
        # The create's answer is being recorded right now: fal sends again on a non-2xx.
        return CallbackAnswer(409, {"message": "the job's fal request is not recorded yet; send again"})
    if not deps.store.remember_callback(job.job_id, f"fal:{event.dedup_key}"):
        return answered(job, "duplicate fal webhook (request_id seen before)")
    try:
        return apply_fal_webhook(job_id, event.task, deps)
    except BaseException:
        deps.store.forget_callback(job.job_id, f"fal:{event.dedup_key}")  # fal's redelivery will be handled
        raise


def apply_fal_webhook(job_id: str, said: ProviderTask, deps: CallbackDependencies) -> CallbackAnswer:
    job = deps.store.get(job_id)
    if job.state is JobState.DOWNLOADING:
        deps.workflow.start(job)
        return answered(job, "download already under way")
    if job.state not in AWAITING_KLING:
        return answered(job, "nothing to do")
    fal = deps.fal()
    ref = task_ref(job)
    adopting: dict[str, Any] = {}
    if ref is None:
        ref = adopted_ref(job, said.id, deps.fal_queue_base_url)
        adopting = {"task_id": ref.id, PROVIDER_TASK: ref.as_record(), UNSETTLED_AT: None}
        logger.info("unsettled fal create settled by its webhook", extra={"request_id": ref.id})
    task: ProviderTask | None = said
    if said.status == "unknown":
        try:
            task = fal.look_up(ref)  # once: a 422 is the refusal, a 5xx/504 is for the poller
        except ProviderUnavailableError as exc:
            logger.info("fal result not readable yet; left for the poller", extra={"error": str(exc)[:300]})
            task = None
    observed = None
    if task is not None:
        observed = as_kling_task(task, fal.charge(ref, charge_arguments(job), task))
    if observed is None:
        if adopting:
            observed = as_kling_task(ProviderTask("fal", ref.id, "running"))
            assert observed is not None
            moved, _ = advance_job(job, observed, deps, by=BY, record_also=adopting)
            return answered(moved, "request adopted; its result is left for the poller")
        return answered(job, "result not readable yet: left for the poller")
    moved, action = advance_job(job, observed, deps, by=BY, record_also=adopting)
    return answered(moved, action)

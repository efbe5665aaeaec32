"""Every error the pipeline raises on purpose, under one root: `PipelineError`.

Names here are part of the contract with the download state machine: its Retry and Catch match
the Lambda error's type name (`TransientDownloadError`), so a rename silently stops retries. A
test pins every name that statemachine/download.asl.json mentions (docs/architecture.md, "Errors").
"""

from __future__ import annotations


class PipelineError(Exception):
    """The root of the pipeline's own errors; anything else that escapes is a bug or an AWS error."""


class ConfigError(PipelineError, RuntimeError):
    """The function's environment or a secret is missing or wrong; the message names what to set."""


class KlingKeysMissingError(ConfigError):
    """The Kling keys are not stored yet: the secret still holds what the stack created it with. The
    operator's first step after a deploy, not a failure: the poller logs it once a run and raises the
    KlingKeysMissing alarm, and the submit path parks its messages with the fix."""


class KlingKeysInvalidError(KlingKeysMissingError):
    """The Kling secret holds something other than an API key and/or an access + secret key pair (a
    misspelt field, a number, half a pair): handled as missing keys are (the submit path parks with the
    fix, the poller logs it and raises the alarm), its message naming the fields and the fix."""


class KlingApiKeyNeededError(ConfigError):
    """A model of Kling's newer design was asked for, and the deployment has no API key (the access/secret
    key JWT signs the legacy design only): refused before anything is sent, so nothing is spent."""


# -- the job's life ---------------------------------------------------------------------------


class InvalidTransitionError(PipelineError, ValueError):
    """A transition the lifecycle does not allow: a bug in the caller, not a race."""


class TransitionRejectedError(PipelineError):
    """The job was not in the expected state and version: someone else moved it first ("already done")."""

    def __init__(self, job_id: str, expected: object, current: object) -> None:
        super().__init__(f"job {job_id}: expected state {expected}, found {current}")
        self.job_id = job_id
        self.expected = expected
        self.current = current


class LinkedWriteRefusedError(PipelineError):
    """A write made in one transaction with a transition was refused by its own condition (such as the
    day's budget having no room), so the transition was not made either. `index` is the refused
    write's place among the linked writes."""

    def __init__(self, job_id: str, index: int) -> None:
        super().__init__(f"job {job_id}: linked write {index} was refused by its condition")
        self.job_id = job_id
        self.index = index


class JobNotFoundError(PipelineError, LookupError):
    """No job with this id in JobsTable."""


class InvalidJobMessageError(PipelineError, ValueError):
    """A job message that can never succeed as sent; `reason` names the field and the fix."""

    def __init__(self, reason: str, job_id: str | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.job_id = job_id


class ImageRefusedError(PipelineError, ValueError):
    """An input image Kling would refuse, or that cannot be read where the request says it is: the
    request is refused before any money is spent. The message names the field and the rule."""

    def __init__(self, field: str, rule: str, detail: str, source: str = "") -> None:
        self.cite = f"rule {rule}"  # the rule's source stays in `source`, out of what users read
        super().__init__(f"{field}: {detail} ({self.cite})")
        self.source = source
        self.field = field
        self.rule = rule
        self.detail = detail


# -- Kling ------------------------------------------------------------------------------------


class KlingApiError(PipelineError):
    """Kling answered with a non-zero business code."""

    def __init__(self, code: int, message: str, http_status: int, request_id: str | None = None) -> None:
        super().__init__(f"Kling error {code}: {message}")
        self.code = code
        self.message = message
        self.http_status = http_status
        self.request_id = request_id

    @property
    def retryable(self) -> bool:
        return isinstance(self, KlingRetryableError)


class KlingRetryableError(KlingApiError):
    """Throttling, concurrency over the pack limit, or a Kling-side outage: back off and try again."""


class KlingFinalError(KlingApiError):
    """Billing, access, policy or validation: trying again changes nothing."""


class KlingAccountError(KlingApiError):
    """Our side is misconfigured (keys, clock, IP allow-list) or the code is unknown: no job is at fault,
    so jobs wait for an operator instead of failing."""


class KlingUnavailableError(PipelineError):
    """No usable answer (timeout, connection failure, garbled body). `request_sent` is False only when
    the request provably never left (no connection was made), so it cannot have landed."""

    def __init__(self, message: str, *, request_sent: bool = True) -> None:
        super().__init__(message)
        self.request_sent = request_sent


class KlingShapeError(PipelineError):
    """Kling answered, but in a shape we do not know (a field missing or of another type): the answer
    cannot be acted on, and says nothing about whether a task exists."""


class KlingCreateUnsettledError(PipelineError):
    """A create whose answer does not prove that Kling made no task: a timeout or a connection cut
    after the request was sent, 5000-5002, HTTP 5xx with or without Kling's envelope, an unknown code,
    an unreadable or unknown-shaped answer. The task may exist, and be billed: reconcile, never
    simply create again. `transient` is False for answers this version cannot read (an unknown code
    or shape), which will not start making sense by waiting."""

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


# -- downloads --------------------------------------------------------------------------------


class DownloadRefusedError(PipelineError):
    """Final: retrying cannot help (host not allowed, not an MP4, too large, link expired)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class VideoLinkRefusedError(DownloadRefusedError):
    """The CDN refused a result link (401, 403, 404, 410). Moments after Kling's `succeed` that is an
    edge still propagating or a WAF, and worth retrying; only past Kling's 30-day retention is the
    link expired (download.py decides, from the job's `kling_finished_at`)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__("VIDEO_URL_REFUSED", message)
        self.status = status


class TransientDownloadError(PipelineError):
    """Worth retrying: the connection dropped, the CDN answered 5xx, a timeout. The state machine's
    Retry keys on this class name."""


# -- webhooks ---------------------------------------------------------------------------------


class WebhookRefusedError(PipelineError):
    """A webhook URL the pipeline will not call (not https, a private address, not allowed): final."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class WebhookNotDeliveredError(PipelineError):
    """The receiver did not answer 2xx (or could not be reached): the event is tried again later."""


# -- the jobs API -----------------------------------------------------------------------------


class QueueUnavailableError(PipelineError):
    """JobsQueue did not take a send (an AWS error, named in the message): which of its messages went
    is not known. The jobs API discards the records it made for them and asks for the request again."""


class JobsApiError(PipelineError):
    """An answer of the jobs API other than success: its HTTP status, a code, and a message that
    names the field at fault (`details`, per item, for a batch)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        details: list[dict[str, object]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.details = details


# -- other providers (fal.ai, ...) --------------------------------------------------------------


class ProviderError(PipelineError):
    """A provider other than Kling's own API (providers/) answered in a way the job must act on."""

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.message = message


class ProviderNotEnabledError(PipelineError):
    """A provider's door is closed in this deployment: its credentials secret holds no key (doors.py). The
    message names the secret and the fix."""


class ProviderCapabilityError(ProviderError, ValueError):
    """The request asks what the provider cannot do: refused before anything is sent, so nothing is spent.
    The message names the field and the fix."""

    def __init__(self, provider: str, problems: list[str]) -> None:
        super().__init__(provider, "; ".join(problems))
        self.problems = problems


class ProviderRefusedError(ProviderError):
    """The provider refused the request (400, 404, 422 on a create): final for the request, and the answer
    proves nothing was made, so nothing was spent. `detail` is the provider's own explanation."""

    def __init__(self, provider: str, message: str, *, http_status: int, detail: object = None) -> None:
        super().__init__(provider, message)
        self.http_status = http_status
        self.detail = detail


class ProviderAccountError(ProviderError):
    """Our account's fault (401, 403: the key): nothing was made, no job is at fault; jobs wait for an operator."""

    def __init__(self, provider: str, message: str, *, http_status: int) -> None:
        super().__init__(provider, message)
        self.http_status = http_status


class ProviderUnavailableError(ProviderError):
    """No usable answer, worth asking again later: a timeout, a cut connection, 429, a 5xx (a 504 on a
    result fetch after COMPLETED included: transient, never a failure). `request_sent` is False only
    when no connection was made, so the request cannot have landed."""

    def __init__(
        self, provider: str, message: str, *, request_sent: bool = True, http_status: int | None = None
    ) -> None:
        super().__init__(provider, message)
        self.request_sent = request_sent
        self.http_status = http_status


class ProviderCreateUnsettledError(ProviderError):
    """A create whose answer does not prove whether the provider made the request: a timeout or a cut
    connection after sending, a 5xx, an answer we cannot read. For a provider with no idempotency key
    and no look-up by our id (fal.ai) it is NEVER retried automatically: the job waits for the
    provider's webhook (its URL names the job) or for the window in which one would have come, then
    ends FAILED with PROVIDER_UNSETTLED. `at` (epoch seconds) and `endpoint` say what an operator
    looks for in the provider's dashboard."""

    def __init__(self, provider: str, message: str, *, at: float, endpoint: str, dashboard: str = "") -> None:
        super().__init__(provider, message)
        self.at = at
        self.endpoint = endpoint
        self.dashboard = dashboard


class ProviderSignatureError(ProviderError):
    """A provider's webhook whose signature does not verify (or is stale, or unsigned): 401, changes nothing.
    The message says why, never a key."""

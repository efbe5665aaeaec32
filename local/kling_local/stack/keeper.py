"""Keep what a real Kling made when the local stack runs against it (`local up --kling-url`).

The local stack's state lives in memory (moto): when the process stops, every job record and every
video in its S3 is gone. Against the simulator that is the point; against a real Kling those are
paid videos. `VideoKeeper` copies each completed video to a folder on disk as it lands, and when the
stack stops it copies whatever else is stored and lists the jobs still live at Kling (state, task id,
external_task_id) in a JSON-lines file, so nothing paid is forgotten.

The hook is the pipeline's own "Video Completed" event: an EventBridge rule on the pipeline's bus
sends it to an SQS queue the keeper owns, exactly as a user's consumer on AWS would subscribe, with
no knowledge of the store. The events are not the only net: on stop the keeper also reads the
completed and live jobs from JobsTable (the JobsByState index), so a video whose event never came
(a failed PutEvents, a stop mid-copy) is still kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kling_local.connection import PipelineConnection
from kling_pipeline.lifecycle import TERMINAL_STATES, Job, JobState

log = logging.getLogger(__name__)

COMPLETED_EVENT = "Video Completed"
EVENT_SOURCE = "kling-pipeline"
CHUNK = 1024 * 1024
LIVE_STATES = [state for state in JobState if state not in TERMINAL_STATES]


@dataclass(frozen=True)
class LiveJob:
    """A job Kling may still be working on (and charging for) when the stack stops."""

    job_id: str
    state: str
    task_id: str | None
    external_task_id: str
    kind: str
    kling_status: str | None
    video_url: str | None
    step: int
    total_steps: int
    updated_at: str
    kling_base_url: str

    @classmethod
    def of(cls, job: Job, kling_base_url: str) -> LiveJob:
        return cls(
            job_id=job.job_id,
            state=job.state.value,
            task_id=job.task_id,
            external_task_id=job.external_task_id,
            kind=job.task_kind,
            kling_status=job.kling_status,
            video_url=job.video_url,
            step=job.step,
            total_steps=job.total_steps,
            updated_at=job.updated_at,
            kling_base_url=kling_base_url,
        )

    def line(self) -> str:
        task = f"task {self.task_id}" if self.task_id else "no task id yet (a create may be in flight)"
        step = f" step {self.step}/{self.total_steps}" if self.total_steps > 1 else ""
        return f"{self.job_id}  {self.state}{step}  {task}  external_task_id {self.external_task_id}"


@dataclass
class KeptSummary:
    """What stop() found: the videos on disk, the ones copied now, and the jobs still live."""

    videos: list[Path] = field(default_factory=list)
    copied_at_stop: list[Path] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    live: list[LiveJob] = field(default_factory=list)
    live_file: Path | None = None


class VideoKeeper:
    def __init__(
        self,
        endpoints: Mapping[str, str],
        out_dir: Path,
        *,
        event_bus: str = "default",
        kling_base_url: str = "",
        wait_s: int = 1,
    ) -> None:
        self.out_dir = out_dir.resolve()
        self._connection = PipelineConnection.of_local_stack(dict(endpoints))
        self._event_bus = event_bus
        self._kling_base_url = kling_base_url or str(endpoints.get("kling_base_url", ""))
        self._wait_s = wait_s
        self._sqs = self._connection.client("sqs")
        self._s3 = self._connection.client("s3")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._queue_url = ""
        self._lock = threading.Lock()
        self._kept: dict[Path, tuple[int, str | None]] = {}  # written or checked in this run: size, sha256

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> VideoKeeper:
        """Subscribe to the pipeline's "Video Completed" events and copy each video as it lands."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        suffix = secrets.token_hex(4)
        self._queue_url = self._sqs.create_queue(
            QueueName=f"kling-local-videos-{suffix}", Attributes={"VisibilityTimeout": "30"}
        )["QueueUrl"]
        queue_arn = self._sqs.get_queue_attributes(QueueUrl=self._queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        events = self._connection.client("events")
        rule_arn = events.put_rule(
            Name=f"kling-local-videos-{suffix}",
            EventBusName=self._event_bus,
            EventPattern=json.dumps({"source": [EVENT_SOURCE], "detail-type": [COMPLETED_EVENT]}),
        )["RuleArn"]
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "events.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
                }
            ],
        }
        self._sqs.set_queue_attributes(QueueUrl=self._queue_url, Attributes={"Policy": json.dumps(policy)})
        events.put_targets(
            Rule=f"kling-local-videos-{suffix}",
            EventBusName=self._event_bus,
            Targets=[{"Id": "keeper", "Arn": queue_arn}],
        )
        self._thread = threading.Thread(target=self._run, name="video-keeper", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> KeptSummary:
        """Copy every stored video not on disk yet, then list (and write down) the jobs still live."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._wait_s + 30)
        summary = KeptSummary()
        if self._queue_url:
            with contextlib.suppress(Exception):
                self._drain()  # the events that arrived while stopping
        store = self._connection.store()
        completed = self._jobs(store, [JobState.COMPLETED])
        live = self._jobs(store, LIVE_STATES)
        for job in [*completed, *live]:
            for s3_uri, size, sha256 in stored_videos(job):
                before = set(self._kept)
                try:
                    path = self.keep(s3_uri, size=size, sha256=sha256)
                except Exception as exc:  # one video's failure must not cost the others
                    log.exception("could not keep %s", s3_uri)
                    summary.failed.append(f"{s3_uri}: {exc}")
                    continue
                if path not in before:
                    summary.copied_at_stop.append(path)
        summary.videos = sorted(self._kept)
        summary.live = [LiveJob.of(job, self._kling_base_url) for job in live]
        if summary.live:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            summary.live_file = self.out_dir / f"unfinished-jobs-{stamp}.jsonl"
            summary.live_file.write_text(
                "".join(json.dumps(asdict(job)) + "\n" for job in summary.live), encoding="utf-8"
            )
        return summary

    # -- copying ----------------------------------------------------------------------------------

    def keep(self, s3_uri: str, *, size: int | None = None, sha256: str | None = None) -> Path:
        """The video at `s3_uri` on disk (named after its key, so the job id is in the name). A file
        already there with the object's size (and sha256, when known) is left as it is."""
        bucket, _, key = s3_uri.removeprefix("s3://").partition("/")
        path = self.out_dir / file_name(key)
        with self._lock:
            if size is None:
                size = int(self._s3.head_object(Bucket=bucket, Key=key)["ContentLength"])
            if self._kept.get(path) == (size, sha256) or _same_file(path, size, sha256):
                self._kept[path] = (size, sha256)
                return path
            partial = path.with_name(f".{path.name}.{os.getpid()}.part")
            digest = hashlib.sha256()
            written = 0
            try:
                body = self._s3.get_object(Bucket=bucket, Key=key)["Body"]
                with body, partial.open("wb") as file:
                    for chunk in iter(lambda: body.read(CHUNK), b""):
                        file.write(chunk)
                        digest.update(chunk)
                        written += len(chunk)
                    file.flush()
                    os.fsync(file.fileno())
                if written != size or (sha256 and digest.hexdigest() != sha256):
                    raise OSError(f"{s3_uri}: copied {written} bytes, sha256 {digest.hexdigest()}; expected {size}")
                partial.replace(path)
            finally:
                partial.unlink(missing_ok=True)
            self._kept[path] = (size, sha256)
            log.info("kept %s -> %s", s3_uri, path)
            return path

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._receive_once()
            except Exception:  # moto going away at stop, or one bad copy: try again, the sweep backs it up
                log.exception("video keeper")
                self._stop.wait(1.0)

    def _drain(self) -> None:
        while self._receive_once(wait_s=0):
            pass

    def _receive_once(self, wait_s: int | None = None) -> int:
        messages = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=self._wait_s if wait_s is None else wait_s,
        ).get("Messages", [])
        for message in messages:
            detail = json.loads(message["Body"]).get("detail") or {}
            for s3_uri, size, sha256 in stored_in_event(detail):
                self.keep(s3_uri, size=size, sha256=sha256)
            self._sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"])
        return len(messages)

    def _jobs(self, store: Any, states: Iterable[JobState]) -> list[Job]:
        ids: list[str] = []
        for state in states:
            start: dict[str, str] | None = None
            while True:
                items, start = store.jobs_in_state(state, limit=100, start_key=start)
                ids += [str(item["job_id"]) for item in items]
                if not start:
                    break
        found = store.get_many(ids) if ids else {}
        return [found[job_id] for job_id in dict.fromkeys(ids) if job_id in found]


def file_name(key: str) -> str:
    """`videos/<job_id>.mp4` -> `<job_id>.mp4`; a chain's `videos/<job_id>/step-2.mp4` -> `<job_id>-step-2.mp4`."""
    name = key.removeprefix("videos/").replace("/", "-").replace("\\", "-")
    return name.lstrip(".") or "video.mp4"


def stored_in_event(detail: Mapping[str, Any]) -> list[tuple[str, int | None, str | None]]:
    """Every stored video a "Video Completed" event names: the job's, and a chain's earlier steps'."""
    found = [(str(s["s3_uri"]), _int(s.get("size")), s.get("sha256")) for s in detail.get("steps") or []]
    if detail.get("s3_uri"):
        found.append((str(detail["s3_uri"]), _int(detail.get("size")), detail.get("sha256")))
    return list({uri: (uri, size, sha) for uri, size, sha in found if uri}.values())


def stored_videos(job: Job) -> list[tuple[str, int | None, str | None]]:
    """Every video of `job` already in S3: a chain's stored steps, and a completed job's own."""
    detail: dict[str, Any] = {"steps": [s for s in job.steps if s.get("s3_uri")]}
    if job.state is JobState.COMPLETED and job.s3_uri:
        detail |= {"s3_uri": job.s3_uri, "size": job.video_size, "sha256": job.sha256}
    return stored_in_event(detail)


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _same_file(path: Path, size: int, sha256: str | None) -> bool:
    try:
        if path.stat().st_size != size:
            return False
    except OSError:
        return False
    if not sha256:
        return True
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest() == sha256


def event_bus_of(functions_environment: Iterable[Mapping[str, str]]) -> str:
    """The bus the pipeline announces on (the functions' EVENT_BUS_NAME), `default` when none says."""
    for environment in functions_environment:
        if environment.get("EVENT_BUS_NAME"):
            return str(environment["EVENT_BUS_NAME"])
    return "default"

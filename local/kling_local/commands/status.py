"""`status`: a job's state, history, and video or error."""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from typing import Any

from rich.table import Table

from kling_local import terminal
from kling_local.api_client import ApiClientError, JobsApiClient
from kling_local.commands.tables import epoch
from kling_local.connection import PipelineConnection
from kling_local.terminal import UsageError
from kling_pipeline.lifecycle import Job, JobState, public_step


def job_summary(job: Job) -> dict[str, Any]:
    next_poll = (
        datetime.fromtimestamp(job.next_poll_at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        if job.next_poll_at and not job.is_terminal
        else None
    )
    return {
        "job_id": job.job_id,
        "state": job.state.value,
        "kind": job.kind,
        "prompt": job.request.get("prompt", ""),
        "task_id": job.task_id,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "s3_uri": job.s3_uri,
        "video_size": job.video_size,
        "sha256": job.sha256,
        "units_charged": job.total_units,  # every step's, for an extend chain
        "step": f"{job.step} of {job.total_steps}" if job.is_chain else None,
        "steps": [public_step(step) for step in job.steps] if job.is_chain else None,
        "reserved_units": job.reserved_units,  # held of its day's budget (DailyBudgetUnits)
        "reserved_day": job.reserved_day,
        "held_for": job.held_for,  # why a QUEUED job waits, such as "daily budget reached"
        "waiting_pool": None,  # a QUEUED job waiting for a free slot: its pool and place in line (cmd_status)
        "place_in_line": None,
        "error_code": job.error_code,
        "error_message": job.error_message,
        "next_poll_at": next_poll,  # when the stale-job poller looks at it next (live jobs)
        "polls": job.poll_count,
        "history": [h.model_dump(exclude_none=True) for h in job.history],
    }


def summary_of_view(view: dict[str, Any]) -> dict[str, Any]:
    """The jobs API's view of a job in job_summary's shape, so `status` reads the same either way (the
    API does not show the poller's schedule: those keys are None)."""
    request = view.get("request") or {}
    total_steps = 1 + len(request.get("extend") or [])
    chain = total_steps > 1
    return {
        "job_id": view["job_id"],
        "state": view["state"],
        "kind": view.get("kind"),
        "prompt": request.get("prompt", ""),
        "task_id": view.get("task_id"),
        "created_at": view.get("created_at"),
        "updated_at": view.get("updated_at"),
        "s3_uri": view.get("s3_uri"),
        "video_size": view.get("video_size"),
        "sha256": view.get("sha256"),
        "units_charged": view.get("units_charged"),
        "step": f"{view.get('step', 1)} of {total_steps}" if chain else None,
        "steps": view.get("steps") if chain else None,
        "reserved_units": view.get("reserved_units"),
        "reserved_day": None,
        "held_for": view.get("held_for"),
        "waiting_pool": view.get("waiting_pool"),
        "place_in_line": view.get("place_in_line"),
        "error_code": view.get("error_code"),
        "error_message": view.get("error_message"),
        "next_poll_at": None,
        "polls": None,
        "history": [{k: v for k, v in entry.items() if v is not None} for entry in view.get("history", [])],
    }


def cmd_status(args: argparse.Namespace, connection: PipelineConnection | None) -> int:
    if args.api_url:
        try:
            view = JobsApiClient(args.api_url).call("GET", f"/jobs/{args.job_id}")
        except ApiClientError as exc:
            if exc.status == 404:  # as the table path says it
                raise UsageError(f"no job {args.job_id} (jobs API {args.api_url})") from None
            raise
        summary = summary_of_view(view)
    else:
        assert connection is not None
        job = connection.store().find(args.job_id)
        if job is None:
            raise UsageError(f"no job {args.job_id} in {connection.table} ({connection.where})")
        summary = job_summary(job)
        line = connection.store().place_in_line(job)
        if line is not None:
            summary["waiting_pool"], summary["place_in_line"] = line
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    print_status(summary)
    return 0


def print_status(summary: dict[str, Any]) -> None:
    """A job for a person: the same whether it was read from the table or from the jobs API."""
    state = JobState(summary["state"])
    terminal.console.print(f"[bold]{summary['job_id']}[/bold]  {_state_style(state)}  ({summary['kind']})")
    terminal.console.print(f"prompt: {summary['prompt'][:200]}")
    if summary["task_id"]:
        terminal.console.print(f"Kling task: {summary['task_id']}")
    if summary["s3_uri"]:
        terminal.console.print(
            f"video: {summary['s3_uri']}  ({summary['video_size']} bytes, sha256 {summary['sha256']})"
        )
    if summary["error_message"]:
        terminal.console.print(f"[red]error {summary['error_code']}:[/red] {summary['error_message']}")
    if summary["step"]:
        step, _, total = summary["step"].partition(" of ")
        at = "done" if state.is_terminal else f"at step {step}"
        terminal.console.print(f"extend chain of {total} steps, {at}:")
        for stored in summary["steps"] or []:
            made = f"{stored.get('duration')} s, {stored.get('units_charged')} units"
            terminal.console.print(f"  step {stored['step']}: {stored['s3_uri']}  ({made})")
    if summary["units_charged"] is not None:
        terminal.console.print(f"units charged by Kling: {summary['units_charged']}")
    elif summary["reserved_units"] is not None:
        day = f"{summary['reserved_day']}'s" if summary["reserved_day"] else "the day's"
        terminal.console.print(f"units held of {day} budget: {summary['reserved_units']:g} (an estimate)")
    if summary["held_for"] and state is JobState.QUEUED:
        terminal.console.print(f"[yellow]waiting:[/yellow] {summary['held_for']}")
    if summary.get("waiting_pool") and state is JobState.QUEUED:
        terminal.console.print(
            f"[yellow]waiting for a free Kling slot:[/yellow] pool {summary['waiting_pool']}, "
            f"place {summary['place_in_line']} in line"
        )
    if summary["next_poll_at"]:
        wait = int(epoch(summary["next_poll_at"]) - time.time())
        when = f"in {wait} s" if wait > 0 else f"{-wait} s overdue"
        terminal.console.print(
            f"next look by the poller: {summary['next_poll_at']} ({when}; polled {summary['polls']} times)"
        )
    table = Table("state", "at", "by", "note", title="history")
    for entry in summary["history"]:
        table.add_row(entry["state"], entry["at"], entry["by"], entry.get("note") or "")
    terminal.console.print(table)


def _state_style(state: JobState) -> str:
    color = {"COMPLETED": "green", "FAILED": "red", "TIMED_OUT": "red"}.get(state.value, "yellow")
    return f"[{color}]{state.value}[/{color}]"

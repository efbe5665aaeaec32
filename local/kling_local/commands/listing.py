"""`list` (jobs by state, or the stuck ones) and `watch` (live counts by state, and the live jobs)."""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from rich.console import Group
from rich.live import Live
from rich.table import Column, Table

from kling_local import terminal
from kling_local.api_client import JobsApiClient
from kling_local.commands.tables import epoch, print_records
from kling_local.connection import PipelineConnection
from kling_pipeline.lifecycle import JobState
from kling_pipeline.slots import WAITING_POOL

STUCK_AFTER_S = 900.0


def scan_jobs(connection: PipelineConnection, states: list[str] | None = None, limit: int = 0) -> list[dict[str, Any]]:
    """A scan is fine for operator use (a few thousand jobs); the pipeline itself never scans."""
    dynamodb = connection.client("dynamodb")
    kwargs: dict[str, Any] = {
        "TableName": connection.table,
        "ProjectionExpression": "job_id, #s, updated_at, error_code, s3_uri, next_poll_at, held_for, "
        "backpressure_count, expected_finish_at, waiting_pool",
        "ExpressionAttributeNames": {"#s": "state"},
    }
    # Jobs only: JobsTable also holds the pools' counters of Kling slots (`pool#...`, no state).
    kwargs["FilterExpression"] = "attribute_exists(#s)"
    if states:
        kwargs["FilterExpression"] = "#s IN (" + ", ".join(f":s{i}" for i in range(len(states))) + ")"
        kwargs["ExpressionAttributeValues"] = {f":s{i}": {"S": s} for i, s in enumerate(states)}
    items: list[dict[str, Any]] = []
    for page in dynamodb.get_paginator("scan").paginate(**kwargs):
        items.extend({k: next(iter(v.values())) for k, v in item.items()} for item in page["Items"])
    items.sort(key=lambda item: str(item.get("updated_at", "")), reverse=True)
    return items[:limit] if limit else items


def list_through_api(api: JobsApiClient, states: list[str], limit: int) -> list[dict[str, Any]]:
    """GET /jobs for each state (the API lists one state at a time), page after page, up to `limit` each."""
    items: list[dict[str, Any]] = []
    for state in states:
        token: str | None = None
        taken = 0
        while taken < limit:
            page = api.call(
                "GET", "/jobs", params={"state": state, "limit": min(100, limit - taken), "next_token": token}
            )
            items.extend(page["jobs"])
            taken += len(page["jobs"])
            token = page.get("next_token")
            if not token:
                break
    items.sort(key=lambda item: str(item.get("updated_at", "")), reverse=True)
    return items


def cmd_list(args: argparse.Namespace, connection: PipelineConnection | None) -> int:
    if args.api_url:
        items = list_through_api(JobsApiClient(args.api_url), args.state or [s.value for s in JobState], args.limit)
    else:
        assert connection is not None
        items = scan_jobs(connection, args.state, 0 if args.stuck is not None else args.limit)
    if args.stuck is not None:
        items = stuck(items, older_than_s=args.stuck)[: args.limit]
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    if args.stuck is not None and not items:
        terminal.console.print(f"nothing stuck: no live job has gone {args.stuck:g} s without moving")
        return 0
    rows = [
        {
            "job_id": item["job_id"],
            "state": item["state"],
            "updated_at": str(item.get("updated_at", "")),
            "video / error": item.get("s3_uri") or item.get("error_code") or "",
        }
        for item in items
    ]
    print_records(["job_id", "state", "updated_at", "video / error"], rows, ids=("job_id",))
    return 0


def stuck(items: list[dict[str, Any]], *, older_than_s: float) -> list[dict[str, Any]]:
    """Live jobs whose last move is older than `older_than_s`, longest stuck first (stuck-task
    detection; the poller settles them, this shows which they are)."""
    cutoff = datetime.now(UTC).timestamp() - older_than_s
    live = [i for i in items if not JobState(i["state"]).is_terminal]
    old = [i for i in live if epoch(str(i.get("updated_at", ""))) < cutoff]
    return sorted(old, key=lambda i: str(i.get("updated_at", "")))


def state_counts(connection: PipelineConnection) -> Counter[str]:
    return Counter(item["state"] for item in scan_jobs(connection))


def counts_table(counts: Counter[str]) -> Table:
    """One column per state where they fit whole; else one row per state (never a cut header)."""
    if sum(len(s.value) + 3 for s in JobState) + 1 > terminal.console.width:
        table = Table("state", Column("jobs", justify="right"), title="jobs by state")
        for state in JobState:
            table.add_row(state.value, str(counts.get(state.value, 0)))
        return table
    table = Table(*(Column(s.value, no_wrap=True) for s in JobState), title="jobs by state")
    table.add_row(*[str(counts.get(s.value, 0)) for s in JobState])
    return table


WATCHED_LIVE_JOBS = 20  # live jobs `watch` lists under the counts, the longest waiting first


def waiting_for(item: dict[str, Any], now: float) -> str:
    """What a live job waits for, in the words of its record: the budget, a Kling slot, Kling's generation
    (against when a job like it usually finishes), the download. "" for a job that ended."""
    state = JobState(item["state"])
    if state is JobState.QUEUED:
        if item.get("held_for"):
            return f"queued: {item['held_for']}"
        if item.get(WAITING_POOL):
            return f"waiting for a Kling slot (in {item[WAITING_POOL]}'s line)"
        tries = int(item.get("backpressure_count") or 0)
        if tries:
            return f"waiting for a Kling slot (backpressure, {tries} tries)"
        return "queued: for the submit function"
    if state is JobState.SUBMITTING:
        return "being sent to Kling"
    if state in (JobState.SUBMITTED, JobState.PROCESSING):
        expected = item.get("expected_finish_at")
        if expected is None:
            return "Kling generating"
        left = int(float(expected) - now)
        if left >= 0:
            return f"Kling generating (~{left} s left)"
        poll = item.get("next_poll_at")
        look = f"; the poller looks in {max(0, int(float(poll) - now))} s" if poll else ""
        return f"Kling generating ({-left} s past the usual{look})"
    if state is JobState.DOWNLOADING:
        return "download running (Kling's CDN to S3)"
    return ""


def live_jobs_table(items: list[dict[str, Any]], now: float) -> Table | None:
    live = sorted(
        (i for i in items if not JobState(i["state"]).is_terminal), key=lambda i: str(i.get("updated_at", ""))
    )
    if not live:
        return None
    shown = live[:WATCHED_LIVE_JOBS]
    more = f", {len(live) - len(shown)} more not shown" if len(live) > len(shown) else ""
    # Ids whole (they are copied into `status`); what a job waits for wraps instead.
    widest = max(len(str(i["job_id"])) for i in shown)
    table = Table(
        Column("job_id", no_wrap=True, min_width=widest),
        Column("state", no_wrap=True),
        Column("waiting for", overflow="fold"),
        title=f"live jobs ({len(live)}{more})",
    )
    for item in shown:
        table.add_row(item["job_id"], item["state"], waiting_for(item, now))
    return table


def watch_view(connection: PipelineConnection) -> tuple[Group, int]:
    """The counts by state and what each live job waits for; and how many jobs are live."""
    items = scan_jobs(connection)
    counts = Counter(item["state"] for item in items)
    live_table = live_jobs_table(items, time.time())
    parts: list[Table] = [counts_table(counts)] + ([live_table] if live_table is not None else [])
    return Group(*parts), sum(n for state, n in counts.items() if not JobState(state).is_terminal)


def cmd_watch(args: argparse.Namespace, connection: PipelineConnection) -> int:
    view, live_jobs = watch_view(connection)
    if args.once:
        terminal.console.print(view)
        return 0
    try:
        with Live(view, console=terminal.console, refresh_per_second=4) as live:
            while not (args.until_done and live_jobs == 0):
                time.sleep(args.interval)
                view, live_jobs = watch_view(connection)
                live.update(view)
            return 0
    except KeyboardInterrupt:
        return 0

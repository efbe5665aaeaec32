"""`kling-pipeline list --stuck`: live jobs that have not moved for a while, longest stuck first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kling_local.commands.listing import stuck


def at(minutes_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z")


def test_only_live_jobs_older_than_the_threshold_longest_first() -> None:
    items = [
        {"job_id": "fresh", "state": "PROCESSING", "updated_at": at(1)},
        {"job_id": "old-done", "state": "COMPLETED", "updated_at": at(120)},
        {"job_id": "stuck-a", "state": "DOWNLOADING", "updated_at": at(30)},
        {"job_id": "stuck-b", "state": "SUBMITTED", "updated_at": at(90)},
    ]
    assert [i["job_id"] for i in stuck(items, older_than_s=15 * 60)] == ["stuck-b", "stuck-a"]
    assert stuck(items, older_than_s=24 * 3600) == []

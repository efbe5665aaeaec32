"""The report's table on the terminal: one line per row, the invariants as columns."""

from __future__ import annotations

from typing import Any

COLUMNS = [
    ("row", "row"),
    ("jobs", "jobs"),
    ("done", "completed"),
    ("failed", "failed"),
    ("lost", "lost"),
    ("tasks/job", "creates_per_job"),
    ("double", "double_creates"),
    ("unsettled", "unsettled"),
    ("S3 ok", "s3_verified"),
    ("GETs/job", "kling_gets_per_job"),
    ("≠Kling", "outcome_not_klings"),
    ("DLQ", "poison"),
    ("forged", "forged"),
    ("hostile", "hostile"),
    ("s", "seconds"),
    ("ok", "ok"),
]


def table_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for row in report["rows"]:
        cells = []
        for _, key in COLUMNS:
            if key == "poison":
                cells.append(f"{row['poison_in_dlq_with_reason']}/{row['poison_sent']}" if row["poison_sent"] else "")
            elif key == "forged":
                cells.append(f"{row['forged_refused']}/{row['forged_sent']}" if row["forged_sent"] else "")
            elif key == "hostile":
                cells.append(f"{row['hostile_refused']}/{row['hostile_sent']}" if row["hostile_sent"] else "")
            elif key == "unsettled":
                # door rows: ended PROVIDER_UNSETTLED (and of those, with a paid video not stored)
                paid = row.get("unsettled_paid", 0)
                cells.append(
                    f"{row.get('unsettled', 0)}" + (f" ({paid} paid)" if paid else "")
                    if row.get("provider", "kling") != "kling"
                    else ""
                )
            elif key == "s3_verified":
                cells.append(f"{row['s3_verified']}/{row['completed']}")
            elif key == "ok":
                cells.append("yes" if row["ok"] else "NO")
            else:
                cells.append(str(row[key]))
        rows.append(cells)
    return rows


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"chaos: {report['settings']['jobs']} jobs in {report['duration_s']} s ({report['command']})")
    for header, _ in COLUMNS:
        table.add_column(header, justify="left" if header == "row" else "right")
    for cells in table_rows(report):
        table.add_row(*cells)
    console = Console(width=200)
    console.print(table)
    for row in report["rows"]:
        for problem in row["problems"][:5]:
            console.print(f"[red]{row['row']}[/red]: {problem}")
    console.print("every row ok" if report["all_ok"] else "[red]some rows broke an invariant[/red]")

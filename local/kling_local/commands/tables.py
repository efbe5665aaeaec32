"""Records printed as a table when the terminal is wide enough, else one block per record."""

from __future__ import annotations

from datetime import datetime

from rich.table import Column, Table
from rich.text import Text

from kling_local import terminal


def print_records(
    columns: list[str], rows: list[dict[str, str]], *, ids: tuple[str, ...], title: str | None = None
) -> None:
    """Rows as a table when every cell fits the terminal whole; else one record per row, its ids and
    short fields on the first line and the rest indented below. Ids are never cut: they are what a
    person copies into the next command."""
    widths = {c: max([len(c), *(len(row[c]) for row in rows)]) for c in columns}
    if sum(widths.values()) + 3 * len(columns) + 1 <= terminal.console.width:
        table = Table(*(Column(c, no_wrap=True) for c in columns), title=title)
        for row in rows:
            table.add_row(*(Text(row[c]) for c in columns))
        terminal.console.print(table)
        return
    if title:
        terminal.console.print(title, style="italic")
    for row in rows:
        head = [row[c] for c in columns if c in ids or widths[c] <= 24]
        terminal.console.print(Text("  ".join(v for v in head if v)), soft_wrap=True)
        for c in columns:
            if c not in ids and widths[c] > 24 and row[c]:
                terminal.console.print(Text(f"    {c}: {row[c]}"), soft_wrap=True)


def epoch(iso: str) -> float:
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0

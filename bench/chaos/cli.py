"""`python -m bench chaos` (`make chaos`): run the suite, write bench/chaos.json, print the table."""

from __future__ import annotations

import json
from pathlib import Path

from bench.chaos import suite
from bench.chaos.suite import CHAOS_JSON, run_chaos
from bench.chaos.tables import print_table


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench chaos", description=suite.__doc__)
    parser.add_argument("--jobs", type=int, default=500, help="jobs in all, shared by the rows (default 500)")
    parser.add_argument("--slice", action="store_true", help="the rows make test runs (no 120 s lease wait)")
    parser.add_argument("--row", action="append", help="run only this row (repeatable)")
    parser.add_argument("--shard", default="1/1", help="run every n-th row only: i/n (the test runs two at once)")
    parser.add_argument(
        "--out", type=Path, default=CHAOS_JSON, help="where to write the JSON (default bench/chaos.json)"
    )
    args = parser.parse_args(argv)
    index, shards = (int(part) for part in args.shard.split("/"))
    report = run_chaos(args.jobs, slice_only=args.slice, only=args.row, shard=(index, shards))
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print_table(report)
    print(f"wrote {args.out}")
    return 0 if report["all_ok"] else 1

"""`kling-pipeline`: one console script for the simulator, the local stack and producers/operators.

Each subcommand lives in its own module and registers itself with `register(subparsers)`; this
module only wires them together, so `kling-pipeline --help` lists everything the project offers.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    from kling_local.sim import cli as sim_cli

    parser = argparse.ArgumentParser(
        prog="kling-pipeline",
        description="Turn video requests into videos in S3 with Kling AI, on AWS or on this machine.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sim_cli.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = args.handler
    result: int = handler(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

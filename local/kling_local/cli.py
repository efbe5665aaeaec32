"""`kling-pipeline`: one console script for the simulator, the local stack and producers/operators.

Each subcommand lives in its own module and registers itself with `register(subparsers)`; this
module only wires them together, so `kling-pipeline --help` lists everything the project offers.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any


def register_local(subparsers: Any) -> None:
    from kling_local.stack import serve

    local = subparsers.add_parser("local", help="the embedded local stack (moto + functions + Kling simulator)")
    actions = local.add_subparsers(dest="action", required=True, metavar="ACTION")
    up = actions.add_parser("up", help="deploy template.yaml locally and run until Ctrl-C; prints the endpoints")
    serve.add_arguments(up)
    up.set_defaults(handler=serve.command)


def build_parser() -> argparse.ArgumentParser:
    from kling_local import commands, cost_report, demo
    from kling_local.acedata_sim import cli as acedata_sim_cli
    from kling_local.fal_sim import cli as fal_sim_cli
    from kling_local.replicate_sim import cli as replicate_sim_cli
    from kling_local.sim import cli as sim_cli

    parser = argparse.ArgumentParser(
        prog="kling-pipeline",
        description="Turn video requests into videos in S3 with Kling AI, on AWS or on this machine.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the tool does (stderr)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo.register(subparsers)
    register_local(subparsers)
    commands.register(subparsers)
    cost_report.register(subparsers)
    sim_cli.register(subparsers)
    fal_sim_cli.register(subparsers)
    replicate_sim_cli.register(subparsers)
    acedata_sim_cli.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    handler = args.handler
    result: int = handler(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

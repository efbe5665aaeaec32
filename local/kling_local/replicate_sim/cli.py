"""`kling-pipeline replicate-sim`: run the Replicate simulator in the foreground until Ctrl-C or SIGTERM.
Every ReplicateSimConfig knob is an option (`--webhook-loss-rate 0.5`), generated from the config model."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import threading
from typing import Any

from kling_local.replicate_sim.config import ReplicateSimConfig, ReplicateSimConfigError
from kling_local.replicate_sim.simulator import ReplicateSimulator
from kling_local.sim_http import knob_options


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "replicate-sim",
        help="run a local Replicate simulator for Kling's models (with fault knobs)",
        description="Serve Replicate's predictions API and a media host on this machine, with knobs for every fault.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8777, help="API port (0 = any free port)")
    parser.add_argument("--media-port", type=int, default=None, help="media port (default: port + 1; 0 = any)")
    knob_options(parser, ReplicateSimConfig, skip=("api_token", "models", "webhook_secret"))
    parser.add_argument(
        "--api-token",
        default=os.environ.get("REPLICATE_SIM_TOKEN", ReplicateSimConfig().api_token),
        help="env REPLICATE_SIM_TOKEN",
    )
    parser.set_defaults(handler=command)


def command(args: argparse.Namespace) -> int:
    knobs = {n: getattr(args, n) for n in ReplicateSimConfig.model_fields if getattr(args, n, None) is not None}
    try:
        config = ReplicateSimConfig().with_changes(knobs)
    except ReplicateSimConfigError as exc:
        print(f"replicate-sim: {exc}")
        return 2
    media_port = args.port + 1 if args.media_port is None and args.port else (args.media_port or 0)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with ReplicateSimulator(config, host=args.host, port=args.port, media_port=media_port) as sim:
        print(json.dumps({"replicate_sim": sim.base_url, "media": sim.media_base_url}), flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0

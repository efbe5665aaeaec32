"""`kling-pipeline acedata-sim`: run the AceData simulator in the foreground until Ctrl-C or SIGTERM. Every
AceDataSimConfig knob is an option (`--callback-loss-rate 0.5`), generated from the config model."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import threading
from typing import Any

from kling_local.acedata_sim.config import AceDataSimConfig, AceDataSimConfigError
from kling_local.acedata_sim.simulator import AceDataSimulator
from kling_local.sim_http import knob_options


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "acedata-sim",
        help="run a local AceData Cloud simulator for Kling's models (with fault knobs)",
        description="Serve AceData's Kling tasks API and a media host on this machine, with knobs for every fault.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8779, help="API port (0 = any free port)")
    parser.add_argument("--media-port", type=int, default=None, help="media port (default: port + 1; 0 = any)")
    knob_options(parser, AceDataSimConfig, skip=("api_token", "models"))
    parser.add_argument(
        "--api-token",
        default=os.environ.get("ACEDATA_SIM_TOKEN", AceDataSimConfig().api_token),
        help="env ACEDATA_SIM_TOKEN",
    )
    parser.set_defaults(handler=command)


def command(args: argparse.Namespace) -> int:
    knobs = {n: getattr(args, n) for n in AceDataSimConfig.model_fields if getattr(args, n, None) is not None}
    try:
        config = AceDataSimConfig().with_changes(knobs)
    except AceDataSimConfigError as exc:
        print(f"acedata-sim: {exc}")
        return 2
    media_port = args.port + 1 if args.media_port is None and args.port else (args.media_port or 0)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with AceDataSimulator(config, host=args.host, port=args.port, media_port=media_port) as sim:
        print(json.dumps({"acedata_sim": sim.base_url, "media": sim.media_base_url}), flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0

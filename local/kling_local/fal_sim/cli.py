"""`kling-pipeline fal-sim`: run the fal simulator in the foreground until Ctrl-C or SIGTERM. Every
FalSimConfig knob is an option (`--webhook-loss-rate 0.5`), generated from the config model."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import threading
from typing import Any

from kling_local.fal_sim.config import FalSimConfig, FalSimConfigError
from kling_local.fal_sim.simulator import FalSimulator

_SCALARS = (int, float, str)


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "fal-sim",
        help="run a local fal.ai queue simulator for Kling's models (with fault knobs)",
        description="Serve fal's queue API, a JWKS and a media host on this machine, with knobs for every fault.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8775, help="queue API port (0 = any free port)")
    parser.add_argument("--media-port", type=int, default=None, help="media port (default: port + 1; 0 = any)")
    for name, info in FalSimConfig.model_fields.items():
        if name in ("api_key", "model_ids"):
            continue
        kind = int if name == "seed" else info.annotation if info.annotation in _SCALARS else str
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None)
    parser.add_argument(
        "--api-key", default=os.environ.get("FAL_SIM_KEY", FalSimConfig().api_key), help="env FAL_SIM_KEY"
    )
    parser.set_defaults(handler=command)


def command(args: argparse.Namespace) -> int:
    knobs = {name: getattr(args, name) for name in FalSimConfig.model_fields if getattr(args, name, None) is not None}
    try:
        config = FalSimConfig().with_changes(knobs)
    except FalSimConfigError as exc:
        print(f"fal-sim: {exc}")
        return 2
    media_port = args.port + 1 if args.media_port is None and args.port else (args.media_port or 0)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with FalSimulator(config, host=args.host, port=args.port, media_port=media_port) as sim:
        print(json.dumps({"fal_sim": sim.base_url, "media": sim.media_base_url, "jwks": sim.jwks_url}), flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0

"""`kling-pipeline sim`: run the Kling simulator in the foreground until Ctrl-C or SIGTERM.

Every SimConfig knob is an option (`--fail-rate 0.1`, `--known-models a,b`, `--query-faults /
--no-query-faults`), generated from the config model so the two never drift apart.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import types
from typing import Any, Literal, Union, get_args, get_origin

from kling_local.sim.config import SimConfig, SimConfigError
from kling_local.sim.simulator import KlingSimulator

# Given explicitly below (or not exposed as flags).
_MANUAL = {"access_key", "secret_key", "extra_accounts", "api_key", "webhook_secret", "webhook_secret_previous"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _inner(annotation: Any) -> Any:
    """`X | None` -> X."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def register(subparsers: Any) -> None:
    """Add the `sim` subcommand to the project's console script."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "sim",
        help="run a local Kling API simulator (with fault knobs)",
        description="Serve Kling's video API and a result CDN on this machine, with knobs for every fault.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="API port (0 = any free port)")
    parser.add_argument("--cdn-port", type=int, default=None, help="CDN port (default: API port + 1; 0 = any)")
    parser.add_argument(
        "--access-key",
        default=os.environ.get("KLING_SIM_ACCESS_KEY", SimConfig.model_fields["access_key"].default),
        help="the access key clients sign with (env KLING_SIM_ACCESS_KEY)",
    )
    parser.add_argument(
        "--secret-key",
        default=os.environ.get("KLING_SIM_SECRET_KEY", SimConfig.model_fields["secret_key"].default),
        help="the secret key clients sign with (env KLING_SIM_SECRET_KEY; never logged)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("KLING_SIM_API_KEY", SimConfig.model_fields["api_key"].default),
        help="the API key clients may send instead of a JWT, on both designs (env KLING_SIM_API_KEY; never logged)",
    )
    parser.add_argument(
        "--webhook-secret",
        default=os.environ.get("KLING_SIM_WEBHOOK_SECRET"),
        help="whsec_...: sign every callback (Standard Webhooks) (env KLING_SIM_WEBHOOK_SECRET; default: unsigned)",
    )
    parser.add_argument(
        "--webhook-secret-previous",
        default=os.environ.get("KLING_SIM_WEBHOOK_SECRET_PREVIOUS"),
        help="whsec_...: a rotation window, the old secret's signature sent too "
        "(env KLING_SIM_WEBHOOK_SECRET_PREVIOUS)",
    )
    parser.add_argument(
        "--extra-account",
        action="append",
        default=[],
        metavar="AK=SK",
        help="another account (its own concurrency and budget); repeatable",
    )
    parser.add_argument("--knobs", metavar="JSON", help="knobs as a JSON object, e.g. '{\"fail_rate\": 0.1}'")
    parser.add_argument("--log-level", default="WARNING", help="logging level on stderr (default WARNING)")
    knobs = parser.add_argument_group("knobs (see kling_local.sim.config.SimConfig)")
    for name, info in SimConfig.model_fields.items():
        if name in _MANUAL:
            continue
        annotation = _inner(info.annotation)
        help_text = info.description or name.replace("_", " ")
        if info.default_factory is None:
            help_text += f" (default: {info.default})"
        if annotation is bool:
            knobs.add_argument(
                _flag(name),
                dest=f"knob_{name}",
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        elif get_origin(annotation) is Literal:
            knobs.add_argument(
                _flag(name), dest=f"knob_{name}", choices=[str(a) for a in get_args(annotation)], help=help_text
            )
        elif get_origin(annotation) is list:
            knobs.add_argument(
                _flag(name), dest=f"knob_{name}", metavar="A,B,...", help=help_text + " (comma-separated)"
            )
        else:
            knobs.add_argument(
                _flag(name),
                dest=f"knob_{name}",
                metavar=getattr(annotation, "__name__", "VALUE").upper(),
                help=help_text,
            )
    parser.set_defaults(handler=run)


def build_config(args: argparse.Namespace) -> SimConfig:
    """SimConfig from parsed options: --knobs first, then individual flags on top."""
    values: dict[str, Any] = {}
    if args.knobs:
        loaded = json.loads(args.knobs)
        if not isinstance(loaded, dict):
            raise SimConfigError("--knobs must be a JSON object")
        values.update(loaded)
    for name, info in SimConfig.model_fields.items():
        raw = getattr(args, f"knob_{name}", None)
        if raw is None:
            continue
        if get_origin(_inner(info.annotation)) is list:
            values[name] = [part.strip() for part in str(raw).split(",") if part.strip()]
        else:
            values[name] = raw
    accounts: dict[str, str] = {}
    for item in args.extra_account:
        key, sep, secret = item.partition("=")
        if not sep or not key or not secret:
            raise SimConfigError("--extra-account takes AK=SK")
        accounts[key] = secret
    values.update(access_key=args.access_key, secret_key=args.secret_key, extra_accounts=accounts)
    values.update(api_key=args.api_key or None)
    for name in ("webhook_secret", "webhook_secret_previous"):
        if getattr(args, name):
            values[name] = getattr(args, name)
    return SimConfig().updated(values)


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C or SIGTERM; print one line with the URLs once listening."""
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = build_config(args)
    except (SimConfigError, ValueError) as exc:
        print(f"kling-pipeline sim: {exc}", file=sys.stderr)
        return 2
    cdn_port = args.cdn_port if args.cdn_port is not None else (args.port + 1 if args.port else 0)
    simulator = KlingSimulator(config, host=args.host, port=args.port, cdn_port=cdn_port)
    try:
        simulator.start()
    except OSError as exc:
        print(f"kling-pipeline sim: cannot listen on {args.host}:{args.port}/{cdn_port}: {exc}", file=sys.stderr)
        return 1
    done = threading.Event()
    previous: Any = None
    try:
        try:
            previous = signal.signal(signal.SIGTERM, lambda *_: done.set())
        except ValueError:  # not the main thread (embedded use): Ctrl-C / stop() only
            previous = None
        print(f"Kling simulator ready at {simulator.base_url} (CDN {simulator.cdn_base_url})", flush=True)
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        simulator.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0

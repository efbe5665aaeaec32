"""Run the local stack in the foreground until Ctrl-C or SIGTERM (`kling-pipeline local up`).

`add_arguments()` + `options_from_args()` let the CLI reuse the flags; `run_forever()` prints the
endpoints (or one JSON object with --json, for scripts) and stops everything cleanly on a signal.
Kling keys are read from KLING_ACCESS_KEY / KLING_SECRET_KEY (never from flags: `ps` shows those)
and never printed.

With --kling-url (a real Kling, whose videos are paid) the stack's in-memory state is said plainly at
start, each completed video is copied to --out as it lands, and on stop the jobs still live at Kling
are listed with their task ids and written to a file (kling_local.stack.keeper).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any

from kling_local.aws_faults import AwsFaults
from kling_local.stack.moto_server import DeployError
from kling_local.stack.stack import LocalStack, StackError, StackOptions
from kling_local.stack.template_loader import TemplateError
from kling_pipeline.adapters.secrets import KlingCredentials, parse_kling_credentials
from kling_pipeline.errors import KlingKeysMissingError

if TYPE_CHECKING:
    from kling_local.stack.keeper import KeptSummary, VideoKeeper

log = logging.getLogger(__name__)

DEFAULT_VIDEOS_DIR = "kling-videos"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--template", type=Path, default=Path("template.yaml"), help="SAM template to deploy")
    parser.add_argument("--project-root", type=Path, default=Path(), help="where the state file and logs go")
    parser.add_argument("--json", action="store_true", help="print the endpoints as one JSON object")
    parser.add_argument("--clock-speed", type=float, default=1.0, help="schedules run this many times faster")
    parser.add_argument("--api-port", type=int, default=0, help="local API port (0 = any free port)")
    parser.add_argument("--moto-port", type=int, default=0, help="moto port (0 = any free port)")
    parser.add_argument(
        "--kling-url",
        default=None,
        help="use this Kling instead of the simulator (keys from KLING_ACCESS_KEY / KLING_SECRET_KEY)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"with --kling-url: where each completed video is copied as it lands "
        f"(default {DEFAULT_VIDEOS_DIR}/ under --project-root)",
    )
    parser.add_argument(
        "--kling-keys-file",
        type=Path,
        default=None,
        help='with --kling-url: a JSON file {"api_key": ...} or {"access_key": ..., "secret_key": ...} (or all '
        "three) instead of the environment",
    )
    parser.add_argument(
        "--kling-webhook-secret-file",
        type=Path,
        default=None,
        help="a file holding Kling's webhook secret (whsec_..., two space-separated during a rotation): signed "
        "callbacks are verified and acted on without a GET (a file, not a flag's value, which `ps` shows)",
    )
    parser.add_argument(
        "--fal-url",
        default=None,
        help="use this fal queue instead of the fal simulator (a `kling-pipeline fal-sim`, or fal's own; key from "
        "FAL_KEY); its JWKS is its own on this machine, fal's otherwise (--param FalJwksUrl=... to change it)",
    )
    parser.add_argument(
        "--sim-speed",
        type=float,
        default=None,
        help="the simulator's speed factor (the pipeline's expectations of Kling's time are scaled with it)",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="template parameter override (repeatable)",
    )
    parser.add_argument("--max-concurrency", type=int, default=4, help="execution environments per function")
    add_aws_faults_argument(parser)
    parser.add_argument("--stack-name", default="kling-pipeline")


def add_aws_faults_argument(parser: Any) -> None:
    parser.add_argument(
        "--aws-faults",
        type=float,
        default=0.0,
        metavar="RATE",
        help="answer this share of the pipeline's AWS requests as AWS sometimes does: DynamoDB throttling and "
        "transaction conflicts, PutEvents' failed entries, 5xx from S3, SQS, Step Functions and Lambda (0 = none)",
    )


def aws_faults_from(rate: float, seed: int | None = None) -> AwsFaults | None:
    if not 0.0 <= rate <= 1.0:
        raise SystemExit(f"--aws-faults takes a share of requests from 0 to 1, not {rate}")
    return AwsFaults(rate=rate, seed=seed) if rate else None


def options_from_args(args: argparse.Namespace) -> StackOptions:
    overrides: dict[str, str] = {}
    for item in args.param:
        name, sep, value = str(item).partition("=")
        if not sep or not name:
            raise SystemExit(f"--param needs NAME=VALUE, got {item!r}")
        overrides[name] = value
    sim_config = None
    if args.sim_speed is not None and not args.kling_url:
        from kling_local.sim import SimConfig

        sim_config = SimConfig(
            access_key=f"local-{secrets.token_hex(8)}", secret_key=secrets.token_urlsafe(32), speed=args.sim_speed
        )
    keys = kling_keys(args.kling_url, args.kling_keys_file)
    fal_url = getattr(args, "fal_url", None)
    fal_key = fal_api_key(fal_url)
    fal_sim_config = None
    if args.sim_speed is not None and not fal_url:
        from kling_local.fal_sim import FalSimConfig

        fal_sim_config = FalSimConfig(api_key=f"local-fal-{secrets.token_hex(8)}", speed=args.sim_speed)
    return StackOptions(
        template_path=Path(args.template).resolve(),  # relative to where the command runs
        project_root=args.project_root,
        kling_url=args.kling_url,
        kling_access_key=keys.access_key if keys else None,
        kling_secret_key=keys.secret_key if keys else None,
        kling_api_key=keys.api_key if keys else None,
        sim_config=sim_config,
        clock_speed=args.clock_speed,
        time_scale=sim_config.speed if sim_config is not None else 1.0,
        parameter_overrides=overrides,
        api_port=args.api_port,
        moto_port=args.moto_port,
        stack_name=args.stack_name,
        max_concurrency=args.max_concurrency,
        aws_faults=aws_faults_from(args.aws_faults),
        kling_webhook_secret=kling_webhook_secret(args.kling_webhook_secret_file),
        fal_url=fal_url,
        fal_api_key=fal_key,
        fal_sim_config=fal_sim_config,
    )


def fal_api_key(fal_url: str | None) -> str | None:
    """fal's key for a given fal queue, from FAL_KEY (never from a flag: `ps` shows those)."""
    if not fal_url:
        return None
    key = os.environ.get("FAL_KEY", "").strip()
    if not key:
        raise SystemExit("--fal-url needs fal's key in FAL_KEY (a `kling-pipeline fal-sim`'s is its --api-key)")
    return key


def kling_webhook_secret(path: Path | None) -> str | None:
    """The secret(s) in `path`, checked for Kling's form (the message never quotes them)."""
    if path is None:
        return None
    from kling_pipeline.adapters.kling_signatures import kling_signers
    from kling_pipeline.errors import ConfigError

    try:
        value = " ".join(path.read_text(encoding="utf-8").split())
        kling_signers(value.split())
    except (OSError, UnicodeError) as exc:
        raise SystemExit(f"--kling-webhook-secret-file {path}: cannot read it ({type(exc).__name__})") from exc
    except ConfigError as exc:
        raise SystemExit(f"--kling-webhook-secret-file {path}: {exc}") from exc
    if not value:
        raise SystemExit(f"--kling-webhook-secret-file {path}: the file is empty")
    return value


def kling_keys(kling_url: str | None, keys_file: Path | None) -> KlingCredentials | None:
    """Keys for a real Kling: from a JSON file, else KLING_API_KEY and/or KLING_ACCESS_KEY / KLING_SECRET_KEY
    (never from flags). Either kind, or both, read by the rules the deployed functions read the secret by."""
    if not kling_url:
        return None
    if keys_file is not None:
        try:
            data = json.loads(keys_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SystemExit(f"--kling-keys-file {keys_file}: cannot read a JSON object ({exc})") from exc
        where, how = f"--kling-keys-file {keys_file}", f"in {keys_file}"
    else:
        names = {"api_key": "KLING_API_KEY", "access_key": "KLING_ACCESS_KEY", "secret_key": "KLING_SECRET_KEY"}
        data = {field: os.environ[name] for field, name in names.items() if os.environ.get(name)}
        where, how = (
            "the environment",
            "as KLING_API_KEY and/or KLING_ACCESS_KEY and KLING_SECRET_KEY, or --kling-keys-file",
        )
    try:
        return parse_kling_credentials(data, where=where, how=how)
    except KlingKeysMissingError as exc:
        raise SystemExit(f"--kling-url needs keys: {exc}") from None


def describe(endpoints: dict[str, str]) -> str:
    width = max(len(k) for k in endpoints)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in endpoints.items())


def in_memory_notice(kling_url: str, videos_dir: Path) -> str:
    return (
        f"Kling: {kling_url} (a real Kling: every task is paid)\n"
        "Job state is in memory (moto): when this process stops, every job record, queue message and the\n"
        "stack's S3 copy of every video are gone. So that nothing paid is lost:\n"
        f"  - each completed video is copied as it lands to {videos_dir} (named <job_id>.mp4)\n"
        "  - on stop (Ctrl-C), the videos stored so far are copied there, and the jobs still running at\n"
        f"    Kling are printed with their task ids and written to {videos_dir}/unfinished-jobs-<time>.jsonl\n"
    )


def describe_kept(summary: KeptSummary, videos_dir: Path) -> str:
    lines = [
        f"{len(summary.videos)} video(s) kept in {videos_dir} ({len(summary.copied_at_stop)} copied while stopping)"
    ]
    lines += [f"NOT kept: {failure}" for failure in summary.failed]
    if not summary.live:
        lines.append("no live jobs: nothing was left running at Kling")
        return "\n".join(lines) + "\n"
    lines.append(
        f"{len(summary.live)} job(s) still live at Kling (it may finish and charge them; look them up by task id):"
    )
    lines += [f"  {job.line()}" for job in summary.live]
    lines.append(f"listed in {summary.live_file} (JSON lines)")
    return "\n".join(lines) + "\n"


def run_forever(
    options: StackOptions,
    *,
    json_output: bool = False,
    out: IO[str] | None = None,
    stop_event: threading.Event | None = None,
    on_ready: Callable[[LocalStack], None] | None = None,
    videos_dir: Path | None = None,
) -> int:
    """Start the stack, print its endpoints, wait for Ctrl-C / SIGTERM (or `stop_event`), stop it.
    With `videos_dir` (a real Kling), completed videos are kept there and live jobs listed on stop."""
    out = out or sys.stdout
    notices = sys.stderr if json_output else out  # --json keeps stdout to the one JSON object
    keeper: VideoKeeper | None = None
    stop = stop_event or threading.Event()
    previous: dict[int, Any] = {}

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, request_stop)
    stack = LocalStack(options)
    started = False
    try:
        stack.start()
        started = True
        if videos_dir is not None and stack.endpoints.get("jobs_table") and stack.endpoints.get("video_bucket"):
            # Imported here: the keeper reads jobs through kling_local.connection, which imports this package.
            from kling_local.stack.keeper import VideoKeeper, event_bus_of

            environments = [f.environment for f in stack.deployment.functions.values()] if stack.deployment else []
            keeper = VideoKeeper(stack.endpoints, videos_dir, event_bus=event_bus_of(environments)).start()
        if json_output:
            out.write(json.dumps(stack.endpoints | ({"videos_dir": str(keeper.out_dir)} if keeper else {})) + "\n")
        else:
            out.write("kling-pipeline local stack is up (Ctrl-C to stop)\n" + describe(stack.endpoints) + "\n")
        out.flush()
        if keeper is not None:
            notices.write(in_memory_notice(stack.endpoints["kling_base_url"], keeper.out_dir))
            notices.flush()
        if on_ready is not None:
            on_ready(stack)
        while not stop.wait(0.5):
            pass
        return 0
    finally:
        if keeper is not None:
            # Before moto goes: what is stored is copied, and what is live is written down.
            notices.write("stopping: keeping the stored videos and listing the live jobs...\n")
            notices.flush()
            try:
                notices.write(describe_kept(keeper.stop(), keeper.out_dir))
            except Exception as exc:  # the stack must still stop; say what could not be kept
                log.exception("keeping videos on stop")
                notices.write(f"could not finish keeping videos ({exc}); see {keeper.out_dir}\n")
            notices.flush()
        stack.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if started and not json_output:
            out.write("local stack stopped\n")
            out.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kling_local.stack", description=__doc__)
    add_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return command(args)


def command(
    args: argparse.Namespace,
    *,
    out: IO[str] | None = None,
    stop_event: threading.Event | None = None,
    on_ready: Callable[[LocalStack], None] | None = None,
) -> int:
    """The `local up` handler: run until stopped; a stack that cannot start is one line on stderr.
    Against a real Kling (--kling-url), completed videos are kept in --out."""
    videos_dir = (
        (Path(args.out) if args.out else Path(args.project_root) / DEFAULT_VIDEOS_DIR) if args.kling_url else None
    )
    try:
        return run_forever(
            options_from_args(args),
            json_output=args.json,
            out=out,
            stop_event=stop_event,
            on_ready=on_ready,
            videos_dir=videos_dir,
        )
    except (StackError, TemplateError, DeployError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

"""`LocalStack`: template.yaml running on this machine, no AWS account and no Docker needed.

start(): moto in-process -> the Kling simulator (or a given Kling) and the fal simulator (or a given
fal) -> the API server's port -> template translated and deployed into moto -> Kling's and fal's keys
into their credentials secrets -> the function runtime, SQS pollers, API server and schedule clock.
stop() undoes all of it, in reverse, and leaves no process behind. Nothing in the pipeline's code knows it runs locally.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import logging
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from kling_local.stack.api import ApiServer
from kling_local.stack.clock import ScheduleClock
from kling_local.stack.deploy import Deployment, ScheduleConfig, deploy
from kling_local.stack.iam import role_sessions
from kling_local.stack.moto_lambda import install_moto_hook, uninstall_moto_hook
from kling_local.stack.moto_server import AwsTarget, MotoServer
from kling_local.stack.runtime import FunctionRuntime, Invocation
from kling_local.stack.sqs_source import SqsEventSource
from kling_local.stack.template import prepare
from kling_local.stack.template_loader import load_template, parameter_defaults

if TYPE_CHECKING:
    from kling_local.acedata_sim import AceDataSimConfig, AceDataSimulator
    from kling_local.aws_faults import AwsFaults
    from kling_local.fal_sim import FalSimConfig, FalSimulator
    from kling_local.replicate_sim import ReplicateSimConfig, ReplicateSimulator
    from kling_local.sim import KlingSimulator, SimConfig

log = logging.getLogger(__name__)

STATE_DIR = ".kling-pipeline"
STATE_FILE = "local-stack.json"
REGION = "us-east-1"

# endpoint key -> (template output, logical id to fall back on)
_ENDPOINT_OUTPUTS = {
    "jobs_queue_url": ("JobsQueueUrl", "JobsQueue"),
    "dead_letter_queue_url": ("JobsDeadLetterQueueUrl", "JobsDeadLetterQueue"),
    "jobs_table": ("JobsTableName", "JobsTable"),
    "stats_table": ("StatsTableName", "StatsTable"),
    "video_bucket": ("VideoBucketName", "VideoBucket"),
    "state_machine_arn": ("DownloadStateMachineArn", "DownloadStateMachine"),
    "jobs_api_url": ("JobsApiUrl", "JobsApi"),
    "input_bucket": ("InputBucketName", "InputBucketName"),
}
# The bucket s3:// input images come from locally (a user's own bucket on AWS: the stack creates it).
LOCAL_INPUT_BUCKET = "kling-pipeline-inputs"


KLING_WEBHOOK_SECRET = "KlingWebhookSecret"  # noqa: S105 - the template's logical id of Kling's webhook secret
FAL_CREDENTIALS = "FalCredentials"  # the template's logical id of fal's key secret
REPLICATE_CREDENTIALS = "ReplicateCredentials"  # Replicate's API token
REPLICATE_WEBHOOK_SECRET = "ReplicateWebhookSecret"  # noqa: S105 - its webhook secret, the callback's alone
ACEDATA_CREDENTIALS = "AceDataCredentials"  # AceData's token


def generate_kling_webhook_secret() -> str:
    """A fresh secret in Kling's form (`whsec_` + base64 of 32 random bytes), for the stack and a simulator
    that signs its callbacks with it."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class StackError(RuntimeError):
    """The local stack cannot start as configured; the message says what to change."""


@dataclass
class StackOptions:
    """How to run the local stack. Only template_path/project_root are usually needed."""

    template_path: Path = Path("template.yaml")
    project_root: Path = Path()
    kling_url: str | None = None  # None: start the Kling simulator
    kling_access_key: str | None = None
    kling_secret_key: str | None = None
    kling_api_key: str | None = None  # with kling_url: Kling's API key (both designs); either kind, or both
    sim_config: SimConfig | None = None  # the simulator's knobs (random keys when None)
    clock_speed: float = 1.0  # schedules run this many times faster than the wall clock
    # Kling's time runs this many times faster than the wall clock (the simulator's speed): the
    # pipeline's own expectations of it (generation times, poll intervals, timeouts) are scaled alike.
    time_scale: float = 1.0
    parameter_overrides: Mapping[str, Any] = field(default_factory=dict)  # on top of the local defaults
    api_port: int = 0
    moto_port: int = 0
    stack_name: str = "kling-pipeline"
    max_concurrency: int = 4  # execution environments per function (caps SQS MaximumConcurrency)
    log_dir: Path | None = None  # function logs; default <project_root>/.kling-pipeline/logs
    write_state_file: bool = True
    init_timeout_s: float = 60.0  # a cold start's import time on a loaded machine
    kling_credentials_secret: str = "KlingCredentials"  # noqa: S105 - logical id of the secret that gets the keys
    # Kling's webhook secret(s) ("whsec_..."; two space-separated mid-rotation) for KlingWebhookSecret: signed
    # callbacks are then verified and trusted. None: the template's "none" (callbacks are hints, confirmed by GETs).
    kling_webhook_secret: str | None = None
    # AWS's unkind answers at a rate (throttling, 5xx, PutEvents' failed entries, transaction conflicts)
    # for the pipeline's own requests: kling_local.aws_faults. None: moto answers everything.
    aws_faults: AwsFaults | None = None
    # Each function signs with its execution role's session and moto's IAM judges it (off: the stack's keys).
    enforce_iam: bool = True
    # fal.ai's door: None starts the fal simulator beside Kling's (fal_sim_config its knobs); a URL uses that
    # fal queue with fal_api_key (a `kling-pipeline fal-sim` on this machine, or fal's own).
    fal_url: str | None = None
    fal_api_key: str | None = None
    fal_jwks_url: str | None = None  # with fal_url: its JWKS (default: a loopback fal-sim's own, else fal's)
    fal_sim_config: FalSimConfig | None = None
    # Replicate's and AceData's doors: their simulators beside Kling's, with these knobs (None: defaults at
    # the clock's speed). Each is enabled by its secret, which the stack fills with the simulator's keys.
    replicate_sim_config: ReplicateSimConfig | None = None
    acedata_sim_config: AceDataSimConfig | None = None


class LocalStack:
    """The whole pipeline on 127.0.0.1. Use as a context manager, or start()/stop()."""

    def __init__(self, options: StackOptions | None = None) -> None:
        self.options = options or StackOptions()
        self.project_root = self.options.project_root.resolve()
        template = self.options.template_path
        self.template_path = (template if template.is_absolute() else self.project_root / template).resolve()
        self.simulator: KlingSimulator | None = None
        self.fal_simulator: FalSimulator | None = None
        self.replicate_simulator: ReplicateSimulator | None = None
        self.acedata_simulator: AceDataSimulator | None = None
        self.deployment: Deployment | None = None
        self.runtime: FunctionRuntime | None = None
        self.sources: list[SqsEventSource] = []
        self.clock: ScheduleClock | None = None
        self.endpoints: dict[str, str] = {}
        self.outputs: dict[str, str] = {}
        self._moto: MotoServer | None = None
        self._api: ApiServer | None = None
        self._aws: AwsTarget | None = None
        self._state_file = self.project_root / STATE_DIR / STATE_FILE
        self._started = False
        self._clients: dict[str, Any] = {}
        self._input_bucket = ""

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> LocalStack:
        if self._started:
            return self
        if not self.template_path.is_file():
            raise StackError(f"no template at {self.template_path} (set --template, or StackOptions.template_path)")
        if self.options.write_state_file:
            self._refuse_beside_a_live_stack()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        opts = self.options
        started = time.monotonic()
        self._moto = MotoServer(port=opts.moto_port, enforce_iam=opts.enforce_iam)
        self._aws = AwsTarget(self._moto.start(), REGION)
        if opts.aws_faults is not None:
            from kling_local.aws_faults import AWS_FAULTS

            AWS_FAULTS.configure(opts.aws_faults)
        kling_url, cdn_url, credentials = self._start_kling()
        fal = self._start_fal()
        doors = self._start_doors()
        self._api = ApiServer(port=opts.api_port)

        parameters = self._parameters(kling_url, cdn_url, fal, doors)
        local = prepare(
            self.template_path,
            parameters,
            api_origin=self._api.origin,
            stack_name=opts.stack_name,
            region=REGION,
            account="123456789012",
        )
        stage = local.routes[0].stage if local.routes else "v1"
        if "PublicApiBaseUrl" in parameters and "PublicApiBaseUrl" not in opts.parameter_overrides:
            local.parameters["PublicApiBaseUrl"] = f"{self._api.origin}/{stage}"
        self.deployment = deployment = deploy(local, self._aws, opts.stack_name)
        self._put_kling_credentials(credentials)
        self._put_fal_credentials(fal.api_key)
        for door in doors:
            self._put_secret(door.secret, door.credentials)
            for logical_id, value in door.plain_secrets.items():
                self._put_secret(logical_id, value)
        if opts.kling_webhook_secret:
            self.put_kling_webhook_secret(opts.kling_webhook_secret)
        self._input_bucket = str(local.parameters.get("InputBucketName") or "")
        self._create_input_bucket(self._input_bucket)

        log_dir = opts.log_dir or self.project_root / STATE_DIR / "logs"
        self.runtime = FunctionRuntime(
            deployment.functions,
            self._aws,
            log_dir=log_dir,
            max_concurrency=opts.max_concurrency,
            init_timeout_s=opts.init_timeout_s,
            credentials=role_sessions(self._aws, deployment.functions) if opts.enforce_iam else None,
        )
        install_moto_hook(self.runtime)
        self._api.serve(deployment.routes, self.runtime.invoke)
        for source in deployment.sqs_sources:
            event_source = SqsEventSource(
                source,
                functools.partial(self._aws.client, "sqs"),
                self.runtime.invoke,
                region=self._aws.region,
                max_pollers=opts.max_concurrency,
            )
            self.sources.append(event_source)
            event_source.start()
        self.clock = ScheduleClock(deployment.schedules, self._dispatch_schedule, REGION, speed=opts.clock_speed)
        self.clock.start()

        self.outputs = dict(deployment.outputs)
        self.endpoints = self._endpoints(kling_url, cdn_url, stage, str(log_dir)) | fal.endpoints()
        for door in doors:
            self.endpoints |= {f"{door.name}_base_url": door.base_url, f"{door.name}_media_url": door.media_hosts}
        if opts.write_state_file:
            self._write_state_file()
        self._started = True
        log.info("local stack %s up in %.1f s", opts.stack_name, time.monotonic() - started)

    def stop(self) -> None:
        """Tear everything down in reverse order; safe to call twice and after a failed start."""
        if self.options.write_state_file:
            self._remove_state_file()
        if self.clock is not None:
            self.clock.stop()
        for source in self.sources:
            source.stop()
        self.sources = []
        if self._api is not None:
            self._api.stop()
            self._api = None
        if self.runtime is not None:
            uninstall_moto_hook(self.runtime)
            self.runtime.stop()
        self._clients.clear()
        if self._moto is not None:
            if self.options.aws_faults is not None:
                from kling_local.aws_faults import AWS_FAULTS

                AWS_FAULTS.configure(None)
            self._moto.stop()
            self._moto = None
        if self.simulator is not None:
            self.simulator.stop()
        if self.fal_simulator is not None:
            self.fal_simulator.stop()
        for simulator in (self.replicate_simulator, self.acedata_simulator):
            if simulator is not None:
                simulator.stop()
        self._started = False

    # -- pieces of start() -----------------------------------------------------------------------

    def _start_kling(self) -> tuple[str, str, dict[str, str]]:
        """Kling's URL, its CDN's (the simulator's; "" for a real Kling), and the credentials to store."""
        opts = self.options
        if opts.kling_url:
            keys = {
                "api_key": opts.kling_api_key,
                "access_key": opts.kling_access_key,
                "secret_key": opts.kling_secret_key,
            }
            if not opts.kling_api_key and not (opts.kling_access_key and opts.kling_secret_key):
                raise StackError(
                    "kling_url needs kling_api_key, or kling_access_key and kling_secret_key (or all three)"
                )
            return opts.kling_url.rstrip("/"), "", {k: v for k, v in keys.items() if v}
        from kling_local.sim import KlingSimulator, SimConfig

        # Image URLs here are the stack's own (presigned moto URLs, the simulator's samples): fetch them.
        config = opts.sim_config or SimConfig(
            access_key=f"local-{secrets.token_hex(8)}", secret_key=secrets.token_urlsafe(32), fetch_image_urls=True
        )
        self.simulator = KlingSimulator(config, host="127.0.0.1", port=0, cdn_port=0).start()
        # The simulator's API key too, when it has one (it serves both designs, as Kling's does).
        api_key = getattr(config, "api_key", None)
        return (
            self.simulator.base_url.rstrip("/"),
            self.simulator.cdn_base_url.rstrip("/"),
            {"access_key": config.access_key, "secret_key": config.secret_key}
            | ({"api_key": api_key} if api_key else {}),
        )

    def _start_fal(self) -> FalDoor:
        """fal's queue, JWKS and media host, and its key: the simulator's, or those of a given fal."""
        opts = self.options
        if opts.fal_url:
            if not opts.fal_api_key:
                raise StackError("fal_url needs fal_api_key (local up: FAL_KEY in the environment)")
            url = opts.fal_url.rstrip("/")
            local = loopback_http_hosts(url)
            from kling_local.fal_sim.server import JWKS_PATH

            jwks = opts.fal_jwks_url or (f"{url}{JWKS_PATH}" if local else "")
            return FalDoor(url, jwks, local, opts.fal_api_key)
        from kling_local.fal_sim import FalSimConfig, FalSimulator

        config = opts.fal_sim_config or FalSimConfig(api_key=f"local-fal-{secrets.token_hex(8)}")
        self.fal_simulator = sim = FalSimulator(config).start()
        return FalDoor(sim.base_url.rstrip("/"), sim.jwks_url, sim.media_base_url.rstrip("/"), config.api_key)

    def _start_doors(self) -> list[SimDoor]:
        """Replicate's and AceData's simulators (their knobs, or defaults at the clock's speed), and the
        credentials that open their doors: Replicate's token in ReplicateCredentials and its webhook secret in
        ReplicateWebhookSecret (the callback's alone), as the README's deploy step stores them."""
        from kling_local.acedata_sim import AceDataSimConfig, AceDataSimulator
        from kling_local.replicate_sim import ReplicateSimConfig, ReplicateSimulator

        opts = self.options
        speed = {"speed": opts.clock_speed}
        replicate_config = opts.replicate_sim_config or ReplicateSimConfig(
            api_token=f"r8_local_{secrets.token_hex(8)}", **speed
        )
        if opts.time_scale != 1.0:
            # The pipeline's job timeout (its Cancel-After) is deployed already divided by the time scale.
            replicate_config = replicate_config.model_copy(update={"cancel_after_wall_clock": True})
        self.replicate_simulator = replicate = ReplicateSimulator(replicate_config).start()
        acedata_config = opts.acedata_sim_config or AceDataSimConfig(
            api_token=f"local-acedata-{secrets.token_hex(8)}", **speed
        )
        self.acedata_simulator = acedata = AceDataSimulator(acedata_config).start()
        return [
            SimDoor(
                "replicate",
                "ReplicateBaseUrl",
                replicate.base_url.rstrip("/"),
                replicate.media_base_url.rstrip("/"),
                REPLICATE_CREDENTIALS,
                {"api_token": replicate_config.api_token},
                {REPLICATE_WEBHOOK_SECRET: replicate.webhook_secret},
            ),
            SimDoor(
                "acedata",
                "AceDataBaseUrl",
                acedata.base_url.rstrip("/"),
                acedata.media_base_url.rstrip("/"),
                ACEDATA_CREDENTIALS,
                {"api_token": acedata_config.api_token},
            ),
        ]

    def _parameters(
        self, kling_url: str, cdn_url: str, fal: FalDoor | None = None, doors: list[SimDoor] | None = None
    ) -> dict[str, Any]:
        """Template defaults < the stack's local defaults < the caller's overrides."""
        defaults = parameter_defaults(load_template(self.template_path))
        unknown = sorted(set(self.options.parameter_overrides) - set(defaults))
        if unknown:
            raise StackError(
                f"unknown template parameter(s) {', '.join(unknown)}; "
                f"the template defines {', '.join(sorted(defaults))}"
            )
        hosts = str(defaults.get("AllowedDownloadHosts") or "")
        # An http:// entry is how the download function allows a plain-HTTP host (local mode only): the
        # simulator's CDN, or, for a Kling on this machine given by URL (`kling-pipeline sim`), any port of
        # its loopback host (its CDN listens on a port of its own).
        cdn_host = cdn_url.rstrip("/") or loopback_http_hosts(kling_url)
        fal_media = fal.media_hosts if fal is not None else ""
        door_media = tuple(door.media_hosts for door in doors or ())
        local = {
            "KlingBaseUrl": kling_url,
            "PipelineMode": "local",
            "AllowedDownloadHosts": ",".join(h for h in dict.fromkeys((hosts, cdn_host, fal_media, *door_media)) if h),
            "BackpressureBaseDelaySeconds": 1,
            "BackpressureMaxDelaySeconds": 10,
            # Longer than the simulator's query lag in its worst case (sim.config.WORST_CASE), short
            # enough for a demo; on AWS the default (60 s) covers Kling's.
            "ReconcileGraceSeconds": 5,
            # A callback's delivery and handling take real seconds here whatever the simulator's speed.
            "CallbackWaitSeconds": 10,
            "PublicApiBaseUrl": "",  # filled in once the API's stage is known
            "InputBucketName": LOCAL_INPUT_BUCKET,
            # Images may also come from the simulator's CDN (it serves sample images, over plain HTTP).
            "ImageUrlHosts": ",".join(h for h in (str(defaults.get("ImageUrlHosts") or ""), cdn_host) if h),
        }
        for door in doors or ():
            local[door.url_parameter] = door.base_url
        if fal is not None:
            local["FalQueueBaseUrl"] = fal.queue_url
            if fal.jwks_url:
                local["FalJwksUrl"] = fal.jwks_url
        values = dict(defaults)
        values.update({k: v for k, v in local.items() if k in defaults})
        values.update(scaled_durations(values, self.options.time_scale))
        if values.get("PollerRunSeconds") is not None and self.options.clock_speed != 1.0:
            # A poller run looks until the next one starts: the schedules run at the clock's speed.
            values["PollerRunSeconds"] = round(float(values["PollerRunSeconds"]) / self.options.clock_speed)
        values.update(self.options.parameter_overrides)
        return values

    def _create_input_bucket(self, name: str) -> None:
        """On AWS the input bucket is the user's; here the stack makes it, so s3:// images work."""
        if not name or self._aws is None:
            return
        s3 = self._aws.client("s3")
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket=name)

    def _put_kling_credentials(self, credentials: dict[str, str]) -> None:
        assert self.deployment is not None and self._aws is not None
        arn = self.deployment.secrets.get(self.options.kling_credentials_secret)
        if arn is None:
            log.warning("no %s secret in the template; Kling keys not stored", self.options.kling_credentials_secret)
            return
        self._aws.client("secretsmanager").put_secret_value(SecretId=arn, SecretString=json.dumps(credentials))

    def _put_fal_credentials(self, api_key: str) -> None:
        """fal's key into FalCredentials: what enables the fal door (a job naming provider fal is accepted)."""
        assert self.deployment is not None and self._aws is not None
        arn = self.deployment.secrets.get(FAL_CREDENTIALS)
        if arn is None:
            log.warning("no %s secret in the template; fal's key not stored", FAL_CREDENTIALS)
            return
        self._aws.client("secretsmanager").put_secret_value(SecretId=arn, SecretString=json.dumps({"api_key": api_key}))

    def _put_secret(self, logical_id: str, value: dict[str, str] | str) -> None:
        """A door's credentials into its secret: what enables it (a job naming its provider is accepted); a
        string (a webhook secret) as it stands."""
        assert self.deployment is not None and self._aws is not None
        arn = self.deployment.secrets.get(logical_id)
        if arn is None:
            log.warning("no %s secret in the template; not stored", logical_id)
            return
        text = value if isinstance(value, str) else json.dumps(value)
        self._aws.client("secretsmanager").put_secret_value(SecretId=arn, SecretString=text)

    def put_kling_webhook_secret(self, value: str) -> None:
        """Store Kling's webhook secret(s) in KlingWebhookSecret, as the README's deploy step does on AWS; the
        callback function reads it within SecretsMaxAgeSeconds. Never logged."""
        assert self.deployment is not None and self._aws is not None
        arn = self.deployment.secrets.get(KLING_WEBHOOK_SECRET)
        if arn is None:
            raise StackError(f"no {KLING_WEBHOOK_SECRET} secret in the template: signed callbacks cannot be verified")
        self._aws.client("secretsmanager").put_secret_value(SecretId=arn, SecretString=value)

    def _dispatch_schedule(self, config: ScheduleConfig, event: dict[str, Any]) -> None:
        assert self.runtime is not None and self._aws is not None
        target = config.target_arn
        if ":states:" in target and ":stateMachine:" in target:
            self._aws.client("stepfunctions").start_execution(
                stateMachineArn=target, name=f"{config.logical_id}-{int(time.time() * 1000)}", input=json.dumps(event)
            )
        elif self.runtime.resolve(target) is not None:
            self.runtime.invoke_async(target, event)
        else:
            log.warning("schedule %s: target %s does not run locally", config.logical_id, target)

    def _endpoints(self, kling_url: str, cdn_url: str, stage: str, log_dir: str) -> dict[str, str]:
        assert self.deployment is not None and self._aws is not None and self._api is not None
        endpoints = {
            "api_base_url": self.outputs.get("ApiBaseUrl") or f"{self._api.origin}/{stage}",
            "moto_endpoint": self._aws.endpoint,
            "kling_base_url": kling_url,
            "kling_cdn_url": cdn_url,
            "region": self._aws.region,
            "stack_name": self.deployment.stack_name,
            "log_dir": log_dir,
        }
        for key, (output, logical_id) in _ENDPOINT_OUTPUTS.items():
            endpoints[key] = self.outputs.get(output) or self.deployment.physical_id(logical_id) or ""
        endpoints["input_bucket"] = endpoints["input_bucket"] or self._input_bucket
        return endpoints

    def _refuse_beside_a_live_stack(self) -> None:
        """Two stacks writing one state file and one log folder would each hide the other: the commands
        would find only the newer, and its stop would leave them finding none."""
        running = read_state_file(self.project_root)
        if running is None or running.get("pid") == os.getpid():
            return
        raise StackError(
            f"a local stack already runs from {self.project_root} (pid {running.get('pid')}, moto at "
            f"{running.get('moto_endpoint')}): use it, stop it first, or start this one with another --project-root"
        )

    def _write_state_file(self) -> None:
        self._state_file.parent.mkdir(parents=True, exist_ok=True)
        payload = {**self.endpoints, "pid": os.getpid(), "started_at": time.time()}
        temporary = self._state_file.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        temporary.replace(self._state_file)

    def _remove_state_file(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            current = json.loads(self._state_file.read_text(encoding="utf-8"))
            ours = current.get("moto_endpoint") == self.endpoints.get("moto_endpoint")
            if current.get("pid") == os.getpid() and ours:
                self._state_file.unlink()

    # -- using the stack -------------------------------------------------------------------------

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client pointed at the stack's moto."""
        if self._aws is None:
            raise StackError("the local stack is not started")
        return self._aws.client(service, **kwargs)

    def invoke(self, function: str, event: Any) -> Invocation:
        """Invoke a function (logical id, name or ARN) synchronously in the local runtime."""
        if self.runtime is None:
            raise StackError("the local stack is not started")
        return self.runtime.invoke(function, event)

    def redeploy(self, function: str, **env: str) -> None:
        """Redeploy a function with changed environment variables (another DefaultModel, say): its
        invocations from now on run in new environments that read them; those in flight finish as they were."""
        if self.runtime is None:
            raise StackError("the local stack is not started")
        self.runtime.redeploy(function, **env)

    def aws_fault_stats(self) -> dict[str, int]:
        """How many of each AWS fault moto has answered with since the stack started."""
        from kling_local.aws_faults import AWS_FAULTS

        return AWS_FAULTS.stats()

    def function_stats(self) -> dict[str, dict[str, int]]:
        return self.runtime.stats() if self.runtime is not None else {}

    def wait_idle(self, timeout_s: float = 60.0, *, settle_s: float = 0.5, include_kling: bool = False) -> bool:
        """True once no queue holds messages (visible, in flight or delayed), no invocation runs and no
        execution is RUNNING, for `settle_s` in a row; False if that did not happen within timeout_s.
        With include_kling, the simulator must also have no task generating and no callback pending."""
        deadline = time.monotonic() + timeout_s
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            if self._busy() or (include_kling and self._kling_busy()):
                quiet_since = None
            else:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= settle_s:
                    return True
            time.sleep(0.2)
        return False

    def _cached_client(self, service: str) -> Any:
        """Clients for the stack's own frequent calls (boto3 clients are thread-safe; sessions cost)."""
        if service not in self._clients:
            self._clients[service] = self.client(service)
        return self._clients[service]

    def _kling_busy(self) -> bool:
        if self.fal_simulator is not None:
            fal = self.fal_simulator.stats()
            if fal["queued"] or fal["running"] or fal["pending_webhooks"]:
                return True
        if self.replicate_simulator is not None:
            replicate = self.replicate_simulator.stats()
            if replicate["starting"] or replicate["processing"] or replicate["pending_webhooks"]:
                return True
        if self.acedata_simulator is not None:
            acedata = self.acedata_simulator.stats()
            if acedata["processing"] or acedata["pending_callbacks"]:
                return True
        if self.simulator is None:
            return False
        stats = self.simulator.stats()
        return bool(stats["concurrency"]["current"] or stats["callbacks"]["pending"])

    def _busy(self) -> bool:
        if self.runtime is None or self._aws is None or self.deployment is None:
            return False
        if self.runtime.busy() or any(s.in_flight() for s in self.sources):
            return True
        sqs = self._cached_client("sqs")
        for source in self.sources:
            attributes = sqs.get_queue_attributes(
                QueueUrl=source.queue_url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                ],
            )["Attributes"]
            if any(int(v) for v in attributes.values()):
                return True
        sfn = self._cached_client("stepfunctions")
        for arn in self.deployment.state_machines.values():
            if sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING", maxResults=1).get("executions"):
                return True
        return False


@dataclass(frozen=True)
class FalDoor:
    """Where the stack's fal is: its queue, JWKS ("": the template's) and media host(s), and its key."""

    queue_url: str
    jwks_url: str
    media_hosts: str
    api_key: str = field(repr=False)

    def endpoints(self) -> dict[str, str]:
        return {"fal_base_url": self.queue_url, "fal_media_url": self.media_hosts}


@dataclass(frozen=True)
class SimDoor:
    """Where one of the stack's provider simulators is (its API and media host) and what opens its door."""

    name: str
    url_parameter: str  # the template parameter naming its API
    base_url: str
    media_hosts: str
    secret: str  # the template's logical id of its credentials secret
    credentials: dict[str, str] = field(repr=False)
    # Other secrets of the door, stored as they stand (Replicate's webhook secret): logical id -> value.
    plain_secrets: dict[str, str] = field(default_factory=dict, repr=False)


# Template parameters that are durations of Kling's time (scaled with the simulator's speed), and the
# least value each takes.
KLING_TIME_PARAMETERS = {
    "ExpectedStdSeconds": 1,
    "ExpectedProSeconds": 1,
    "PollIntervalSeconds": 1,
    "DownloadCheckSeconds": 1,
    "QueuedReportSeconds": 60,
    "JobTimeoutMinutes": 0.05,
    "AccountCheckSeconds": 2,  # Kling allows one account call a second
    "PoolQuietSeconds": 2,  # a pool lowered by a 1303 climbs back after quiet periods of Kling time
    "FalWebhookWindowSeconds": 1,  # an unsettled fal create waits this long in fal's time for its webhook
    "ReplicatePollWithinSeconds": 1,  # well inside the simulated hour an output lives (divided by its speed)
    "AceDataCallbackWindowSeconds": 1,
}


def scaled_durations(values: Mapping[str, Any], time_scale: float) -> dict[str, Any]:
    """The template's durations of Kling's time divided by `time_scale` (whole seconds, at their minimum)."""
    if time_scale == 1.0:
        return {}
    scaled: dict[str, Any] = {}
    for name, least in KLING_TIME_PARAMETERS.items():
        if values.get(name) is None:
            continue
        value = float(values[name]) / time_scale
        scaled[name] = max(least, round(value, 2) if isinstance(least, float) else round(value))
    return scaled


def loopback_http_hosts(kling_url: str) -> str:
    """`http://127.0.0.1:*` for a plain-HTTP Kling on a loopback address (a simulator run alone), else ""."""
    parts = urlsplit(kling_url)
    host = (parts.hostname or "").lower()
    if parts.scheme != "http" or host not in ("127.0.0.1", "localhost", "::1"):
        return ""
    return f"http://{'[::1]' if host == '::1' else host}:*"


def read_state_file(project_root: Path) -> dict[str, Any] | None:
    """The endpoints of a stack running from this project (another process), or None."""
    path = project_root / STATE_DIR / STATE_FILE
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    pid = data.get("pid")
    if isinstance(pid, int):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None  # left behind by a process that is gone
        except PermissionError:
            pass
    return data

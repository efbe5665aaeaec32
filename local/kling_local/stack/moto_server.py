"""moto in-process: one ThreadedMotoServer per process, and how every local component reaches it.

moto's state is process-global (its backends, its Step Functions engine calling localhost:$MOTO_PORT),
so `MotoServer` owns that process-wide slot while it runs and restores what it changed when it stops.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

from kling_local.moto_bridges import apply_all as apply_moto_bridges

log = logging.getLogger(__name__)

ACCOUNT_ID = "123456789012"  # moto's default account for any access key it does not know
FAKE_ACCESS_KEY = "testing"
FAKE_SECRET_KEY = "testing"  # noqa: S105 - moto accepts any credentials; these are not secrets


# One access-log line per AWS call, and a page of ERROR text for every state that fails (even when
# a Catch handles it) are noise here: failures are visible in the execution history.
_QUIET_LOGGERS = {"werkzeug": logging.WARNING, "moto.stepfunctions.parser": logging.CRITICAL}


class DeployError(RuntimeError):
    """The stack could not be created in moto; the message names the resource and moto's reason."""


@dataclass(frozen=True)
class AwsTarget:
    """How every local component reaches moto: endpoint, region and fake credentials."""

    endpoint: str
    region: str = "us-east-1"

    def client(self, service: str, **kwargs: Any) -> Any:
        config = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=60)
        session: Any = boto3.session.Session()  # a session per client: boto3's default one is not thread-safe
        return session.client(
            service,
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=FAKE_ACCESS_KEY,
            aws_secret_access_key=FAKE_SECRET_KEY,
            config=kwargs.pop("config", config),
            **kwargs,
        )

    def environment(self) -> dict[str, str]:
        """Variables that point an AWS SDK in another process at moto."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_KEY,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            # Never read the user's real profile or credentials by accident.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class MotoServer:
    """moto's ThreadedMotoServer with the configuration the local stack relies on.

    moto's state is process-global: every server in one process shares the same backends, and the
    Step Functions engine calls services at localhost:$MOTO_PORT. So one server per process, and
    `stop()` resets moto and restores what `start()` changed.
    """

    _lock = threading.Lock()
    _running: MotoServer | None = None

    def __init__(self, port: int = 0, host: str = "127.0.0.1", *, enforce_iam: bool = False) -> None:
        self.host = host
        self.port = port
        self.enforce_iam = enforce_iam  # moto's IAM authorization on for the callers it knows (stack/iam.py)
        self._saved_no_auth_count: float | None = None
        self._server: Any = None
        self._saved_config: dict[str, Any] = {}
        self._saved_env: str | None = None
        self._saved_log_levels: dict[str, int] = {}
        self._owns = False  # set once this server holds the process-wide slot

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> str:
        from moto.core.config import default_user_config
        from moto.server import ThreadedMotoServer

        with MotoServer._lock:
            if MotoServer._running is not None:
                raise DeployError(
                    "a local stack is already running in this process (moto's state is process-wide); stop it first"
                )
            MotoServer._running = self
        self._owns = True
        try:
            if self.port == 0:
                self.port = free_port(self.host)
            self._saved_config = {
                "stepfunctions": default_user_config.get("stepfunctions"),
                "lambda": default_user_config.get("lambda"),
            }
            default_user_config["stepfunctions"] = {"execute_state_machine": True}
            default_user_config["lambda"] = {"use_docker": False}
            apply_moto_bridges()
            if self.enforce_iam:
                self._enable_iam()
            self._saved_env = os.environ.get("MOTO_PORT")
            os.environ["MOTO_PORT"] = str(self.port)
            for name, level in _QUIET_LOGGERS.items():
                logger = logging.getLogger(name)
                self._saved_log_levels[name] = logger.level
                logger.setLevel(level)
            self._server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
            self._server.start()
        except BaseException:
            self._restore()
            raise
        return self.endpoint

    def _enable_iam(self) -> None:
        """moto's own switch: authorization from the first request on (`INITIAL_NO_AUTH_ACTION_COUNT`)."""
        from moto import settings

        from kling_local.moto_bridges import install_unknown_callers_are_the_account

        install_unknown_callers_are_the_account()
        self._saved_no_auth_count = settings.INITIAL_NO_AUTH_ACTION_COUNT
        settings.INITIAL_NO_AUTH_ACTION_COUNT = 0

    def reset(self) -> None:
        """Forget every resource (moto's /moto-api/reset), so the next stack in this process starts clean."""
        import urllib.request

        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST", data=b"")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - our own loopback server
                pass
        except OSError as exc:
            log.warning("could not reset moto: %s", exc)

    def stop(self) -> None:
        try:
            if self._server is not None:
                self.reset()
                self._server.stop()
                self._server = None
        finally:
            self._restore()

    def _restore(self) -> None:
        if not self._owns:
            return  # another stack's settings: not ours to undo
        self._owns = False
        from moto.core.config import default_user_config

        if self._saved_config:
            saved: dict[str, Any] = self._saved_config
            sfn: Any = saved.get("stepfunctions") or {"execute_state_machine": False}
            lam: Any = saved.get("lambda") or {"use_docker": True}
            default_user_config["stepfunctions"] = sfn
            default_user_config["lambda"] = lam
            self._saved_config = {}
        if self._saved_env is None:
            os.environ.pop("MOTO_PORT", None)
        else:
            os.environ["MOTO_PORT"] = self._saved_env
        if self._saved_no_auth_count is not None:
            from moto import settings

            settings.INITIAL_NO_AUTH_ACTION_COUNT = self._saved_no_auth_count
            self._saved_no_auth_count = None
        for name, level in self._saved_log_levels.items():
            logging.getLogger(name).setLevel(level)
        self._saved_log_levels.clear()
        with MotoServer._lock:
            if MotoServer._running is self:
                MotoServer._running = None

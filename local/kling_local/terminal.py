"""The CLI's consoles, its usage error, and the guard every command runs in: an expected failure (a bad
flag, no stack, AWS or the jobs API refusing) is one red line and exit code 2, not a traceback."""

from __future__ import annotations

import argparse
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from rich.console import Console

from kling_local.api_client import ApiClientError
from kling_local.connection import PipelineNotFoundError, connect
from kling_pipeline.errors import ImageRefusedError

console = Console()
err = Console(stderr=True)


class UsageError(RuntimeError):
    """Bad input on the command line or in a jobs file: the message names the line and field."""


def guarded(command: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            result: int = command(args, None if getattr(args, "api_url", None) else connect(args))
            return result
        except ImageRefusedError as exc:
            err.print(f"[red]error:[/red] nothing sent: {exc}")
            return 2
        except ApiClientError as exc:
            said = f"the jobs API said {exc}" if exc.status is not None else str(exc)  # no answer: nothing said
            err.print(f"[red]error:[/red] {said}")
            return 2
        except (PipelineNotFoundError, UsageError) as exc:
            err.print(f"[red]error:[/red] {exc}")
            return 2
        except NoCredentialsError:
            err.print("[red]error:[/red] AWS credentials not found: set AWS_PROFILE or AWS_ACCESS_KEY_ID and friends")
            return 2
        except ClientError as exc:
            error = exc.response.get("Error", {})
            err.print(f"[red]error:[/red] AWS said {error.get('Code')}: {error.get('Message')}")
            return 2
        except BotoCoreError as exc:
            err.print(f"[red]error:[/red] cannot reach AWS: {exc}")
            return 2

    return run

"""IAM enforced on the local stack: each function signs its calls with a session of its own execution
role, and moto's IAM authorization judges them against that role's policies, as AWS would.

moto turns its authorization on for every caller at once (`INITIAL_NO_AUTH_ACTION_COUNT`). The
stack's own machinery (deploy, the SQS event source, the schedule clock, the API server, the CLI,
tests' setup) and moto's Step Functions engine play AWS itself; they sign with keys moto does not
know, so under moto's rules they would all get InvalidClientTokenId. Here a caller moto does not know
is the account itself and is not judged; a role session (or an IAM user) is. The functions' sessions
are made once per function when the stack starts, not per invocation.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from kling_local.stack.deploy import FunctionConfig
from kling_local.stack.moto_server import AwsTarget

log = logging.getLogger(__name__)

SESSION_SECONDS = 12 * 3600  # moto does not expire sessions; the figure is what a Lambda session may last


def role_sessions(aws: AwsTarget, functions: Mapping[str, FunctionConfig]) -> dict[str, dict[str, str]]:
    """Each function's environment credentials: an STS session of its execution role (logical id ->
    AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN), as Lambda gives a function."""
    sts = aws.client("sts")
    sessions: dict[str, dict[str, str]] = {}
    for lid, config in functions.items():
        if not config.role_arn:
            log.warning("%s has no execution role: it runs with the stack's own credentials", lid)
            continue
        credentials = sts.assume_role(
            RoleArn=config.role_arn, RoleSessionName=config.name[:64], DurationSeconds=SESSION_SECONDS
        )["Credentials"]
        sessions[lid] = {
            "AWS_ACCESS_KEY_ID": str(credentials["AccessKeyId"]),
            "AWS_SECRET_ACCESS_KEY": str(credentials["SecretAccessKey"]),
            "AWS_SESSION_TOKEN": str(credentials["SessionToken"]),
        }
    return sessions

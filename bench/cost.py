"""AWS cost per 1,000 videos, from the requests a benchmark run counted, at list prices written down here.

Prices: AWS's public price pages for us-east-1 (on-demand, no free tier), as the project read them in
2025; check them before relying on the result. Storage and data transfer of the videos themselves are
the same for both systems and left out.
"""

from __future__ import annotations

import math
from typing import Any

PRICES: dict[str, dict[str, Any]] = {
    "lambda_request": {"usd": 0.20 / 1e6, "unit": "request", "source": "aws.amazon.com/lambda/pricing"},
    "lambda_gb_s_arm64": {"usd": 0.0000133334, "unit": "GB-second (arm64)", "source": "aws.amazon.com/lambda/pricing"},
    "sqs_request": {
        "usd": 0.40 / 1e6,
        "unit": "request (standard queue, 64 KiB chunk)",
        "source": "aws.amazon.com/sqs/pricing",
    },
    "sfn_transition": {
        "usd": 0.025 / 1e3,
        "unit": "state transition (standard)",
        "source": "aws.amazon.com/step-functions/pricing",
    },
    "dynamodb_wru": {
        "usd": 0.625 / 1e6,
        "unit": "write request unit (on-demand)",
        "source": "aws.amazon.com/dynamodb/pricing/on-demand",
    },
    "dynamodb_rru": {
        "usd": 0.125 / 1e6,
        "unit": "read request unit (on-demand)",
        "source": "aws.amazon.com/dynamodb/pricing/on-demand",
    },
    "api_gateway_rest": {"usd": 3.50 / 1e6, "unit": "REST API request", "source": "aws.amazon.com/api-gateway/pricing"},
    "s3_put": {"usd": 0.005 / 1e3, "unit": "PUT/COPY/POST/LIST request", "source": "aws.amazon.com/s3/pricing"},
    "s3_get": {"usd": 0.0004 / 1e3, "unit": "GET/HEAD request", "source": "aws.amazon.com/s3/pricing"},
    "eventbridge_event": {
        "usd": 1.00 / 1e6,
        "unit": "custom event put",
        "source": "aws.amazon.com/eventbridge/pricing",
    },
    "ec2_t4g_small_hour": {
        "usd": 0.0168,
        "unit": "hour (t4g.small, Linux, on-demand)",
        "source": "aws.amazon.com/ec2/pricing/on-demand",
    },
    "ebs_gp3_gb_month": {"usd": 0.08, "unit": "GB-month (gp3)", "source": "aws.amazon.com/ebs/pricing"},
}
PRICES_AS_OF = "2025 (us-east-1, on-demand, no free tier)"
HOURS_PER_MONTH = 730
MINUTES_PER_MONTH = 43_800
BASELINE_DISK_GB = 8
VOLUMES = (1_000, 10_000, 100_000)  # videos a month

S3_PUT_CLASS = (
    "PutObject",
    "CreateMultipartUpload",
    "UploadPart",
    "CompleteMultipartUpload",
    "PutObjectTagging",
    "ListObjects",
    "AbortMultipartUpload",
    "CreateBucket",
)
DYNAMO_WRITES = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem")
DYNAMO_READS = ("GetItem", "Query", "Scan", "BatchGetItem")


def price(name: str) -> float:
    return float(PRICES[name]["usd"])


def pipeline_cost(aws: dict[str, Any], item_kb: float) -> dict[str, Any]:
    """Per 1,000 completed videos (variable), and per month (fixed: the poller's schedule)."""
    completed = max(1, int(aws["completed"]))
    scale = 1000 / completed
    actions: dict[str, int] = aws["requests_by_action"]
    lambda_fns: dict[str, dict[str, Any]] = aws["lambda"]
    variable_fns = {k: v for k, v in lambda_fns.items() if k != "PollerFunction"}
    wru_per_write = max(1, math.ceil(item_kb))
    writes = sum(n for a, n in actions.items() if a.startswith("dynamodb:") and a.split(":")[1] in DYNAMO_WRITES)
    transact = sum(n for a, n in actions.items() if a == "dynamodb:TransactWriteItems")
    # The poller's shard queries are per run, not per video: they go with its schedule (fixed).
    reads = sum(
        n
        for a, n in actions.items()
        if a.startswith("dynamodb:") and a.split(":")[1] in DYNAMO_READS and a != "dynamodb:Query"
    )
    queries = int(actions.get("dynamodb:Query", 0))
    lines = {
        "lambda_requests": sum(f["invocations"] for f in variable_fns.values()) * price("lambda_request"),
        "lambda_compute": sum(f["gb_s"] for f in variable_fns.values()) * price("lambda_gb_s_arm64"),
        "sqs": int(aws["requests_by_service"].get("sqs", 0)) * price("sqs_request"),
        "step_functions": int(aws["sfn_transitions"]) * price("sfn_transition"),
        # A transaction's items cost two units each; assume two items per transaction (job + counter).
        "dynamodb": (writes * wru_per_write + transact * 2 * 2 * wru_per_write) * price("dynamodb_wru")
        + reads * math.ceil(item_kb / 4) * price("dynamodb_rru"),
        "api_gateway": int(aws["api_gateway_requests"]) * price("api_gateway_rest"),
        "s3": sum(n for a, n in actions.items() if a.startswith("s3:") and a.split(":")[1] in S3_PUT_CLASS)
        * price("s3_put")
        + sum(n for a, n in actions.items() if a.startswith("s3:") and a.split(":")[1] in ("GetObject", "HeadObject"))
        * price("s3_get"),
        "eventbridge": sum(n for a, n in actions.items() if a.endswith(":PutEvents")) * price("eventbridge_event"),
    }
    per_1000 = {k: round(v * scale, 4) for k, v in lines.items()}
    poller = lambda_fns.get("PollerFunction")
    poller_gb_s = (poller["mean_s"] * poller["memory_mb"] / 1024) if poller else 0.0
    queries_per_run = queries / poller["invocations"] if poller and poller["invocations"] else 0.0
    fixed_month = MINUTES_PER_MONTH * (
        price("lambda_request") + poller_gb_s * price("lambda_gb_s_arm64") + queries_per_run * price("dynamodb_rru")
    )
    return {
        "variable_per_1000_usd": per_1000,
        "variable_per_1000_total_usd": round(sum(per_1000.values()), 3),
        "fixed_per_month_usd": round(fixed_month, 3),
        "fixed_note": "the poller's schedule (rate(1 minute)) at its measured mean duration and DynamoDB queries per "
        "run; an idle SQS event source's long polls (a few cents a month) are not counted",
        "dynamodb_wru_per_write": wru_per_write,
        "per_1000_at_volume_usd": {str(v): round(sum(per_1000.values()) + fixed_month * 1000 / v, 3) for v in VOLUMES},
    }


def baseline_cost() -> dict[str, Any]:
    """The naive polling worker (bench/baseline.py) on an always-on t4g.small, 8 GB gp3 disk; one S3 PUT a video."""
    month = HOURS_PER_MONTH * price("ec2_t4g_small_hour") + BASELINE_DISK_GB * price("ebs_gp3_gb_month")
    per_1000_variable = 1000 * price("s3_put")
    return {
        "variable_per_1000_total_usd": round(per_1000_variable, 4),
        "fixed_per_month_usd": round(month, 2),
        "per_1000_at_volume_usd": {str(v): round(per_1000_variable + month * 1000 / v, 3) for v in VOLUMES},
    }

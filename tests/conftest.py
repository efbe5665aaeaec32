"""Process-wide test environment, set before any pipeline module is imported (as Lambda sets it)."""

import os

for _key, _value in {
    "POWERTOOLS_SERVICE_NAME": "kling-pipeline-tests",
    "POWERTOOLS_METRICS_NAMESPACE": "KlingPipelineTests",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
}.items():
    os.environ.setdefault(_key, _value)

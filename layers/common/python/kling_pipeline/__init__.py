"""The pipeline's domain, shared by every Lambda function as a layer.

Modules: models (shapes), jobs (states and the rules that move them), store (DynamoDB), kling
(API client), tokens (callback URL auth), queue (SQS), submission (the submit path),
config (settings), observability (logger, metrics, tracer).
"""

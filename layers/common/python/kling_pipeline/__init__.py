"""The pipeline's domain, shared by every Lambda function as a layer (docs/architecture.md).

The rules, which touch no AWS and no HTTP:
    lifecycle     job states, the allowed transitions, Job, Transition (every decision), observe_task / advance_job
    extend_chain  extend chains: each step's video's key, what a stored step means
    requests      JobRequest, its validation, parse_job_message, a job's stored request, the error wording
    kling_body    Kling's create bodies: a request's own (step 1) and an extend chain's next step
    storable      what DynamoDB can store: a message's numbers, text and nesting
    job_ids       what a job id may be
    capabilities  what each Kling model takes (dated, sourced facts); kinds and their endpoint paths
    images        Kling's rules for input images, and how a request refers to one
    kling_task    Kling's task object (queries and callbacks)
    errors        every error the pipeline raises, under PipelineError
    unit_estimates what a task will cost before Kling says (the budget's reservation)
    poll_schedule the stale-job poller's cadence, and the live index's shards
    settings      one settings model per function, validated at cold start
    observability logger, metrics (recorded with dimensions), tracer where tracing is on
    cold_start    the garbage collector off during a handler's init, what init made frozen after

The use cases, one per function, each building only the adapters it uses:
    submit        SubmitFunction: a queued message -> at most one Kling task
    claims        a job's claim on its task (claim, reconcile, record, back to QUEUED, park): the
                  submit path's and the poller's
    callback      CallbackFunction: Kling's webhook -> a confirmed transition
    download      DownloadFunction: the workflow's step, CDN -> S3
    poller        PollerFunction: every job gone quiet, settled
    api           ApiFunction: submit, read, query, list and cancel jobs over HTTPS (api_routes; its models: api_models)
    webhook       WebhookFunction: an ended job's event, signed, to its webhook_url

The adapters (kling_pipeline.adapters), the only modules that talk to AWS or HTTP:
    job_store (DynamoDB, and what a transition writes), job_queue (SQS), download_workflow (Step
    Functions), kling_client (Kling's API), video_transfer (streamed CDN -> S3 copy), public_addresses
    (the address rules of every outbound fetch), input_images
    (S3 header reads and presigned URLs, image URLs asked for their first bytes),
    callback_tokens (the callback URL's HMAC), secrets (Secrets Manager, cached), ledger and
    generation_estimates (StatsTable), announcements (EventBridge, waiting callers), webhook_targets
    (where a webhook may point) and webhook_sender (one signed POST), and the rest
    listed in docs/architecture.md, "Where each piece lives"
"""

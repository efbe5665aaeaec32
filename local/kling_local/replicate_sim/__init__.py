"""A local Replicate: its predictions API for Kling's models (create with a webhook and Cancel-After, get,
the list walked by cursor, cancel, the webhook secret), Standard Webhooks signing, a media host whose
outputs are deleted after the simulated hour, and knobs for every fault the contract allows (lost and
repeated webhooks with a stable webhook-id, answers lost after a create, 429s), with counters.

from kling_local.replicate_sim import ReplicateSimulator, ReplicateSimConfig
with ReplicateSimulator(ReplicateSimConfig(speed=200.0, seed=7)) as sim:
    ...  # point a client at sim.base_url, a verifier at sim.webhook_secret
"""

from kling_local.replicate_sim.config import DEFAULT_MODELS, ReplicateSimConfig, ReplicateSimConfigError
from kling_local.replicate_sim.simulator import ReplicateSimulator

__all__ = ["DEFAULT_MODELS", "ReplicateSimConfig", "ReplicateSimConfigError", "ReplicateSimulator"]

"""A local fal.ai: its queue API for Kling's models (submit, status, result, cancel), signed webhooks from a
local JWKS, a media host, and knobs for every fault the contract allows (lost and duplicated webhooks,
COMPLETED jobs whose result is a 422, result fetches that answer 504 first, answers lost after a create,
queue positions under the account's concurrency, cancel races), with counters.

from kling_local.fal_sim import FalSimulator, FalSimConfig
with FalSimulator(FalSimConfig(speed=200.0, seed=7)) as sim:
    ...  # point a client at sim.base_url, a verifier at sim.jwks_url
"""

from kling_local.fal_sim.config import DEFAULT_MODEL_IDS, FalSimConfig, FalSimConfigError
from kling_local.fal_sim.simulator import FalSimulator

__all__ = ["DEFAULT_MODEL_IDS", "FalSimConfig", "FalSimConfigError", "FalSimulator"]

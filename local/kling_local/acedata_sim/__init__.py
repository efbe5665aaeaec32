"""A local AceData Cloud: its Kling tasks API (create with a callback or synchronously, retrieve and
retrieve_batch), unsigned callbacks, a media host, and knobs for every fault the contract allows (lost,
repeated and lying callbacks: an early "succeed", a wrong video URL; batch answers missing some ids;
error envelopes; answers lost after a create), with counters.

from kling_local.acedata_sim import AceDataSimulator, AceDataSimConfig
with AceDataSimulator(AceDataSimConfig(speed=200.0, seed=7)) as sim:
    ...  # point a client at sim.base_url
"""

from kling_local.acedata_sim.config import DEFAULT_MODELS, AceDataSimConfig, AceDataSimConfigError
from kling_local.acedata_sim.simulator import AceDataSimulator

__all__ = ["DEFAULT_MODELS", "AceDataSimConfig", "AceDataSimConfigError", "AceDataSimulator"]

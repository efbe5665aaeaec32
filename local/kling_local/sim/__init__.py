"""A local Kling: Kling's video API contract plus knobs for every fault.

from kling_local.sim import KlingSimulator, SimConfig
with KlingSimulator(SimConfig(speed=200.0, seed=7)) as sim:
    ...  # point a client at sim.base_url
"""

from kling_local.sim.auth import make_token
from kling_local.sim.config import DEFAULT_MODELS, SimConfig, SimConfigError
from kling_local.sim.media import png_base64, png_bytes
from kling_local.sim.simulator import KlingSimulator

__all__ = [
    "DEFAULT_MODELS",
    "KlingSimulator",
    "SimConfig",
    "SimConfigError",
    "make_token",
    "png_base64",
    "png_bytes",
]

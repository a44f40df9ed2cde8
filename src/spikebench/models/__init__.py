"""Networks built from neurons."""

from spikebench.models.mlp import PRESETS, LeakyReadout, MLPState, SpikingMLP, preset

__all__ = ["PRESETS", "LeakyReadout", "MLPState", "SpikingMLP", "preset"]

"""Networks built from neurons."""

from spikebench.models.conv import CONV_ARCHS, ConvNet, is_residual
from spikebench.models.mlp import PRESETS, LeakyReadout, MLPState, SpikingMLP, preset

__all__ = ["CONV_ARCHS", "ConvNet", "PRESETS", "LeakyReadout", "MLPState", "SpikingMLP",
           "is_residual", "preset"]

"""Networks built from neurons: the spiking MLP (FF and REC) and its readout, conv
SNNs/ANNs (VGG, ResNet12), the hybrids' image encoders (ResNet, ViT, LeNet) and spiking
heads."""

from spikebench.models.conv import CONV_ARCHS, ConvNet, is_residual
from spikebench.models.mlp import PRESETS, LeakyReadout, MLPState, SpikingMLP, preset

__all__ = ["CONV_ARCHS", "ConvNet", "PRESETS", "LeakyReadout", "MLPState", "SpikingMLP",
           "is_residual", "preset"]

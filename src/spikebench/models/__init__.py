"""Networks built from neurons: the spiking MLP (FF and REC) and its readout, conv
SNNs/ANNs (VGG, ResNet12), the hybrids' image encoders (ResNet, ViT, LeNet) and spiking
heads."""

import torch

from spikebench.models.contracts import Probed, Unrollable
from spikebench.models.conv import CONV_ARCHS, ConvNet, is_residual
from spikebench.models.mlp import PRESETS, LeakyReadout, MLPState, SpikingMLP, preset

__all__ = ["CONV_ARCHS", "ConvNet", "PRESETS", "LeakyReadout", "MLPState", "SpikingMLP",
           "Probed", "Unrollable", "device_of", "is_residual", "preset"]


def device_of(module: torch.nn.Module) -> torch.device:
    """Where ``module`` computes: the device of its first parameter (or buffer); the CPU for
    one that holds neither. Attacks and evaluations move their inputs there."""
    for t in (*module.parameters(), *module.buffers()):
        return t.device
    return torch.device("cpu")

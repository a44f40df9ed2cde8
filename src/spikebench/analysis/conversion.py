"""ANN-SNN conversion: the CKA study's baseline (the locality paper, after Diehl et al. 2015).

A ReLU network of the SNN's topology (no hidden biases) is trained on the time-averaged
input (by the harness's one training loop: ``harness.conversion``), then converted to a
spiking MLP by data-based weight normalisation:

    lambda_k = the ``percentile`` of layer k's ReLU activations on training data
    W_k  <- W_k lambda_{k-1} / lambda_k        (lambda_0 = 1: the SNN sees the raw frames)
    W_out <- W_out lambda_L, bias unchanged

with integrate-and-fire neurons (LIF with alpha = 0: no synaptic filter, beta = 1: no
leak, threshold 1, subtractive reset) and a readout without leak (kappa = 0), decided by
the mean over time. An IF neuron with subtractive reset fires at the rate
current / threshold (capped at one spike per step), so the rates of layer k approximate
``a_k / lambda_k`` and the time-averaged readout approximates the ANN's logits.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from spikebench.models import SpikingMLP
from spikebench.neurons import LIFParams

IF_PARAMS = LIFParams(alpha=0.0, beta=1.0, threshold=1.0, reset="subtract")


class ReLUMLP(nn.Module):
    """sizes = (n_in, hidden..., n_out); no biases in the hidden layers."""

    def __init__(self, sizes) -> None:
        super().__init__()
        self.sizes = tuple(sizes)
        self.hidden = nn.ModuleList(nn.Linear(a, b, bias=False)
                                    for a, b in zip(sizes[:-2], sizes[1:-1], strict=True))
        self.out = nn.Linear(sizes[-2], sizes[-1])

    def activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        acts = []
        for layer in self.hidden:
            x = torch.relu(layer(x))
            acts.append(x)
        return acts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.activations(x)[-1])


def rate_input(frames: torch.Tensor) -> torch.Tensor:
    """Sample-major frames [N, T, ...] -> time-averaged input [N, features]."""
    return frames.float().mean(1).flatten(1)


@torch.no_grad()
def convert(ann: ReLUMLP, x_train: torch.Tensor, percentile: float = 99.9) -> SpikingMLP:
    """The converted spiking MLP (see the module's docstring)."""
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must lie in (0, 100], got {percentile}")
    acts = ann.activations(x_train)
    lambdas = [1.0]
    for a in acts:
        lam = float(np.percentile(a.numpy(), percentile))
        lambdas.append(lam if lam > 0 else 1.0)
    snn = SpikingMLP(ann.sizes, recurrent=False, params=IF_PARAMS, kappa=0.0)
    for k, (layer, src) in enumerate(zip(snn.hidden, ann.hidden, strict=True)):
        layer.weight.copy_(src.weight * lambdas[k] / lambdas[k + 1])
    snn.readout.weight.copy_(ann.out.weight * lambdas[-1])
    snn.readout.bias.copy_(ann.out.bias)
    return snn

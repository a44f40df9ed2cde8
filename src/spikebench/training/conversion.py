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


# -- convolutional networks (the robust conversion, Özdenizci & Legenstein 2024) -----------
def _bn_batch_stats(model: nn.Module, train: bool) -> None:
    """BatchNorm on batch statistics (``train``), every other module in eval mode."""
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.train(train)


@torch.no_grad()
def convert_conv(ann, x_calib: torch.Tensor, params, steps: int, percentile: float = 99.7,
                 scale: float = 1.0, batch_size: int = 128, calib_steps: int | None = None,
                 coding: str = "direct"):
    """The SNN of a trained ``models.ConvNet`` ANN (``params``: its neurons' ``DLIFParams``,
    IF with hard reset in the paper), by threshold balancing on calibration images:

    1. weights, biases and BatchNorm affines copied (the same module names);
    2. layer by layer, earlier layers already spiking at their balanced thresholds, the
       SNN simulated for ``calib_steps`` steps (None: ``steps``; the reference: 100):
       theta_l = the largest over calibration batches of the ``percentile`` of layer l's
       input current (BN on batch statistics); the next weight layer's weights are
       multiplied by theta_l, so that 0/1 spikes carry the ANN's activation scale;
    3. after the loop, as the reference does, every threshold multiplied by ``scale``
       (scaling inside the loop would calibrate later layers on denser spikes); the
       folded weights keep theta_l, which changes only the readout's scale, not a spike;
    4. BatchNorm's running statistics re-estimated on the SNN's own currents (T = ``steps``).

    An ANN without BatchNorm (``batchnorm=False``, hybrid training's) skips steps 2's batch
    statistics and 4; its SNN has the same layout. ``coding``: the SNN's input coding (a
    rate code is calibrated on its own random spikes).
    """
    from spikebench.errors import ConfigError
    from spikebench.models.conv import ConvNet, is_residual

    if is_residual(ann.arch):
        raise ConfigError(f"convert_conv balances thresholds of plain (VGG) nets; {ann.arch} "
                          "has residual identity paths with no weight layer to fold into")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must lie in (0, 100], got {percentile}")
    from spikebench.models import device_of

    device = device_of(ann)  # the SNN is made and calibrated where the ANN is (its weights
    with device:  # are the ANN's, its thresholds constants: nothing drawn at random)
        snn = ConvNet(ann.arch, ann.in_channels, ann.image_size, ann.classes, neuron=params,
                      steps=calib_steps or steps, coding=coding,
                      batchnorm=ann.batchnorm).to(x_calib.dtype)
    missing, unexpected = snn.load_state_dict(ann.state_dict(), strict=False)
    assert not unexpected and all(k.endswith(("theta", "gain", "leak")) for k in missing), \
        missing
    batches = x_calib.to(device).split(batch_size)
    layers = list(snn.body) + [snn.readout]
    peaks = []
    for neuron in snn.neurons():
        neuron.record = True
        peak = 0.0
        _bn_batch_stats(snn, True)
        for xb in batches:
            snn(xb)
            q = np.percentile(neuron.last_current.detach().flatten().cpu().numpy(), percentile)
            peak = max(peak, float(q))
        neuron.record, neuron.last_current = False, None
        theta = peak if peak > 0 else 1.0
        neuron.set_threshold(theta)
        peaks.append(theta)
        after = layers[next(i for i, m in enumerate(layers) if m is neuron) + 1:]
        nxt = next(m for m in after if isinstance(m, nn.Conv2d | nn.Linear))
        nxt.weight.mul_(theta)
    for neuron, theta in zip(snn.neurons(), peaks, strict=True):
        neuron.set_threshold(scale * theta)
    snn.steps = steps
    for m in snn.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the calibration batches
    _bn_batch_stats(snn, True)
    for xb in batches:
        snn(xb)
    for m in snn.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
    return snn.eval()

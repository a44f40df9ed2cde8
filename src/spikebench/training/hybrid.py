r"""Hybrid (DIET-SNN-style) training: the regime HIRE-SNN and AGC build on (Rathi & Roy,
DIET-SNN, TNNLS 2021; Kundu et al. 2021; docs/suites/robust.md, *The papers' regime*).

1. An ANN of the SNN's architecture without BatchNorm or biases (``ConvNet(...,
   batchnorm=False)``: ReLU, dropout) is trained.
2. Its SNN is made by the conversion's threshold balancing (``conversion.convert_conv``):
   layer by layer, earlier layers already spiking, each layer's threshold theta_l is the
   ``percentile`` (DIET-SNN: 99.7) of its input current on calibration images, folded
   into the next weight layer, then every threshold is multiplied by ``scale`` (DIET-SNN
   lowers the thresholds at low T: its README trains T=5 with 0.2).
3. The SNN is fine-tuned by surrogate-gradient BPTT on weights, per-layer thresholds and
   per-layer leaks together (``diet_params``: u <- lambda_l u + W x - theta_l s, a soft
   reset, lambda_l initialised to 1 (IF), the surrogate at u / theta_l - 1), with each
   dropout mask fixed over the T steps (``models.conv.StepDropout``).

What differs from DIET-SNN's code: its surrogate is 0.3 max(0, 1 - |u / theta - 1|), ours
the registry's triangle max(0, 1 - |u / theta - 1|) (peak 1, not 0.3); its output layer
sums the last membrane over T, ours averages the readout over T (the same decision, a
scale of T in the loss's logits).
"""

from __future__ import annotations

import torch

from spikebench.errors import ConfigError
from spikebench.neurons import DLIFParams
from spikebench.training.conversion import convert_conv

PERCENTILE = 99.7  # DIET-SNN's / HIRE-SNN's threshold percentile


def diet_params(steps: int, leak: float = 1.0) -> DLIFParams:
    """The fine-tuned SNN's neurons: IF/LIF with soft reset, learnable per-layer theta
    and lambda (initialised to ``leak``), the triangle surrogate at u / theta - 1."""
    return DLIFParams(leak=leak, threshold=1.0, reset="subtract", surrogate="triangle",
                      slope=1.0, steps=steps, dynamic=False, learn_threshold=True,
                      learn_leak=True, relative=True)


def hybrid_snn(ann, x_calib: torch.Tensor, steps: int, coding: str = "direct",
               percentile: float = PERCENTILE, scale: float = 1.0,
               calib_steps: int | None = None, leak: float = 1.0):
    """Step 2: the SNN of a trained BatchNorm-free ``ConvNet`` ANN, with ``diet_params``
    neurons, for input ``coding`` (calibrated with that coding), ready for fine-tuning."""
    if ann.spiking or ann.batchnorm:
        raise ConfigError("hybrid training converts an ANN without BatchNorm (ConvNet(..., "
                          "batchnorm=False)); this network "
                          + ("is an SNN" if ann.spiking else "has BatchNorm"))
    if not scale > 0:
        raise ConfigError(f"the threshold scale must be > 0, got {scale}")
    return convert_conv(ann, x_calib, diet_params(steps, leak), steps, percentile, scale,
                        calib_steps=calib_steps, coding=coding)

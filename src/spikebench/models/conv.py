"""Convolutional networks for the robust-SNN studies (../shared/reference/robust-snn.md):
one VGG-style builder for the ANN (ReLU) and the SNN (``SpikingActivation`` neurons) of
the same architecture, with the same module names, so that conversion copies the ANN's
weights into the SNN one to one.

    conv 3x3 (no bias) - BatchNorm - activation   per number in the config
    average pooling 2x2                           per "A"
    flatten - [Linear - activation - dropout] per hidden width - Linear (the readout)

The SNN simulates T steps; the input coding turns an image into T steps of input:
``direct`` (the image is the input current at every step: the first conv/BN/neuron block
is the encoder) or ``bernoulli`` (rate coding). Every layer runs on all T steps at once
(time folded into the batch: [T B, C, H, W]) and each neuron layer scans its T steps,
which is exact for a network without recurrence. BatchNorm normalises over the T B
folded samples. The logits are the readout's output averaged over time.

Architectures: ``vgg-small`` (2 convs, the CPU default for 28x28 images), ``vgg5``
(Ding et al.'s ablation net), ``vgg11`` (VGG-11 with BN, FC 4096-4096, dropout 0.2: the
papers' CIFAR net), ``vgg16`` (VGG-16 with BN and the same classifier: AGC's net).
"""

from __future__ import annotations

import torch
from torch import nn

from spikebench.datasets.encoders import INPUT_CODINGS
from spikebench.errors import ConfigError
from spikebench.neurons import DLIFParams, SpikingActivation
from spikebench.registry import Registry

CONV_ARCHS: Registry[tuple] = Registry("conv architecture")
# (convs and pools, hidden widths of the classifier, dropout)
CONV_ARCHS.register("vgg-small", ((16, "A", 32, "A"), (128,), 0.0))
CONV_ARCHS.register("vgg5", ((64, "A", 128, 128, "A"), (1024,), 0.0))
CONV_ARCHS.register("vgg11", ((64, "A", 128, "A", 256, 256, "A", 512, 512, "A", 512, 512, "A"),
                              (4096, 4096), 0.2))
CONV_ARCHS.register("vgg16", ((64, 64, "A", 128, 128, "A", 256, 256, 256, "A", 512, 512, 512, "A",
                               512, 512, 512, "A"), (4096, 4096), 0.2))


class ConvNet(nn.Module):
    """An ANN (``neuron=None``: ReLU) or an SNN (``neuron``: its ``DLIFParams``) of one
    architecture; images [B, C, H, W] in [0, 1] -> logits [B, classes]."""

    def __init__(self, arch: str, in_channels: int, image_size: int, classes: int,
                 neuron: DLIFParams | None = None, steps: int = 4,
                 coding: str = "direct") -> None:
        super().__init__()
        convs, hidden, dropout = CONV_ARCHS.get(arch)
        INPUT_CODINGS.get(coding)
        if neuron is not None and neuron.dynamic and neuron.steps < steps:
            raise ConfigError(f"DLIF's a[t] has {neuron.steps} steps, the network runs {steps}")
        self.arch, self.neuron, self.steps, self.coding = arch, neuron, steps, coding
        self.in_channels, self.image_size, self.classes = in_channels, image_size, classes
        self.spiking = neuron is not None
        layers: list[nn.Module] = []
        channels, size = in_channels, image_size
        for c in convs:
            if c == "A":
                if size < 2:
                    raise ConfigError(f"{arch} pools {image_size}-px images below 1 px; choose "
                                  f"a net with fewer pools (one of {', '.join(CONV_ARCHS)}) "
                                  "or larger images (CIFAR: --dataset cifar10 --data-dir)")
                layers.append(nn.AvgPool2d(2))
                size //= 2
            else:
                layers += [nn.Conv2d(channels, c, 3, padding=1, bias=False),
                           nn.BatchNorm2d(c), self._act()]
                channels = c
        layers.append(nn.Flatten())
        width = channels * size * size
        for h in hidden:
            layers += [nn.Linear(width, h), self._act()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        self.body = nn.Sequential(*layers)
        self.readout = nn.Linear(width, classes)

    def _act(self) -> nn.Module:
        return SpikingActivation(self.neuron) if self.spiking else nn.ReLU()

    def neurons(self) -> list[SpikingActivation]:
        return [m for m in self.body if isinstance(m, SpikingActivation)]

    def activations(self) -> list[nn.Module]:
        """The activation modules in order (ReLUs of the ANN, neurons of the SNN)."""
        return [m for m in self.body if isinstance(m, nn.ReLU | SpikingActivation)]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[B, ...] -> [T B, ...] (time folded into the batch)."""
        steps = INPUT_CODINGS.get(self.coding)(x, self.steps)
        return steps.reshape(-1, *x.shape[1:])

    def window(self, x: torch.Tensor, steps: int, state: list | None = None,
               t0: int = 0) -> tuple[torch.Tensor, list]:
        """``steps`` steps of the SNN on image x from the neurons' membranes ``state``
        (None: rest) after step ``t0 - 1``: (the readout at each step [steps, B, classes],
        the membranes after the last step). ``forward`` is one window of T steps from rest
        averaged over time (HIRE-SNN feeds T in periods of several windows)."""
        x = x.to(self.readout.weight.dtype)
        batch = x.shape[0]
        h = INPUT_CODINGS.get(self.coding)(x, steps).reshape(-1, *x.shape[1:])
        state = list(state) if state is not None else [None] * len(self.neurons())
        k = 0
        for m in self.body:
            if isinstance(m, SpikingActivation):
                s, state[k] = m.window(h.reshape(steps, batch, *h.shape[1:]), state[k], t0)
                h, k = s.flatten(0, 1), k + 1
            else:
                h = m(h)
        return self.readout(h).reshape(steps, batch, -1), state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.readout.weight.dtype)
        if not self.spiking:
            return self.readout(self.body(x))
        batch = x.shape[0]
        h = self.encode(x)
        for m in self.body:
            if isinstance(m, SpikingActivation):
                h = m(h.reshape(self.steps, batch, *h.shape[1:])).flatten(0, 1)
            else:
                h = m(h)
        return self.readout(h).reshape(self.steps, batch, -1).mean(0)

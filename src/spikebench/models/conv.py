"""Convolutional networks for the robust-SNN studies (docs/suites/robust.md):
one VGG-style builder for the ANN (ReLU) and the SNN (the dynamics of any registered
neuron after each conv and hidden Linear: the studies' DLIF, ``SpikingActivation``, by
default) of the same architecture, with the same module names, so that conversion copies
the ANN's weights into the SNN one to one.

    conv 3x3 (no bias) - BatchNorm - activation   per number in the config
    average pooling 2x2                           per "A"
    global average pooling                        per "G"
    a basic residual block (``Residual``)         per ("res", width, stride)
    flatten - [Linear - activation - dropout] per hidden width - Linear (the readout)

The SNN simulates T steps; the input coding turns an image into T steps of input:
``direct`` (the image is the input current at every step: the first conv/BN/neuron block
is the encoder) or ``bernoulli`` (rate coding). Every layer runs on all T steps at once
(time folded into the batch: [T B, C, H, W]) and each neuron layer scans its T steps,
which is exact for a network without recurrence. BatchNorm normalises over the T B
folded samples. The logits are the readout's output averaged over time.

Architectures: ``vgg-small`` (2 convs, the CPU default for 28x28 images); the robust-SNN
references' own layouts (docs/suites/robust.md), shared by the
robust-conversion, stable-SNN and HIRE-SNN code: ``vgg5-ref`` ([64, A, 128, 128, A], FC
4096-4096) and ``vgg11-ref`` ([64, A, 128, 256, A, 512, 512, 512, A, 512, 512], FC
4096-4096, dropout 0.2 as in the conversion reference; on CIFAR both flatten 8192
features), ``--paper``'s nets; torchvision's layouts with BatchNorm, kept under their own
names: ``vgg5`` (3 convs, 2 pools, FC 1024), ``vgg11`` and ``vgg16`` (5 pools, FC
4096-4096, dropout 0.2; spikebench <= 0.1 called ``vgg11`` the papers' net, which it is
not); and
``resnet12`` (HIRE-SNN's ResNet12 in the layout of the same group's DIET-SNN code, on which
HIRE-SNN's builds: three 64-channel convs, a pool, four basic blocks of 64/128/256/512
channels with strides 1/2/2/2, dropout 0.2 inside each block, a linear readout; with
BatchNorm like our other nets, where DIET-SNN's has none); the robust-conversion and
stable-SNN references' residual nets for CIFAR: ``resnet20`` (He et al. 2016: a 16-channel
conv, three stages of three basic blocks of 16/32/64 channels, strides 1/2/2, global
average pooling, a linear readout; 1x1-conv shortcuts where the shape changes) and
``wrn16-4`` (Zagoruyko & Komodakis 2016, depth 16, widen 4: a 16-channel conv, three
groups of two blocks of 64/128/256 channels, strides 1/2/2, global average pooling, no
dropout). Their blocks are ``Residual``'s conv-BN-activation order (post-activation);
the references' WRN-16-4 is pre-activation (BN - neuron - conv in each block, one last
BN - neuron before the pooling) and mixes the shortcut and the residual by a learnt
convex combination: not reproduced here, so ``wrn16-4`` has the paper's depth, widths and
size but not that block. ``vgg16-ref`` is the robust-conversion reference's VGG-16
(torchvision's conv layout with 5 average pools, FC 512-4096-4096 on CIFAR, dropout 0.2:
the same as ``vgg16``, named for the reference).
"""

from __future__ import annotations

import torch
from torch import nn

from spikebench.datasets.encoders import INPUT_CODINGS
from spikebench.errors import ConfigError
from spikebench.models.contracts import layer_weight_groups
from spikebench.neurons import DLIFParams, NeuronDynamics, neuron_of, reference_mode
from spikebench.registry import Registry

CONV_ARCHS: Registry[tuple] = Registry("conv architecture")
# (convs, pools and residual blocks; hidden widths of the classifier; dropout: after each
# hidden Linear, and inside each residual block)
CONV_ARCHS.register("vgg-small", ((16, "A", 32, "A"), (128,), 0.0))
CONV_ARCHS.register("vgg5", ((64, "A", 128, 128, "A"), (1024,), 0.0))
CONV_ARCHS.register("vgg11", ((64, "A", 128, "A", 256, 256, "A", 512, 512, "A", 512, 512, "A"),
                              (4096, 4096), 0.2))
CONV_ARCHS.register("resnet12", ((64, 64, 64, "A", ("res", 64, 1), ("res", 128, 2),
                                  ("res", 256, 2), ("res", 512, 2)), (), 0.2))
CONV_ARCHS.register("vgg16", ((64, 64, "A", 128, 128, "A", 256, 256, 256, "A", 512, 512, 512, "A",
                               512, 512, 512, "A"), (4096, 4096), 0.2))
CONV_ARCHS.register("vgg5-ref", ((64, "A", 128, 128, "A"), (4096, 4096), 0.0))
CONV_ARCHS.register("vgg11-ref", ((64, "A", 128, 256, "A", 512, 512, 512, "A", 512, 512),
                                  (4096, 4096), 0.2))
CONV_ARCHS.register("vgg16-ref", CONV_ARCHS.get("vgg16"))
CONV_ARCHS.register("resnet20", ((16, *[("res", w, s) for w in (16, 32, 64)
                                        for s in (1 if w == 16 else 2, 1, 1)], "G"), (), 0.0))
CONV_ARCHS.register("wrn16-4", ((16, *[("res", w, s) for w in (64, 128, 256)
                                       for s in (1 if w == 64 else 2, 1)], "G"), (), 0.0))


def is_residual(arch: str) -> bool:
    return any(isinstance(c, tuple) for c in CONV_ARCHS.get(arch)[0])


class Residual(nn.Module):
    """A basic residual block: act(main(x) + shortcut(x)) with main = conv 3x3 (stride) -
    BN - act - [dropout] - conv 3x3 - BN and shortcut = identity, or conv 1x1 (stride) - BN
    where the shape changes. ``forward`` is the ANN's; a spiking ``ConvNet`` runs the
    parts itself (its neurons need the time axis)."""

    def __init__(self, channels: int, width: int, stride: int, dropout: float, act,
                 batchnorm: bool = True) -> None:
        super().__init__()
        main = [nn.Conv2d(channels, width, 3, stride=stride, padding=1, bias=False),
                *_norm(width, batchnorm), act()]
        if dropout:
            main.append(_dropout(dropout, batchnorm))
        self.main = nn.Sequential(*main, nn.Conv2d(width, width, 3, padding=1, bias=False),
                                  *_norm(width, batchnorm))
        self.shortcut = nn.Sequential() if stride == 1 and channels == width else \
            nn.Sequential(nn.Conv2d(channels, width, 1, stride=stride, bias=False),
                          *_norm(width, batchnorm))
        self.act = act()  # registered last: modules() lists the neurons in running order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.main(x) + self.shortcut(x))


class StepDropout(nn.Dropout):
    """Dropout whose mask is drawn once per sample and kept over the SNN's T steps
    (DIET-SNN's): ``forward(h, steps)`` on time-folded h [steps B, ...]; an ANN's
    (``steps`` 1) is plain dropout."""

    def forward(self, h: torch.Tensor, steps: int = 1) -> torch.Tensor:
        if not self.training or self.p == 0:
            return h
        one = h.reshape(steps, -1, *h.shape[1:])[0]
        mask = torch.empty_like(one).bernoulli_(1 - self.p) / (1 - self.p)
        return (h.reshape(steps, *one.shape) * mask).reshape(h.shape)


def _norm(channels: int, batchnorm: bool) -> list[nn.Module]:
    """What follows a conv: BatchNorm, or nothing in the BatchNorm-free layout."""
    return [nn.BatchNorm2d(channels)] if batchnorm else []


def _dropout(p: float, batchnorm: bool) -> nn.Module:
    """Dropout, or in the BatchNorm-free (hybrid) layout one mask over T."""
    return nn.Dropout(p) if batchnorm else StepDropout(p)


class ConvNet(nn.Module):
    """An ANN (``neuron=None``: ReLU) or an SNN (``neuron``: the parameters of a registered
    neuron, e.g. ``DLIFParams``, ``LIFParams``; per-neuron parameters are per channel) of
    one architecture; images [B, C, H, W] in [0, 1] -> logits [B, classes].
    ``batchnorm=False``: the layout of hybrid (DIET-SNN) training, where the ANN is
    converted: no BatchNorm, no biases (readout included), dropout masks fixed over T
    (``StepDropout``)."""

    def __init__(self, arch: str, in_channels: int, image_size: int, classes: int,
                 neuron=None, steps: int = 4, coding: str = "direct",
                 batchnorm: bool = True) -> None:
        super().__init__()
        convs, hidden, dropout = CONV_ARCHS.get(arch)
        INPUT_CODINGS.get(coding)
        self.entry = None if neuron is None else neuron_of(neuron)[1]
        if isinstance(neuron, DLIFParams) and neuron.dynamic and neuron.steps < steps:
            raise ConfigError(f"DLIF's a[t] has {neuron.steps} steps, the network runs {steps}")
        self.arch, self.neuron, self.steps, self.coding = arch, neuron, steps, coding
        self.in_channels, self.image_size, self.classes = in_channels, image_size, classes
        self.spiking, self.batchnorm = neuron is not None, batchnorm
        layers: list[nn.Module] = []
        channels, size = in_channels, image_size
        for c in convs:
            if isinstance(c, tuple):
                _, width, stride = c
                if size < stride:
                    raise ConfigError(f"{arch} strides {image_size}-px images below 1 px")
                layers.append(Residual(channels, width, stride, dropout,
                                       lambda w=width: self._act(w), batchnorm))
                channels, size = width, (size - 1) // stride + 1
            elif c == "G":
                layers.append(nn.AdaptiveAvgPool2d(1))
                size = 1
            elif c == "A":
                if size < 2:
                    raise ConfigError(f"{arch} pools {image_size}-px images below 1 px; choose "
                                  f"a net with fewer pools (one of {', '.join(CONV_ARCHS)}) "
                                  "or larger images (CIFAR: --dataset cifar10 --data-dir)")
                layers.append(nn.AvgPool2d(2))
                size //= 2
            else:
                layers += [nn.Conv2d(channels, c, 3, padding=1, bias=False),
                           *_norm(c, batchnorm), self._act(c)]
                channels = c
        layers.append(nn.Flatten())
        width = channels * size * size
        for h in hidden:
            layers += [nn.Linear(width, h, bias=batchnorm), self._act(h)]
            if dropout:
                layers.append(_dropout(dropout, batchnorm))
            width = h
        self.body = nn.Sequential(*layers)
        self.readout = nn.Linear(width, classes, bias=batchnorm)

    def _act(self, n: int) -> nn.Module:
        """The activation after a layer of n channels (features)."""
        return self.entry.make_dynamics(self.neuron, n) if self.spiking else nn.ReLU()

    def neurons(self) -> list[NeuronDynamics]:
        """The neuron layers in the order they run."""
        return [m for m in self.body.modules() if isinstance(m, NeuronDynamics)]

    def activations(self) -> list[nn.Module]:
        """The activation modules in order (ReLUs of the ANN, neurons of the SNN)."""
        return [m for m in self.body.modules() if isinstance(m, nn.ReLU | NeuronDynamics)]

    def _run(self, h: torch.Tensor, steps: int, batch: int, spike) -> torch.Tensor:
        """The body on time-folded input h [steps B, ...]; ``spike(neuron, current [steps,
        B, ...]) -> spikes`` runs each neuron layer, in the order of ``neurons()``."""
        def through(layers, h):
            for m in layers:
                if isinstance(m, NeuronDynamics):
                    h = spike(m, h.reshape(steps, batch, *h.shape[1:])).flatten(0, 1)
                elif isinstance(m, Residual):
                    h = through([m.act], through(m.main, h) + through(m.shortcut, h))
                elif isinstance(m, StepDropout):
                    h = m(h, steps)
                else:
                    h = m(h)
            return h

        return through(self.body, h)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[B, ...] -> [T B, ...] (time folded into the batch)."""
        steps = INPUT_CODINGS.get(self.coding)(x, self.steps)
        return steps.reshape(-1, *x.shape[1:])

    def window(self, x: torch.Tensor, steps: int, state: list | None = None,
               t0: int = 0, record: list | None = None) -> tuple[torch.Tensor, list]:
        """``steps`` steps of the SNN on image x from the neurons' membranes ``state``
        (None: rest) after step ``t0 - 1``: (the readout at each step [steps, B, classes],
        the membranes after the last step). ``forward`` is one window of T steps from rest
        averaged over time (HIRE-SNN feeds T in periods of several windows). ``record``:
        a list that receives every neuron layer's spikes [steps, B, ...] of the window."""
        missing = [type(m).__name__ for m in self.neurons() if not hasattr(m, "window")]
        if missing:
            raise ConfigError(f"windows of steps from carried membranes (HIRE-SNN) need "
                              f"neurons with ``window``; {missing[0]} has none (DLIF has)")
        x = x.to(self.readout.weight.dtype)
        batch = x.shape[0]
        h = INPUT_CODINGS.get(self.coding)(x, steps).reshape(-1, *x.shape[1:])
        state = list(state) if state is not None else [None] * len(self.neurons())
        k = iter(range(len(state)))

        def spike(m, current):
            i = next(k)
            s, state[i] = m.window(current, state[i], t0)
            if record is not None:
                record.append(s)
            return s

        h = self._run(h, steps, batch, spike)
        return self.readout(h).reshape(steps, batch, -1), state

    def readouts(self, x: torch.Tensor) -> torch.Tensor:
        """The readout at every step [T, B, classes] (an ANN: one step)."""
        x = x.to(self.readout.weight.dtype)
        if not self.spiking:
            return self.readout(self.body(x)).unsqueeze(0)
        batch = x.shape[0]
        h = self._run(self.encode(x), self.steps, batch, lambda m, current: m(current))
        return self.readout(h).reshape(self.steps, batch, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.spiking:
            return self.readout(self.body(x.to(self.readout.weight.dtype)))
        return self.readouts(x).mean(0)

    # -- what the analyses see (models.contracts.Probed) --------------------------------
    batch_dim = 0  # batch-first input

    def probe(self, x: torch.Tensor, reference: bool = False
              ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(readout [T, B, classes], every activation's output [T, B, ...]: the neurons'
        spikes, or an ANN's ReLU outputs as one step)."""
        outputs: list[torch.Tensor] = []
        steps = self.steps if self.spiking else 1

        def keep(module, args, out):
            outputs.append(out.reshape(steps, -1, *out.shape[1:]) if not self.spiking
                           else out)

        hooks = [m.register_forward_hook(keep) for m in self.activations()]
        try:
            with reference_mode(reference):
                readouts = self.readouts(x)
        finally:
            for h in hooks:
                h.remove()
        return readouts, outputs

    def _labelled(self) -> tuple[dict[str, nn.Module], list[str]]:
        """(weight layers by label: conv1.., res1.1.., fc1.., out; one label per
        activation: the layer it follows, ``resK`` for a residual block's output)."""
        weights: dict[str, nn.Module] = {}
        acts: list[str] = []
        counts = {"conv": 0, "fc": 0, "res": 0}
        last = "input"
        for m in self.body:
            if isinstance(m, Residual):
                counts["res"] += 1
                block = f"res{counts['res']}"
                convs = [c for c in m.modules() if isinstance(c, nn.Conv2d)]
                weights.update({f"{block}.{k + 1}": c for k, c in enumerate(convs)})
                acts += [f"{block}.1", block]
            elif isinstance(m, nn.Conv2d | nn.Linear):
                kind = "conv" if isinstance(m, nn.Conv2d) else "fc"
                counts[kind] += 1
                last = f"{kind}{counts[kind]}"
                weights[last] = m
            elif isinstance(m, nn.ReLU | NeuronDynamics):
                acts.append(last)
        weights["out"] = self.readout
        return weights, acts

    def layer_names(self) -> list[str]:
        return self._labelled()[1]

    def weight_groups(self) -> dict[str, str]:
        return layer_weight_groups(self, self._labelled()[0])

"""Hybrid networks: an image encoder (ResNet-18/50, ViT, LeNet-5) with its default head or a
spiking head (the ParaLIF hybrid study, docs/suites/hybrid.md).

Spiking head: the encoder's features [B, D] (ResNet: the last residual stage, globally
average-pooled; ViT: the class token; LeNet-5: the 84-d layer) are min-max normalised per
sample into [0, 1], rate-encoded with Bernoulli sampling over ``steps`` (20) time steps
(straight-through gradient) and decoded by one feed-forward layer of LIF or ParaLIF neurons
with D inputs and one neuron per class. Logits = ``gain * r + bias``, r the neurons' firing
rate over the steps, ``gain`` a learnable scalar (initially 10) and ``bias`` a learnable
vector: the loss is not bounded below (the original study fed rates in [0, 1] directly to
the cross-entropy, which caps how confident the network can be). The LIF head runs our LIF
(synaptic current, membrane, subtractive reset) step by step; the ParaLIF head its parallel
membrane with spike function SB.

``preprocess`` (inside the model, so attacks work in [0, 1] pixel space): resize to the
encoder's input size, repeat grey channels to RGB for encoders that take 3, and normalise
with the ImageNet statistics (the convention of torchvision's weights).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from spikebench.datasets.encoders import bernoulli, minmax
from spikebench.errors import ConfigError, MissingFileError
from spikebench.models.contracts import layer_weight_groups
from spikebench.models.lenet import LeNet5
from spikebench.models.resnet import resnet18, resnet50
from spikebench.models.vit import vit_b_16, vit_small
from spikebench.neurons import NEURONS, reference_mode
from spikebench.registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HEADS = ("default", "lif", "paralif")


class EncoderInfo:
    """How to build an encoder, its input, and which parts the transfer study freezes."""

    def __init__(self, build: Callable[..., nn.Module], channels: int,
                 image_size: int | None, paper_size: int | None,
                 frozen: Callable[[nn.Module], list], description: str) -> None:
        self.build, self.channels = build, channels
        self.image_size, self.paper_size = image_size, paper_size
        self.frozen, self.description = frozen, description


def _resnet_frozen(m) -> list:  # the stages before layer3
    return [m.conv1, m.bn1, m.layer1, m.layer2]


def _vit_frozen(m) -> list:  # the patch embedding and the first half of the blocks
    return m.early_modules(len(m.encoder.layers) // 2)


IMAGE_ENCODERS: Registry[EncoderInfo] = Registry("image encoder")
IMAGE_ENCODERS.register("resnet18", EncoderInfo(
    lambda n, size: resnet18(n), 3, 32, 224, _resnet_frozen,
    "ResNet-18 (torchvision keys); frozen: conv1, layer1, layer2"))
IMAGE_ENCODERS.register("resnet50", EncoderInfo(
    lambda n, size: resnet50(n), 3, 32, 224, _resnet_frozen,
    "ResNet-50 (torchvision keys); frozen: conv1, layer1, layer2"))
IMAGE_ENCODERS.register("vit_b_16", EncoderInfo(
    lambda n, size: vit_b_16(n, size), 3, 224, 224, _vit_frozen,
    "ViT-B/16 (torchvision keys); frozen: patch embedding, blocks 0-5"))
IMAGE_ENCODERS.register("vit_small", EncoderInfo(
    lambda n, size: vit_small(n, size), 3, 32, 32, _vit_frozen,
    "small ViT (patch 4, 6 x 128, CPU-sized); frozen: patch embedding, blocks 0-2"))
IMAGE_ENCODERS.register("lenet5", EncoderInfo(
    lambda n, size: LeNet5(n, 1), 1, 28, 28, lambda m: [],
    "LeNet-5 for 28x28 images; trained from scratch, nothing frozen"))


class SpikingHead(nn.Module):
    """min-max -> Bernoulli rate code over ``steps`` -> one layer of any registered neuron
    (the study's: LIF, ParaLIF) -> logits."""

    def __init__(self, n_in: int, n_classes: int, neuron: str = "paralif", steps: int = 20,
                 weight_scale: float = 3.0) -> None:
        super().__init__()
        entry = NEURONS.get(neuron)  # any registered neuron; an unknown name lists them
        params = entry.make_params(**entry.head_params)
        self.neuron, self.steps = neuron, steps
        self.layer = entry.make_layer(n_in, n_classes, params=params, weight_scale=weight_scale)
        self.gain = nn.Parameter(torch.tensor(10.0))
        self.bias = nn.Parameter(torch.zeros(n_classes))

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """The rate code of the features: spikes [T, B, D]."""
        return bernoulli(minmax(features), self.steps)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        rate = self.layer(self.encode(features)).mean(0)
        return self.gain * rate + self.bias

    # -- what the analyses see (models.contracts.Probed) --------------------------------
    batch_dim = 1  # the probe takes the rate code [T, B, D] (``encode``), drawn outside it

    def probe(self, spikes_in: torch.Tensor, reference: bool = False
              ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(gain s[t] + bias at every step [T, B, C], whose mean is ``forward``; the
        spikes s [T, B, C]) for the features' rate code ``spikes_in`` = ``encode(f)``."""
        with reference_mode(reference):
            spikes = self.layer(spikes_in)
        return self.gain * spikes + self.bias, [spikes]

    def layer_names(self) -> list[str]:
        return ["head"]

    def weight_groups(self) -> dict[str, str]:
        return layer_weight_groups(self, {"head": self.layer})


class HybridNet(nn.Module):
    """images [B, C, H, W] in [0, 1] -> logits; ``eot`` averages a stochastic head's logits
    over that many encodings of the same features (expectation over transformation)."""

    def __init__(self, encoder: nn.Module, info: EncoderInfo, image_size: int,
                 head: nn.Module | None = None, eot: int = 1) -> None:
        super().__init__()
        self.encoder, self.info, self.image_size = encoder, info, image_size
        self.spiking_head = head  # None: the encoder's default head
        self.eot = eot
        channels = info.channels
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN[:channels]).view(1, -1, 1, 1)
                             if channels == 3 else torch.zeros(1, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD[:channels]).view(1, -1, 1, 1)
                             if channels == 3 else torch.ones(1, 1, 1, 1), persistent=False)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              align_corners=False)
        if x.shape[1] == 1 and self.info.channels == 3:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[1] != self.info.channels:
            raise ValueError(f"the encoder takes {self.info.channels}-channel images, got "
                             f"{x.shape[1]} channels")
        return (x - self.mean) / self.std

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder.features(self.preprocess(x))

    def decide(self, features: torch.Tensor) -> torch.Tensor:
        if self.spiking_head is None:
            return self.encoder.head()(features)
        return torch.stack([self.spiking_head(features) for _ in range(self.eot)]).mean(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decide(self.features(x))


def build_encoder(name: str, n_classes: int, image_size: int | None = None,
                  weights: str | None = None) -> tuple[nn.Module, EncoderInfo, int]:
    """An encoder by name, its info and input size; ``weights``: a torchvision-format
    state_dict file (heads whose class count differs are left at their initialisation)."""
    info = IMAGE_ENCODERS.get(name)
    size = image_size or info.image_size
    encoder = info.build(n_classes, size)
    if weights:
        load_weights(encoder, weights)
    return encoder, info, size


def load_weights(encoder: nn.Module, path: str) -> list[str]:
    """Load a state_dict saved from torchvision (or from us); returns the keys skipped
    because the head's shape differs (another number of classes)."""
    from pathlib import Path

    if not Path(path).is_file():
        raise MissingFileError(f"weights file not found: {path}; check --weights")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types (unpickling, zip, EOF)
        raise ConfigError(f"{path}: not a readable state_dict ({type(err).__name__}); save "
                          "the encoder's weights with torch.save(model.state_dict(), FILE)"
                          ) from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise ConfigError(f"{path}: not a state_dict (a dict of tensors); save it with "
                          "torch.save(model.state_dict(), FILE)")
    own = encoder.state_dict()
    unknown = sorted(set(state) - set(own))
    missing = sorted(set(own) - set(state))
    if unknown or missing:
        raise ConfigError(f"{path} does not fit the encoder: unexpected keys {unknown[:5]}, "
                         f"missing keys {missing[:5]}")
    skipped = [k for k, v in state.items() if v.shape != own[k].shape]
    head_keys = {k for k in own if k.startswith(("fc.", "heads.", "fc3."))}
    bad = [k for k in skipped if k not in head_keys]
    if bad:
        raise ConfigError(f"{path}: shapes differ for {bad[:5]} (another architecture?)")
    encoder.load_state_dict({k: v for k, v in state.items() if k not in skipped}, strict=False)
    return skipped

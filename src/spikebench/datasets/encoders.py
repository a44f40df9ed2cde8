"""Encoders that turn static samples [B, C, H, W] (uint8 or float in [0, 1]) into
time-major input [T, B, ...] for a spiking network.

- ``bernoulli``: rate coding, a spike with probability equal to the intensity at every step.
  Straight-through gradient (d spikes / d intensity = 1), so gradient attacks can see
  through it; being stochastic, attacks should use expectation over transformation.
- ``direct``: the intensity itself at every step (constant current).
- ``minmax``: per-sample min-max normalisation into [0, 1] (used by the hybrid heads).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from spikebench.errors import ConfigError
from spikebench.registry import Registry


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [0, 1]; floats are passed through."""
    return x.float() / 255.0 if x.dtype == torch.uint8 else x


def minmax(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per-sample min-max normalisation into [0, 1] over all non-batch dimensions."""
    flat = x.flatten(1)
    lo = flat.min(1, keepdim=True).values
    hi = flat.max(1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(eps)).view_as(x)


class _BernoulliST(torch.autograd.Function):
    @staticmethod
    def forward(ctx, p: torch.Tensor, steps: int) -> torch.Tensor:
        probs = p.clamp(0.0, 1.0).unsqueeze(0).expand(steps, *p.shape)
        return torch.bernoulli(probs)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad.sum(0), None


def bernoulli(x: torch.Tensor, steps: int) -> torch.Tensor:
    """[B, ...] intensities in [0, 1] -> [T, B, ...] spikes (straight-through gradient)."""
    return _BernoulliST.apply(to_unit(x), steps)


def direct(x: torch.Tensor, steps: int) -> torch.Tensor:
    """[B, ...] -> [T, B, ...]: the same analogue input at every step."""
    x = to_unit(x)
    return x.unsqueeze(0).expand(steps, *x.shape)


INPUT_CODINGS: Registry = Registry("input coding")
INPUT_CODINGS.register("bernoulli", bernoulli)
INPUT_CODINGS.register("direct", direct)


@dataclass(frozen=True)
class Encoder:
    """A picklable encoder with its number of steps: ``Encoder("bernoulli", 20)(x)``."""

    name: str
    steps: int

    def __post_init__(self) -> None:
        INPUT_CODINGS.get(self.name)
        if self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return INPUT_CODINGS.get(self.name)(x, self.steps)

"""Spike functions with surrogate derivatives.

Forward: the Heaviside step H(x) = 1 if x > 0 else 0 (the same convention as norse).
Backward: the derivative of a smooth stand-in, scaled by ``slope``:

- ``fast_sigmoid`` (SuperSpike, Zenke & Ganguli 2018): 1 / (1 + slope |x|)^2  (default)
- ``sigmoid``: slope * sig(slope x) * (1 - sig(slope x))
- ``triangle``: max(0, 1 - slope |x|)   (Bellec et al. 2018 use this piecewise-linear one)
- ``straight_through``: 1 where |x| < 1/slope, else 0 (a rectangle of width 2/slope)
- ``exponential``: exp(-slope |x|)

The forms of the robust-conversion reference's attack routes, ``slope`` = its width gamma
(docs/suites/robust.md): ``pwl`` max(0, gamma - |x|) / gamma^2 (unit
area), ``rect`` 1[|x| < gamma / 2] / gamma (unit area), ``exp_damped`` 0.3 exp(-gamma |x|)
and ``identity`` 1 everywhere (the straight-through estimator proper; ``slope`` unused).

``soft_sigmoid`` is not a surrogate: its forward *is* sig(slope x), so the network is
smooth and autograd is exact. Gradient tests use it to compare BPTT with finite
differences.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from spikebench.registry import Registry

Derivative = Callable[[torch.Tensor, float], torch.Tensor]


def _fast_sigmoid(x: torch.Tensor, slope: float) -> torch.Tensor:
    return 1.0 / (1.0 + slope * x.abs()) ** 2


def _sigmoid(x: torch.Tensor, slope: float) -> torch.Tensor:
    s = torch.sigmoid(slope * x)
    return slope * s * (1.0 - s)


def _triangle(x: torch.Tensor, slope: float) -> torch.Tensor:
    return torch.clamp(1.0 - slope * x.abs(), min=0.0)


def _straight_through(x: torch.Tensor, slope: float) -> torch.Tensor:
    return (x.abs() < 1.0 / slope).to(x.dtype)


def _exponential(x: torch.Tensor, slope: float) -> torch.Tensor:
    return torch.exp(-slope * x.abs())


def _pwl(x: torch.Tensor, gamma: float) -> torch.Tensor:
    return torch.clamp(gamma - x.abs(), min=0.0) / gamma**2


def _rect(x: torch.Tensor, gamma: float) -> torch.Tensor:
    return (x.abs() < gamma / 2).to(x.dtype) / gamma


def _exp_damped(x: torch.Tensor, gamma: float) -> torch.Tensor:
    return 0.3 * torch.exp(-gamma * x.abs())


def _identity(x: torch.Tensor, slope: float) -> torch.Tensor:
    return torch.ones_like(x)


SURROGATES: Registry[Derivative] = Registry("surrogate")
SURROGATES.register("fast_sigmoid", _fast_sigmoid)
SURROGATES.register("sigmoid", _sigmoid)
SURROGATES.register("triangle", _triangle)
SURROGATES.register("straight_through", _straight_through)
SURROGATES.register("exponential", _exponential)
SURROGATES.register("pwl", _pwl)
SURROGATES.register("rect", _rect)
SURROGATES.register("exp_damped", _exp_damped)
SURROGATES.register("identity", _identity)
SMOOTH = "soft_sigmoid"


class _Spike(torch.autograd.Function):
    generate_vmap_rule = True  # per-sample gradients (torch.func.vmap) for the analyses

    @staticmethod
    def forward(x: torch.Tensor, derivative: Derivative, slope: float) -> torch.Tensor:
        return (x > 0).to(x.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, derivative, slope = inputs
        ctx.save_for_backward(x)
        ctx.derivative, ctx.slope = derivative, slope

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad * ctx.derivative(x, ctx.slope), None, None


def spike(x: torch.Tensor, surrogate: str = "fast_sigmoid", slope: float = 10.0) -> torch.Tensor:
    """Heaviside of ``x`` with the named surrogate derivative."""
    if surrogate == SMOOTH:
        return torch.sigmoid(slope * x)
    return _Spike.apply(x, SURROGATES.get(surrogate), slope)


def spike_derivative(x: torch.Tensor, surrogate: str = "fast_sigmoid", slope: float = 10.0):
    """The pseudo-derivative dspike/dx used in the backward pass (for online rules)."""
    if surrogate == SMOOTH:
        return _sigmoid(x, slope)
    return SURROGATES.get(surrogate)(x, slope)


def surrogate_names() -> list[str]:
    return [*SURROGATES.names(), SMOOTH]

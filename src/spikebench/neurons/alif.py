r"""Adaptive LIF (ALIF): the LIF neuron of ``lif.py`` with a spike-triggered threshold
(Bellec et al., NeurIPS 2018 "LSNN"; Nature Communications 2020, e-prop's ALIF).

For the input current W x[t] (+ V s[t-1]) of a layer:

    I[t] = alpha I[t-1] + W x[t] + V s[t-1]               synaptic current
    a[t] = rho a[t-1] + s[t-1]                            adaptation (spike-triggered)
    A[t] = theta + adapt * a[t]                           the adaptive threshold
    U[t] = beta U[t-1] + gain I[t] - theta s[t-1]         membrane, reset "subtract"
    U[t] = beta U[t-1] (1 - s[t-1]) + gain I[t]           membrane, reset "zero"
    s[t] = H(U[t] - A[t])                                 spike, surrogate derivative

As in Bellec et al., the reset subtracts the base threshold theta and the surrogate is
evaluated at the distance to the adaptive threshold; ``detach_reset`` stops gradients
through the reset only (the adaptation's dependence on the spikes keeps its gradient,
which e-prop's ALIF eligibility carries). ``adapt = 0`` is the LIF neuron exactly (tests).
Defaults (ours, for 10 ms bins): rho = 0.98 (an adaptation time constant of about 50
steps, 0.5 s) and adapt = 0.5 (each spike raises the threshold by half of theta).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch

from spikebench.checks import check_field_types
from spikebench.errors import ConfigError
from spikebench.neurons.base import NeuronDynamics
from spikebench.neurons.lif import RESETS
from spikebench.neurons.surrogate import spike, surrogate_names


@dataclass(frozen=True)
class ALIFParams:
    alpha: float = 0.9  # synaptic current decay per step
    beta: float = 0.9  # membrane decay per step
    threshold: float = 1.0  # theta, the base threshold
    gain: float = 1.0
    reset: str = "subtract"
    detach_reset: bool = False
    surrogate: str = "fast_sigmoid"
    slope: float = 10.0
    rho: float = 0.98  # adaptation decay per step
    adapt: float = 0.5  # threshold increase per unit of adaptation (Bellec's beta)

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.reset not in RESETS:
            raise ConfigError(f"reset must be one of {RESETS}, got {self.reset!r}")
        if self.surrogate not in surrogate_names():
            raise ConfigError(f"unknown surrogate {self.surrogate!r}; known: "
                              f"{', '.join(surrogate_names())}")
        for name in ("alpha", "beta", "rho"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"{name} must lie in [0, 1], got {v}")
        if self.threshold <= 0:
            raise ConfigError(f"threshold must be positive, got {self.threshold}")
        if self.adapt < 0:
            raise ConfigError(f"adapt (threshold increase per spike) must be >= 0, got "
                              f"{self.adapt}")

    def to_dict(self) -> dict:
        return asdict(self)


class ALIFState(NamedTuple):
    i: torch.Tensor  # synaptic current I[t]
    u: torch.Tensor  # membrane U[t] (before reset)
    a: torch.Tensor  # adaptation a[t]
    s: torch.Tensor  # spikes s[t]


def alif_threshold(state: ALIFState, p: ALIFParams) -> torch.Tensor:
    """The adaptive threshold A[t] = theta + adapt a[t] of a state."""
    return p.threshold + p.adapt * state.a


def alif_step(current: torch.Tensor, state: ALIFState, p: ALIFParams
              ) -> tuple[torch.Tensor, ALIFState]:
    """One step given the synaptic input ``current`` = W x[t] (+ V s[t-1])."""
    i = p.alpha * state.i + current
    a = p.rho * state.a + state.s
    s_prev = state.s.detach() if p.detach_reset else state.s
    if p.reset == "subtract":
        u = p.beta * state.u + p.gain * i - p.threshold * s_prev
    else:
        u = p.beta * state.u * (1.0 - s_prev) + p.gain * i
    s = spike(u - (p.threshold + p.adapt * a), p.surrogate, p.slope)
    return s, ALIFState(i, u, a, s)


class ALIFDynamics(NeuronDynamics):
    """ALIF without weights: currents [T, B, n, ...] -> spikes (``alif_step`` unrolled)."""

    description = ("adaptive LIF (Bellec et al.'s ALIF): LIF with a spike-triggered "
                   "threshold theta + adapt a[t], a decaying by rho; step-wise")

    def __init__(self, params: ALIFParams | None = None, n: int = 1) -> None:
        super().__init__(params or ALIFParams(), n)

    def initial_state(self, like: torch.Tensor) -> ALIFState:
        z = torch.zeros_like(like)
        return ALIFState(z, z.clone(), z.clone(), z.clone())

    def step(self, current: torch.Tensor, state: ALIFState):
        return alif_step(current, state, self.params)

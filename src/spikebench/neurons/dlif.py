r"""The (dynamic) leaky integrate-and-fire neuron of the robust-SNN studies
(docs/suites/robust.md: Ding et al. 2024, Özdenizci & Legenstein 2024).

No synaptic filter; for the input current I[t] of a layer:

    U[t] = lambda * V[t-1] + a[t] * I[t]            membrane before the reset
    s[t] = H(U[t] - theta)                            spike (surrogate derivative)
    V[t] = U[t] (1 - s[t])        reset "zero" (hard, the papers' default)
    V[t] = U[t] - theta s[t]      reset "subtract" (soft)

``a[t]`` (DLIF, Ding et al.): one learnable scalar per layer and time step, shared by all
neurons of the layer, initialised to 1; ``dynamic=False`` fixes a = 1 (plain LIF;
lambda = 1: IF). ``learn_threshold`` makes theta one learnable scalar per layer (the
conversion's robust fine-tuning; clamped at ``min_threshold``), ``learn_leak`` lambda one
learnable scalar per layer (hybrid DIET-SNN training, Rathi & Roy 2021; clamped to
[0, 1]); ``relative`` evaluates the surrogate at U / theta - 1 (DIET-SNN's form: the
same spikes, a derivative that scales with the threshold) instead of U - theta.

Two forms share ``dlif_scan`` (the pure dynamics over [T, B, ...]):

- ``DLIFLayer``: a registered neuron (``NEURONS["dlif"]``) with input weights W (and V in
  REC) for the spiking MLPs and heads; step-wise (its state carries the step index t for
  a[t]).
- ``SpikingActivation``: the neuron as an activation after a convolution or Linear of a
  convolutional SNN (``models.conv``), on currents of any shape [T, B, ...].

``SpikingActivation.route`` chooses the gradient an attack or a training step sees:
``None`` the neuron's own surrogate, ``(surrogate, slope)`` another one (the attack
ensembles' routes), ``"bptr"`` backward through rates (the forward is the spikes; the
backward treats the rate as a function of the time-averaged effective input a[t] I[t]
with slope 1/theta where the neuron fires at all, and does not unroll time), ``"proxy"`` the ANN
proxy (its forward is the rate an IF neuron with soft reset fires,
clamp(I / theta, 0, 1), at every step; a smooth stand-in whose adversarials are
transferred to the SNN).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from spikebench.checks import check_field_types
from spikebench.errors import ConfigError
from spikebench.neurons.base import NeuronDynamics, SpikingLayer
from spikebench.neurons.lif import RESETS
from spikebench.neurons.surrogate import spike, surrogate_names


@dataclass(frozen=True)
class DLIFParams:
    leak: float = 0.99  # lambda (tau in Ding et al.'s code); 1.0: IF
    threshold: float = 1.0
    reset: str = "zero"
    surrogate: str = "triangle"  # Ding et al.: triangle, width 1
    slope: float = 1.0
    steps: int = 8  # the length of a[t] (the T the layer runs for at most)
    dynamic: bool = True  # learnable a[t] (DLIF); False: a = 1 (LIF / IF)
    learn_threshold: bool = False
    min_threshold: float = 0.03
    learn_leak: bool = False
    relative: bool = False  # the surrogate on U / theta - 1 (DIET-SNN's), not U - theta

    def __post_init__(self) -> None:
        check_field_types(self)  # NaN, infinity or a string: an error naming the field
        if self.reset not in RESETS:
            raise ConfigError(f"reset must be one of {RESETS}, got {self.reset!r}")
        if self.surrogate not in surrogate_names():
            raise ConfigError(f"unknown surrogate {self.surrogate!r}; known: "
                              f"{', '.join(surrogate_names())}")
        if not 0 <= self.leak <= 1:
            raise ConfigError(f"leak must lie in [0, 1], got {self.leak}")
        if self.steps < 1 or not self.threshold > 0:
            raise ConfigError(f"steps >= 1 and threshold > 0 needed, got {self.steps}, "
                              f"{self.threshold}")


def dlif_step(u_prev: torch.Tensor, current: torch.Tensor, p: DLIFParams, threshold,
              gain=None, surrogate: tuple[str, float] | None = None, leak=None):
    """One step from the previous step's membrane after reset V[t-1]: (s[t], U[t], V[t]);
    ``leak``: a learnt lambda (None: ``p.leak``)."""
    u = (p.leak if leak is None else leak) * u_prev + (
        current if gain is None else gain * current)
    name, slope = surrogate or (p.surrogate, p.slope)
    s = spike(u / threshold - 1.0 if p.relative else u - threshold, name, slope)
    v = u * (1.0 - s) if p.reset == "zero" else u - threshold * s
    return s, u, v


def dlif_scan(current: torch.Tensor, p: DLIFParams, threshold, gain=None,
              surrogate: tuple[str, float] | None = None, membranes: bool = False,
              v0: torch.Tensor | None = None, t0: int = 0, final: bool = False,
              leak=None):
    """Spikes [T, B, ...] of currents [T, B, ...] (and U[t] if ``membranes``, the last
    V[t] if ``final``), from rest or from the membranes ``v0`` after step ``t0 - 1``;
    ``gain``: a[t] of length >= t0 + T, or None; ``leak``: a learnt lambda, or None."""
    if gain is not None and t0 + len(current) > len(gain):
        raise ConfigError(f"the DLIF layer has a[t] for {len(gain)} steps, the input reaches "
                          f"step {t0 + len(current)}; build it with that many steps or more")
    v = torch.zeros_like(current[0]) if v0 is None else v0
    spikes, us = [], []
    for t, c in enumerate(current, start=t0):
        s, u, v = dlif_step(v, c, p, threshold, None if gain is None else gain[t], surrogate,
                            leak)
        spikes.append(s)
        us.append(u)
    out = (torch.stack(spikes), torch.stack(us)) if membranes else torch.stack(spikes)
    return (out, v) if final else out


class _Neuron(nn.Module):
    """The learnable parameters both forms share: a[t] and theta."""

    def _init_params(self, p: DLIFParams) -> None:
        self.params = p
        self.gain = nn.Parameter(torch.ones(p.steps)) if p.dynamic else None
        theta = torch.tensor(float(p.threshold))
        if p.learn_threshold:
            self.theta = nn.Parameter(theta)
        else:  # a buffer: set by conversion's threshold balancing, saved with the model
            self.register_buffer("theta", theta)
        self.leak = nn.Parameter(torch.tensor(float(p.leak))) if p.learn_leak else None

    def lam(self):
        """lambda: the learnt one clamped to [0, 1], else the params' own."""
        return self.params.leak if self.leak is None else self.leak.clamp(0.0, 1.0)

    def threshold(self) -> torch.Tensor:
        if isinstance(self.theta, nn.Parameter):
            return self.theta.clamp(min=self.params.min_threshold)
        return self.theta

    @torch.no_grad()
    def set_threshold(self, value: float) -> None:
        self.theta.fill_(float(value))


class SpikingActivation(NeuronDynamics, _Neuron):
    """DLIF's dynamics (``NEURONS["dlif"].dynamics``), the activation of a convolutional
    SNN: currents [T, B, ...] -> spikes; a[t] and theta are per layer (``n`` unused). It
    alone has the gradient routes the attack ensemble switches, the recorded current of
    MS-MPPD and the membrane windows of HIRE-SNN."""

    description = ("dynamic LIF (Ding et al. 2024): U = lambda V + a[t] I, learnable a[t] per "
                   "layer and step, hard reset; leak 0.99, triangle surrogate")

    def __init__(self, params: DLIFParams | None = None, n: int = 1) -> None:
        super().__init__(params, n)
        self._init_params(params or DLIFParams())
        self.route: str | tuple[str, float] | None = None
        self.record = False  # keep the last input current (MS-MPPD)
        self.last_current: torch.Tensor | None = None

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        if self.record:
            self.last_current = current
        theta = self.threshold()
        gain = 1.0 if self.gain is None else self.gain[:len(current)].view(
            -1, *[1] * (current.dim() - 1))
        if self.route == "proxy":
            return (gain * current / theta).clamp(0.0, 1.0)
        if self.route == "bptr":  # through the time-averaged effective input a[t] I[t]
            with torch.no_grad():
                s = dlif_scan(current, self.params, theta, self.gain, leak=self.lam())
            fires = (s.mean(0) > 0).to(current.dtype)
            smooth = fires * (gain * current).mean(0) / theta
            return s + (smooth - smooth.detach()).unsqueeze(0)
        return dlif_scan(current, self.params, theta, self.gain,
                         None if self.route is None else self.route, leak=self.lam())

    def initial_state(self, like: torch.Tensor) -> DLIFState:
        z = torch.zeros_like(like)
        return DLIFState(z, z, z, 0)

    def step(self, current: torch.Tensor, state: DLIFState):
        gain = None if self.gain is None else self.gain[state.t]
        s, u, v = dlif_step(state.v, current, self.params, self.threshold(), gain,
                            leak=self.lam())
        return s, DLIFState(v, s, u, state.t + 1)

    def window(self, current: torch.Tensor, v0: torch.Tensor | None, t0: int):
        """Steps t0 ... t0 + len(current) - 1 from the membranes ``v0`` (None: rest) with
        the neuron's own surrogate: (spikes, V after the last step)."""
        return dlif_scan(current, self.params, self.threshold(), self.gain, v0=v0, t0=t0,
                         final=True, leak=self.lam())

    def extra_repr(self) -> str:
        p = self.params
        leak = p.leak if self.leak is None else f"{float(self.lam()):.4g} (learnt)"
        return (f"leak={leak}, threshold={self.threshold():.4g}, reset={p.reset}, "
                f"dynamic={p.dynamic}")


class DLIFState(NamedTuple):
    v: torch.Tensor  # membrane after the reset V[t]
    s: torch.Tensor  # spikes s[t]
    u: torch.Tensor  # membrane before the reset U[t]
    t: int  # steps taken


class DLIFLayer(SpikingLayer, _Neuron):
    """W (and V) with DLIF neurons; the registered neuron ``dlif``."""

    description = SpikingActivation.description

    def __init__(self, n_in: int, n_out: int, recurrent: bool = False,
                 params: DLIFParams | None = None, weight_scale: float = 1.0,
                 rec_scale: float = 1.0) -> None:
        super().__init__()
        self._init_params(params or DLIFParams())
        bound = weight_scale / math.sqrt(n_in)
        self.weight = nn.Parameter(torch.empty(n_out, n_in).uniform_(-bound, bound))
        self.rec_weight = (nn.Parameter(torch.empty(n_out, n_out).uniform_(-1, 1) * rec_scale
                                        / math.sqrt(n_out)) if recurrent else None)

    def initial_state(self, batch: int, like: torch.Tensor) -> DLIFState:
        z = like.new_zeros(batch, self.weight.shape[0])
        return DLIFState(z, z, z, 0)

    def input_current(self, x: torch.Tensor, state: DLIFState) -> torch.Tensor:
        cur = x @ self.weight.t()
        return cur if self.rec_weight is None else cur + state.s @ self.rec_weight.t()

    def dynamics(self, current: torch.Tensor, state: DLIFState):
        if self.gain is not None and state.t >= len(self.gain):
            raise ConfigError(f"the DLIF layer has a[t] for {len(self.gain)} steps; build it "
                              f"with steps >= the input's T (--neuron-option steps=T)")
        gain = None if self.gain is None else self.gain[state.t]
        s, u, v = dlif_step(state.v, current, self.params, self.threshold(), gain,
                            leak=self.lam())
        return s, DLIFState(v, s, u, state.t + 1)

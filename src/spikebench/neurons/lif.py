r"""Discrete-time leaky integrate-and-fire neuron (the locality paper's model).

For one layer with input weights W and (REC only) recurrent weights V:

    I[t] = alpha * I[t-1] + W x[t] + V s[t-1]          synaptic current
    U[t] = beta  * U[t-1] + gain * I[t] - theta s[t-1]  membrane, reset "subtract" (default)
    U[t] = beta  * U[t-1] (1 - s[t-1]) + gain * I[t]    membrane, reset "zero"
    s[t] = H(U[t] - theta)                              spike, surrogate derivative

``U`` is the membrane *before* the reset of step t; the reset acts at step t+1, as in the
paper's equations. ``detach_reset`` stops gradients through the reset term (e-prop's and
many BPTT setups' choice).

Mapping to norse (``norse.torch.functional.lif``; Euler step dt, tau_syn, tau_mem, v_leak = 0,
v_reset = 0) with reset "zero":

    alpha = 1 - dt / tau_syn,  beta = 1 - dt / tau_mem,  gain = 1 - beta = dt / tau_mem
    norse.i (stored current)  = alpha * I[t]
    norse.v (stored membrane) = (1 - s[t]) * U[t]
    norse.z                   = s[t]

The split follows norse: a pure step function over a parameter tuple and a state tuple
(``lif_step``), wrapped by a thin module (``LIFLayer``) that owns W and V.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import nn

from spikebench.checks import check_field_types
from spikebench.errors import ConfigError
from spikebench.neurons.base import NeuronDynamics, SpikingLayer, in_reference_mode
from spikebench.neurons.lif_scan import lif_run, lif_scan
from spikebench.neurons.surrogate import spike, surrogate_names
from spikebench.sparse import dense, sequence_linear

RESETS = ("subtract", "zero")


@dataclass(frozen=True)
class LIFParams:
    alpha: float = 0.9  # synaptic current decay per step
    beta: float = 0.9  # membrane decay per step
    threshold: float = 1.0
    gain: float = 1.0  # input gain on I in the membrane update
    reset: str = "subtract"
    detach_reset: bool = False
    surrogate: str = "fast_sigmoid"
    slope: float = 10.0  # steepness of the surrogate derivative

    def __post_init__(self) -> None:
        check_field_types(self)  # NaN, infinity or a string: an error naming the field
        if self.reset not in RESETS:
            raise ConfigError(f"reset must be one of {RESETS}, got {self.reset!r}")
        if self.surrogate not in surrogate_names():
            raise ConfigError(
                f"unknown surrogate {self.surrogate!r}; known: {', '.join(surrogate_names())}"
            )
        for name in ("alpha", "beta"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"{name} must lie in [0, 1], got {v}")
        if self.threshold <= 0:
            raise ConfigError(f"threshold must be positive, got {self.threshold}")

    @classmethod
    def from_time_constants(
        cls, tau_syn: float, tau_mem: float, dt: float = 1e-3, **kw
    ) -> LIFParams:
        """Euler-discretised constants with norse's convention (gain = dt / tau_mem)."""
        beta = 1.0 - dt / tau_mem
        return cls(alpha=1.0 - dt / tau_syn, beta=beta, gain=1.0 - beta, **kw)

    @classmethod
    def exponential(cls, tau_syn: float, tau_mem: float, dt: float = 1e-3, **kw) -> LIFParams:
        """Exact exponential decays exp(-dt/tau)."""
        return cls(alpha=math.exp(-dt / tau_syn), beta=math.exp(-dt / tau_mem), **kw)

    def to_dict(self) -> dict:
        return asdict(self)


class LIFState(NamedTuple):
    i: torch.Tensor  # synaptic current I[t]
    u: torch.Tensor  # membrane U[t] (before reset)
    s: torch.Tensor  # spikes s[t]


def lif_initial_state(
    batch: int, n: int, dtype: torch.dtype = torch.float32, device=None
) -> LIFState:
    z = torch.zeros(batch, n, dtype=dtype, device=device)
    return LIFState(z, z.clone(), z.clone())


def lif_step(
    current: torch.Tensor, state: LIFState, p: LIFParams
) -> tuple[torch.Tensor, LIFState]:
    """One step given the synaptic input ``current`` = W x[t] (+ V s[t-1])."""
    i = p.alpha * state.i + current
    s_prev = state.s.detach() if p.detach_reset else state.s
    if p.reset == "subtract":
        u = p.beta * state.u + p.gain * i - p.threshold * s_prev
    else:
        u = p.beta * state.u * (1.0 - s_prev) + p.gain * i
    s = spike(u - p.threshold, p.surrogate, p.slope)
    return s, LIFState(i, u, s)


class LIFDynamics(NeuronDynamics):
    """LIF without weights: currents [T, B, n, ...] of any shape -> spikes (the fused
    ``lif_scan`` over the flattened neurons; ``step`` is ``lif_step``)."""

    description = ("discrete-time LIF (the locality paper's): synaptic current and membrane "
                   "decays, subtract or zero reset, surrogate gradients; step-wise")

    def __init__(self, params: LIFParams | None = None, n: int = 1) -> None:
        super().__init__(params or LIFParams(), n)

    def initial_state(self, like: torch.Tensor) -> LIFState:
        z = torch.zeros_like(like)
        return LIFState(z, z.clone(), z.clone())

    def step(self, current: torch.Tensor, state: LIFState):
        return lif_step(current, state, self.params)

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        if in_reference_mode():
            return super().forward(current)
        flat = current.reshape(current.shape[0], current.shape[1], -1)
        return lif_scan(flat, self.params).reshape(current.shape)


class LIFLayer(SpikingLayer):
    """A layer of LIF neurons with input weights W and optional recurrent weights V."""

    description = LIFDynamics.description

    def __init__(
        self,
        n_in: int,
        n_out: int,
        recurrent: bool = False,
        params: LIFParams | None = None,
        weight_scale: float = 1.0,
        rec_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.n_in, self.n_out, self.recurrent = n_in, n_out, recurrent
        self.params = params or LIFParams()
        self.weight = nn.Parameter(torch.empty(n_out, n_in))
        self.rec_weight = nn.Parameter(torch.empty(n_out, n_out)) if recurrent else None
        if recurrent:  # no self-connections: the diagonal of V is held at zero
            self.register_buffer("rec_mask", 1.0 - torch.eye(n_out), persistent=False)
        self.weight_scale, self.rec_scale = weight_scale, rec_scale
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Uniform in +-scale/sqrt(fan_in), as torch.nn.Linear, with a gain on W that gets
        # spiking started under the synaptic/membrane filters; V has its own (smaller)
        # scale and a zero diagonal (no self-connections, as in e-prop).
        bound = self.weight_scale / math.sqrt(self.n_in)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.rec_weight is not None:
            rb = self.rec_scale / math.sqrt(self.n_out)
            nn.init.uniform_(self.rec_weight, -rb, rb)
            with torch.no_grad():
                self.rec_weight.fill_diagonal_(0.0)

    def initial_state(self, batch: int, like: torch.Tensor) -> LIFState:
        return lif_initial_state(batch, self.n_out, like.dtype, like.device)

    def input_current(self, x: torch.Tensor, state: LIFState) -> torch.Tensor:
        cur = x @ self.weight.t()
        if self.rec_weight is not None:
            cur = cur + state.s @ self.recurrent_matrix().t()
        return cur

    def recurrent_matrix(self) -> torch.Tensor:
        """V with its diagonal masked out (what the dynamics use); None in FF."""
        return self.rec_weight * self.rec_mask if self.rec_weight is not None else None

    def dynamics(self, current: torch.Tensor, state: LIFState) -> tuple[torch.Tensor, LIFState]:
        """The neuron's step given its synaptic input (analyses probe ``current``)."""
        return lif_step(current, state, self.params)

    def forward(self, x):
        """Spikes [T, B, n] for x [T, B, n_in] (dense or an EventBatch): the input current of
        all T steps as one GEMM (CSR for events), then the fused scan (``lif_scan``), equal
        to unrolling ``step`` (tests), which ``reference_mode`` runs instead."""
        if in_reference_mode():
            return super().forward(dense(x))
        return lif_scan(sequence_linear(x, self.weight), self.params, self.recurrent_matrix())

    @torch.no_grad()
    def membranes(self, x) -> torch.Tensor:
        """The membranes after each step's reset (fused: ``lif_run``)."""
        p = self.params
        u, s, _ = lif_run(sequence_linear(x, self.weight), p, self.recurrent_matrix())
        return u - p.threshold * s if p.reset == "subtract" else (1.0 - s) * u

    def extra_repr(self) -> str:
        return f"{self.n_in}, {self.n_out}, recurrent={self.recurrent}, {self.params}"

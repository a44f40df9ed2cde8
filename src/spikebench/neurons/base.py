"""The neuron interface: what every neuron of the suite offers, and its registry entry.

A neuron is first its *dynamics* (``NeuronDynamics``): a module without weights that maps
input currents [T, B, n, ...] of any shape (n neurons or channels, then any spatial axes)
to spikes of the same shape, its own parameters per neuron (channel) of length n,
broadcast over the other axes. The same dynamics run after a Linear layer (an MLP's hidden
layer, a spiking head) and after a convolution (``models.ConvNet``). Step-wise dynamics
(``stepwise = True``) also give ``initial_state(like)`` and ``step(current, state) ->
(spikes, state)``, which online rules drive and analyses probe; state objects carry the
spikes as ``.s`` (and the membrane after each step as ``.u`` where there is one).

A *layer* (``SpikingLayer``) adds the weights: input weights ``weight`` [n_out, n_in],
optional recurrent weights ``rec_weight`` (``recurrent_matrix()`` gives the V its dynamics
use, None in FF) and ``forward`` over a whole sequence, x [T, B, n_in] -> spikes [T, B,
n_out]. ``DynamicsLayer`` builds one from any dynamics; LIF, ParaLIF and DLIF have their own
layers (fused scans, their checkpoints' keys), equal to it (tests). A step-wise layer has
``initial_state(batch, like)``, ``input_current(x_t, state)`` (W x[t] + V s[t-1]),
``dynamics(current, state) -> (spikes, state)`` and ``step(x_t, state)``; a parallel layer
(ParaLIF) computes all T steps at once and has no step. ``membranes(x)`` gives what the
efficiency metrics count.

Adding a neuron: one file with its dynamics and parameters, and one ``NEURONS.register(name,
Neuron(params=..., dynamics=...))`` line in ``spikebench/neurons/__init__.py``. Models,
spiking heads, rules and analyses use only this interface, never a neuron's name.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from spikebench.errors import ConfigError

# the neuron fields of an experiment spec that a neuron may take from it (spec_fields)
SPEC_NEURON_FIELDS = ("alpha", "beta", "threshold", "reset", "surrogate", "slope")


class SpikingLayer(nn.Module):
    """Base of every neuron layer; built as ``cls(n_in, n_out, recurrent=..., params=...,
    weight_scale=..., rec_scale=...)``."""

    stepwise: ClassVar[bool] = True
    description: ClassVar[str] = ""
    weight: nn.Parameter
    rec_weight: nn.Parameter | None

    def recurrent_matrix(self) -> torch.Tensor | None:
        """The recurrent weights the dynamics use (None: feed-forward)."""
        return self.rec_weight

    # step-wise layers implement these four
    def initial_state(self, batch: int, like: torch.Tensor):
        raise NotImplementedError(f"{type(self).__name__} has no step function")

    def input_current(self, x: torch.Tensor, state) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no step function")

    def dynamics(self, current: torch.Tensor, state):
        raise NotImplementedError(f"{type(self).__name__} has no step function")

    def step(self, x: torch.Tensor, state):
        return self.dynamics(self.input_current(x, state), state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Unroll ``step`` over [T, B, n_in] (parallel layers override this)."""
        state = self.initial_state(x.shape[1], x)
        out = []
        for x_t in x:
            s, state = self.step(x_t, state)
            out.append(s)
        return torch.stack(out)

    @torch.no_grad()
    def membranes(self, x: torch.Tensor) -> torch.Tensor | None:
        """The membranes after each step [T, B, n_out] for input x [T, B, n_in] (dense),
        None for a neuron whose state has no membrane ``u`` (the efficiency metrics' count
        of membrane updates); by unrolling ``step`` (fused layers override this)."""
        x = x.dense() if hasattr(x, "dense") else x  # an EventBatch
        state, posts = self.initial_state(x.shape[1], x), []
        for x_t in x:
            _, state = self.step(x_t, state)
            if not hasattr(state, "u"):
                return None
            posts.append(state.u)
        return torch.stack(posts)


class NeuronDynamics(nn.Module):
    """Weightless dynamics: currents [T, B, n, ...] -> spikes of the same shape; built as
    ``cls(params, n)`` (n: the neurons, or channels, its own per-neuron parameters cover).

    Step-wise dynamics implement ``initial_state(like)`` (``like``: a current [B, n, ...])
    and ``step(current, state) -> (spikes, state)``; ``forward`` unrolls them (a faster
    scan may override it). Parallel ones (``stepwise = False``) implement ``forward``."""

    stepwise: ClassVar[bool] = True
    description: ClassVar[str] = ""

    def __init__(self, params=None, n: int = 1) -> None:
        super().__init__()
        self.params, self.n = params, n

    def initial_state(self, like: torch.Tensor):
        raise NotImplementedError(f"{type(self).__name__} has no step function")

    def step(self, current: torch.Tensor, state):
        raise NotImplementedError(f"{type(self).__name__} has no step function")

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        state, out = self.initial_state(current[0]), []
        for c in current:
            s, state = self.step(c, state)
            out.append(s)
        return torch.stack(out)


def per_neuron(values: torch.Tensor, like: torch.Tensor, axis: int) -> torch.Tensor:
    """Per-neuron parameters [n] shaped to broadcast over ``like``, whose neuron (channel)
    axis is ``axis`` (1 for a step's current [B, n, ...], 2 for [T, B, n, ...])."""
    return values.view(-1, *[1] * (like.dim() - axis - 1))


class DynamicsLayer(SpikingLayer):
    """Any neuron's dynamics behind weights W (and V in REC): a ``SpikingLayer`` built from a
    registry entry that has no layer of its own. FF: one GEMM for all T steps, then the
    dynamics; REC: unrolled step by step (needs step-wise dynamics)."""

    def __init__(self, n_in: int, n_out: int, recurrent: bool = False, params=None,
                 weight_scale: float = 1.0, rec_scale: float = 1.0, *,
                 dynamics: type[NeuronDynamics]) -> None:
        super().__init__()
        if recurrent and not dynamics.stepwise:
            raise ConfigError(f"{dynamics.__name__} is parallel in time: it has no step, so "
                              "no recurrent (REC) layer; use arch ff")
        self.n_in, self.n_out, self.recurrent = n_in, n_out, recurrent
        self.neuron = dynamics(params, n_out)
        self.params = self.neuron.params
        bound = weight_scale / math.sqrt(n_in)
        self.weight = nn.Parameter(torch.empty(n_out, n_in).uniform_(-bound, bound))
        self.rec_weight = None
        if recurrent:
            rb = rec_scale / math.sqrt(n_out)
            self.rec_weight = nn.Parameter(torch.empty(n_out, n_out).uniform_(-rb, rb))

    @property
    def stepwise(self) -> bool:  # type: ignore[override]
        return self.neuron.stepwise

    def initial_state(self, batch: int, like: torch.Tensor):
        return self.neuron.initial_state(like.new_zeros(batch, self.n_out))

    def input_current(self, x: torch.Tensor, state) -> torch.Tensor:
        cur = x @ self.weight.t()
        return cur if self.rec_weight is None else cur + state.s @ self.rec_weight.t()

    def dynamics(self, current: torch.Tensor, state):
        return self.neuron.step(current, state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rec_weight is None:
            return self.neuron(x @ self.weight.t())
        return super().forward(x)

    @torch.no_grad()
    def membranes(self, x: torch.Tensor) -> torch.Tensor | None:
        return super().membranes(x) if self.neuron.stepwise else None

    def extra_repr(self) -> str:
        return f"{self.n_in}, {self.n_out}, recurrent={self.recurrent}, {self.params}"


_REFERENCE = [False]


@contextmanager
def reference_mode(on: bool = True) -> Iterator[None]:
    """Within it, neurons with a fused fast path (the LIF scan) unroll their step function
    instead: the definition the fast path is tested against, and one that ``torch.func``
    transforms (per-sample gradients) go through."""
    before, _REFERENCE[0] = _REFERENCE[0], bool(on) or _REFERENCE[0]
    try:
        yield
    finally:
        _REFERENCE[0] = before


def in_reference_mode() -> bool:
    return _REFERENCE[0]


@dataclass(frozen=True)
class Neuron:
    """A registry entry: the parameters, the weightless dynamics, a layer of its own where
    it has one (None: ``DynamicsLayer`` over the dynamics), and what the harness may set."""

    params: type
    dynamics: type[NeuronDynamics]
    description: str
    layer: type[SpikingLayer] | None = None
    # the spec's neuron fields (SPEC_NEURON_FIELDS) this neuron takes from an experiment
    # spec; the others keep the neuron's own defaults
    spec_fields: tuple[str, ...] = ()
    # its parameters as the spiking head of a hybrid (over the parameter class's defaults)
    head_params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def stepwise(self) -> bool:
        return (self.layer or self.dynamics).stepwise

    def make_layer(self, n_in: int, n_out: int, **kw) -> SpikingLayer:
        """Its layer with weights (``recurrent``, ``params``, ``weight_scale``, ...)."""
        if self.layer is not None:
            return self.layer(n_in, n_out, **kw)
        return DynamicsLayer(n_in, n_out, dynamics=self.dynamics, **kw)

    def make_dynamics(self, params, n: int) -> NeuronDynamics:
        """Its dynamics for n neurons (channels) with ``params``."""
        return self.dynamics(params, n)

    def make_params(self, **values):
        """The parameter dataclass; unknown or bad values are a ``ConfigError``."""
        try:
            return self.params(**values)
        except TypeError as err:
            raise ConfigError(f"bad options for neuron {self.dynamics.__name__}: {err}") from None

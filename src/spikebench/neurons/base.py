"""The neuron interface: what every neuron of the suite offers, and its registry entry.

A neuron is a layer class (a ``SpikingLayer``) and a frozen parameter dataclass. Every layer
has input weights ``weight`` [n_out, n_in], optional recurrent weights ``rec_weight``
(``recurrent_matrix()`` gives the V its dynamics use, None in FF) and ``forward`` over a
whole sequence, x [T, B, n_in] -> spikes [T, B, n_out]. A *step-wise* layer (``stepwise =
True``: LIF) also has the pure step that online rules drive and analyses probe:
``initial_state(batch, like)``, ``input_current(x_t, state)`` (W x[t] + V s[t-1]),
``dynamics(current, state) -> (spikes, state)`` and ``step(x_t, state)``; state objects
carry the spikes as ``.s``. A *parallel* layer (``stepwise = False``: ParaLIF) computes all
T steps at once and has no step.

Adding a neuron: one file with its layer and parameters, and one ``NEURONS.register(name,
Neuron(...))`` line in ``spikebench/neurons/__init__.py``. Models, spiking heads, rules and
analyses use only this interface, never a neuron's name.
"""

from __future__ import annotations

from collections.abc import Mapping
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


@dataclass(frozen=True)
class Neuron:
    """A registry entry: the layer, its parameters, and what the harness may set."""

    layer: type[SpikingLayer]
    params: type
    description: str
    # the spec's neuron fields (SPEC_NEURON_FIELDS) this neuron takes from an experiment
    # spec; the others keep the neuron's own defaults
    spec_fields: tuple[str, ...] = ()
    # its parameters as the spiking head of a hybrid (over the parameter class's defaults)
    head_params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def stepwise(self) -> bool:
        return self.layer.stepwise

    def make_params(self, **values):
        """The parameter dataclass; unknown or bad values are a ``ConfigError``."""
        try:
            return self.params(**values)
        except TypeError as err:
            raise ConfigError(f"bad options for neuron {self.layer.__name__}: {err}") from None

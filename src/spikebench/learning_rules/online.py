"""Machinery shared by the online rules (e-prop, DECOLLE).

Both drive the model step by step without autograd and keep no history of states: at each
step they update presynaptic traces, read the surrogate derivative of every hidden layer,
and accumulate gradients. Their memory does not grow with T.

With the subtractive reset treated as a constant (stop-gradient), the membrane of a LIF
layer is linear in its weights through presynaptic traces:

    eps_I[t] = alpha eps_I[t-1] + z[t]            (z: the layer's input x, or its own s[t-1])
    eps_U[t] = beta  eps_U[t-1] + gain eps_I[t]   =>  dU_j[t]/dW_ji = eps_U_i[t]

``eps_U`` is e-prop's eligibility vector and DECOLLE's input trace P alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from spikebench.errors import ConfigError
from spikebench.learning_rules.base import RunningScore, step_error
from spikebench.models import SpikingMLP
from spikebench.neurons import LIFLayer, spike_derivative
from spikebench.sparse import dense


def check_online_model(model, rule: str) -> None:
    """Online rules need a SpikingMLP of LIF layers with the subtractive reset."""
    if not isinstance(model, SpikingMLP):
        raise TypeError(f"rule {rule!r} trains SpikingMLP models, got {type(model).__name__}")
    for k, layer in enumerate(model.hidden):
        if not isinstance(layer, LIFLayer):
            raise TypeError(
                f"rule {rule!r} needs LIF hidden layers (their eligibility traces are derived "
                f"for the LIF dynamics); layer {k} is {type(layer).__name__}"
            )
        if layer.params.reset != "subtract":
            raise ConfigError(
                f"rule {rule!r} supports reset='subtract' (the locality paper's), where the "
                f"membrane is linear in the weights through presynaptic traces; layer {k} "
                f"has reset={layer.params.reset!r}"
            )


@dataclass
class LayerStep:
    """What an online rule sees of hidden layer k at step t."""

    s: torch.Tensor  # spikes s[t], [B, n]
    psi: torch.Tensor  # surrogate derivative ds/dU at U[t], [B, n]
    eps_in: torch.Tensor  # eps_U of the layer's input (dU/dW), [B, n_in]
    eps_rec: torch.Tensor | None  # eps_U of its own s[t-1] (dU/dV), [B, n]


class PresynapticTrace:
    def __init__(self, layer: LIFLayer) -> None:
        self.alpha, self.beta, self.gain = (layer.params.alpha, layer.params.beta,
                                            layer.params.gain)
        self.i: torch.Tensor | float = 0.0
        self.u: torch.Tensor | float = 0.0

    def update(self, z: torch.Tensor) -> torch.Tensor:
        self.i = self.alpha * self.i + z
        self.u = self.beta * self.u + self.gain * self.i
        return self.u


class ReadoutGradient:
    """Exact online gradient of the leaky readout y[t] = kappa y[t-1] + W s[t] + b:
    dE/dW = sum_t delta[t] sbar[t]^T, dE/db = sum_t delta[t] bbar[t] with kappa-filtered
    traces sbar[t] = kappa sbar[t-1] + s[t], bbar[t] = kappa bbar[t-1] + 1."""

    def __init__(self, model: SpikingMLP) -> None:
        self.kappa = model.readout.kappa
        self.sbar: torch.Tensor | float = 0.0
        self.bbar = 0.0
        w = model.readout.weight
        self.gw = torch.zeros_like(w)
        self.gb = torch.zeros_like(model.readout.bias)

    def update(self, s_last: torch.Tensor, delta: torch.Tensor) -> None:
        self.sbar = self.kappa * self.sbar + s_last
        self.bbar = self.kappa * self.bbar + 1.0
        self.gw += delta.t() @ self.sbar
        self.gb += delta.sum(0) * self.bbar


OnStep = Callable[[int, list[LayerStep], torch.Tensor, torch.Tensor, torch.Tensor], None]


@torch.no_grad()
def run_online(model: SpikingMLP, x: torch.Tensor, y: torch.Tensor, burn_in: int,
               on_step: OnStep, flush: Callable[[], None] | None = None) -> RunningScore:
    """Drive ``model`` over x [T, B, ...] step by step; at each step call
    ``on_step(t, layers, delta, targets_t, weights_t)`` where ``delta`` = dE/dy[t] of the
    ``step_ce`` loss. Fills the readout's exact gradient; returns the loss and decision,
    accumulated online (nothing per step is kept).

    With ``flush``, the readout's gradient of each step is put into ``.grad`` and
    ``flush()`` is called after every step (per-step weight updates)."""
    x = dense(model.flatten_input(x))
    steps, batch = x.shape[:2]
    score = RunningScore(y, steps, burn_in)
    targets, weights = score.targets, score.weights
    state = model.initial_state(batch, x)
    traces = [(PresynapticTrace(layer), PresynapticTrace(layer) if layer.recurrent else None)
              for layer in model.hidden]
    readout = ReadoutGradient(model)
    for t in range(steps):
        prev = state
        y_t, state = model.step(x[t], state)
        inputs = [x[t]] + [st.s for st in state.layers[:-1]]
        layers = []
        for layer, (tr_in, tr_rec), z_in, st, st_prev in zip(
            model.hidden, traces, inputs, state.layers, prev.layers, strict=True
        ):
            p = layer.params
            layers.append(LayerStep(
                s=st.s,
                psi=spike_derivative(st.u - p.threshold, p.surrogate, p.slope),
                eps_in=tr_in.update(z_in),
                eps_rec=tr_rec.update(st_prev.s) if tr_rec is not None else None,
            ))
        delta = step_error(y_t, targets[t], weights[t])
        readout.update(state.layers[-1].s, delta)
        on_step(t, layers, delta, targets[t], weights[t])
        score.update(t, y_t)
        if flush is not None:
            _add_grad(model.readout.weight, readout.gw)
            _add_grad(model.readout.bias, readout.gb)
            readout.gw.zero_()
            readout.gb.zero_()
            flush()
    if flush is None:
        _add_grad(model.readout.weight, readout.gw)
        _add_grad(model.readout.bias, readout.gb)
    return score


def _add_grad(p: torch.nn.Parameter, g: torch.Tensor) -> None:
    if p.grad is None:
        p.grad = g.clone()
    else:
        p.grad += g


def set_hidden_grads(model: SpikingMLP, g_in: list[torch.Tensor],
                     g_rec: list[torch.Tensor | None]) -> None:
    for layer, gw, gv in zip(model.hidden, g_in, g_rec, strict=True):
        _add_grad(layer.weight, gw)
        if layer.rec_weight is not None:
            _add_grad(layer.rec_weight, gv * layer.rec_mask)

"""Truncated backpropagation through time, TBPTT(k).

The sequence is cut into windows of ``k`` steps. Each window runs from the state the
previous one left, held constant (detached): its readout's ``step_ce`` terms are
backpropagated through the window's steps only, and the gradients of all windows are summed
(one optimiser step per batch, as for every rule). ``k >= T`` is BPTT exactly (tests);
memory grows with k, not with T. LIF layers take the fused scan from the carried state
(``lif_scan_from``); any other step-wise neuron unrolls its step function; a neuron that is
parallel in time (ParaLIF) has no state to carry and is refused.
"""

from __future__ import annotations

import torch

from spikebench.errors import ConfigError
from spikebench.learning_rules.base import LearningRule, RunningScore, StepOutput, step_loss
from spikebench.neurons import LIFLayer
from spikebench.neurons.lif_scan import lif_scan_from
from spikebench.sparse import EventBatch, dense, sequence_linear


def check_stepwise(model, rule: str) -> None:
    """A rule that carries the state across steps needs step-wise neurons."""
    if getattr(model, "parallel", False):
        raise ConfigError(f"rule {rule!r} carries each layer's state across its windows; "
                          f"{model.neuron!r} layers are parallel in time and have none (use "
                          "bptt)")


def _detached(state):
    return type(state)(*(v.detach() if torch.is_tensor(v) else v for v in state))


def run_window(model, z, states: list, y_prev: torch.Tensor | None) -> torch.Tensor:
    """The readout [K, B, C] of one window of inputs z [K, B, n_in] (dense or events) from
    the carried ``states`` (one per hidden layer, None: zero; replaced by the detached
    states after the window) and readout value ``y_prev``; differentiable in the weights."""
    for k, layer in enumerate(model.hidden):
        if isinstance(layer, LIFLayer):
            z, states[k] = lif_scan_from(sequence_linear(z, layer.weight), layer.params,
                                         layer.recurrent_matrix(), states[k])
            continue
        z = dense(z)
        st = states[k] if states[k] is not None else layer.initial_state(z.shape[1], z)
        out = []
        for x_t in z:
            s, st = layer.step(x_t, st)
            out.append(s)
        states[k], z = _detached(st), torch.stack(out)
    drive = sequence_linear(z, model.readout.weight) + model.readout.bias
    y = drive.new_zeros(drive.shape[1:]) if y_prev is None else y_prev
    ys = []
    for d_t in drive.unbind(0):
        y = model.readout.kappa * y + d_t
        ys.append(y)
    return torch.stack(ys)


def windows(x, steps: int, k: int):
    """(t0, t1, inputs of steps t0..t1-1) for the windows of ``k`` steps."""
    for t0 in range(0, steps, k):
        t1 = min(t0 + k, steps)
        yield t0, t1, x.steps_slice(t0, t1) if isinstance(x, EventBatch) else x[t0:t1]


class TruncatedBPTT(LearningRule):
    """TBPTT(k): exact gradients within windows of k steps, none across them."""

    name = "tbptt"
    credit_space = "exact (backprop through layers)"
    credit_time = "exact within windows of k steps, none across"

    def __init__(self, burn_in: int = 0, loss: str = "step_ce", k: int = 20) -> None:
        super().__init__(burn_in, loss)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"k (steps per truncation window) must be an integer >= 1, "
                              f"got {k!r}")
        self.k = k

    def config(self) -> dict:
        return {**super().config(), "k": self.k}

    def prepare(self, model) -> None:
        check_stepwise(model, self.name)

    def backward(self, model, x, y: torch.Tensor, update=None) -> StepOutput:
        check_stepwise(model, self.name)
        model.zero_grad(set_to_none=True)
        x = model.flatten_input(x)
        steps = x.shape[0]
        score = RunningScore(y, steps, self.burn_in)
        states: list = [None] * len(model.hidden)
        y_prev = None
        for t0, t1, z in windows(x, steps, self.k):
            ys = run_window(model, z, states, y_prev)
            step_loss(ys, score.targets[t0:t1], score.weights[t0:t1]).backward()
            ys = ys.detach()
            score.update_chunk(t0, ys)
            y_prev = ys[-1]
        loss, correct, count = score.result()
        return StepOutput(loss, None, correct, count)

"""Efficiency metrics of a spiking network on a data set, with NeuroBench's definitions
(``neurobench/metrics/static`` and ``neurobench/metrics/workload``).

Static (of the trained model):

- ``footprint_bytes``: bytes of all parameters and buffers.
- ``connection_sparsity``: zero weights / all weights of the connection layers (every
  hidden layer's W, in REC its V, the readout's W; biases are not connections).

Workload (on the test set, per sample, summed over its T steps):

- ``synops_ac`` / ``synops_mac``: effective synaptic operations. A connection layer's call
  counts one operation per (nonzero input, nonzero weight) pair; biases are not counted.
  A layer whose input is binary (spikes, binary event frames) counts accumulates (ACs),
  and a layer with real-valued input counts multiply-accumulates (MACs).
- ``synops_dense``: the same with every input and weight counted (hardware without
  sparsity): T x n_in x n_out per layer and sample.
- ``activation_sparsity``: zero outputs / all outputs of the spiking neurons, over every
  hidden layer, step and sample; ``activation_sparsity_l{k}`` for layer k; per time step
  and layer from ``EfficiencyCounter.per_step()``.
- ``membrane_updates``: NeuroBench's count. At the first step every neuron's membrane is
  one update. At every later step, each neuron whose membrane after the step differs from
  the one before it is one: a neuron at rest (no membrane, no input current) does not count.
  Our LIF's membrane after step t is U[t] - theta s[t] (subtract) or (1 - s[t]) U[t] (zero
  reset), recomputed by the graph-free scan; ParaLIF's is its membrane m[t]; another
  step-wise neuron's is its state's ``u`` (NaN for a neuron without one).

The counts follow NeuroBench's hooks on ``nn.Linear`` inputs for a step-by-step network:
V s[t-1] is a connection with the previous step's spikes as input (zero at t = 0). The tests
cross-check this module against NeuroBench's metric code on an snnTorch network of the same
shape (where ``neurobench`` is installed) and against hand counts on tiny networks.
"""

from __future__ import annotations

import torch

from spikebench.neurons import LIFLayer
from spikebench.neurons.lif_scan import lif_run
from spikebench.neurons.paralif import ParaLIFLayer, parallel_membrane
from spikebench.sparse import EventBatch, sequence_linear

STATIC = ("footprint_bytes", "connection_sparsity")
WORKLOAD = ("synops_ac", "synops_mac", "synops_dense", "activation_sparsity",
            "membrane_updates")


def connection_weights(model) -> list[torch.Tensor]:
    """The connection matrices of a SpikingMLP: W_k (and V_k, masked) per hidden layer, then
    the readout's W."""
    mats = []
    for layer in model.hidden:
        mats.append(layer.weight)
        if getattr(layer, "rec_weight", None) is not None:
            mats.append(layer.recurrent_matrix())
    mats.append(model.readout.weight)
    return mats


@torch.no_grad()
def static_metrics(model) -> dict[str, float]:
    size = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    mats = connection_weights(model)
    zeros = sum(int((m == 0).sum()) for m in mats)
    return {"footprint_bytes": float(size),
            "connection_sparsity": zeros / sum(m.numel() for m in mats)}


def membrane_updates(post: torch.Tensor) -> int:
    """NeuroBench's membrane updates of one layer from its membranes after each step
    [T, B, n]: every neuron at the first step, then each one whose membrane changed."""
    return post[0].numel() + int(torch.count_nonzero(post[1:] - post[:-1]))


@torch.no_grad()
def layer_membranes(layer, x) -> torch.Tensor | None:
    """The membranes after each step [T, B, n] of hidden ``layer`` for its input x (None
    for a neuron whose state has no membrane ``u``)."""
    if not isinstance(layer, LIFLayer | ParaLIFLayer):  # a neuron of its own: its step
        x = x.dense() if isinstance(x, EventBatch) else x
        state, posts = layer.initial_state(x.shape[1], x), []
        for x_t in x:
            _, state = layer.step(x_t, state)
            if not hasattr(state, "u"):
                return None
            posts.append(state.u)
        return torch.stack(posts)
    current = sequence_linear(x, layer.weight)
    if isinstance(layer, LIFLayer):
        p = layer.params
        u, s, _ = lif_run(current, p, layer.recurrent_matrix())
        return u - p.threshold * s if p.reset == "subtract" else (1.0 - s) * u
    return parallel_membrane(current, layer.alpha, layer.beta, layer.params.membrane)


def _is_binary(x) -> bool:
    values = x.rows.values() if isinstance(x, EventBatch) else x
    return bool(((values == 0) | (values == 1)).all())


def effective_ops(x, weight: torch.Tensor) -> int:
    """Sum over steps and samples of the (nonzero input, nonzero weight) pairs of one
    connection: x [T, B, n_in] (dense or an EventBatch), weight [n_out, n_in]."""
    fan_out = (weight != 0).sum(0).to(torch.float64)  # nonzero weights per input
    if isinstance(x, EventBatch):
        nz = x.rows.values() != 0
        return int(fan_out[x.rows.col_indices()[nz]].sum())
    active = (x != 0).reshape(-1, x.shape[-1]).to(torch.float64)
    return int((active @ fan_out).sum())


class EfficiencyCounter:
    """Accumulates the workload metrics over batches: ``update(model, x, spikes)`` with the
    model's input and its hidden spikes (``model(x, record=True)``), then ``result()``."""

    def __init__(self) -> None:
        self.samples = 0
        self.ac = self.mac = self.dense = 0
        self.membrane = 0
        self.zeros: list[int] = []
        self.total: list[int] = []
        self.zeros_t: list[torch.Tensor] = []  # per layer: zero outputs per step [T]
        self.total_t: list[int] = []  # per layer: outputs per step (B n, summed)

    @torch.no_grad()
    def update(self, model, x, spikes: list[torch.Tensor]) -> None:
        x = model.flatten_input(x)  # [T, B, n_in] (an EventBatch stays sparse)
        steps, batch = x.shape[:2]
        self.samples += batch
        inputs = [x, *spikes]
        for k, layer in enumerate(model.hidden):
            self._connection(inputs[k], layer.weight, steps, batch)
            if getattr(layer, "rec_weight", None) is not None:  # V s[t-1], zero at t = 0
                s = spikes[k]
                self._connection(torch.cat([torch.zeros_like(s[:1]), s[:-1]]),
                                 layer.recurrent_matrix(), steps, batch)
        self._connection(spikes[-1], model.readout.weight, steps, batch)
        if not self.zeros:
            self.zeros, self.total = [0] * len(spikes), [0] * len(spikes)
            self.zeros_t = [torch.zeros(steps, dtype=torch.float64) for _ in spikes]
            self.total_t = [0] * len(spikes)
        for k, (layer, s) in enumerate(zip(model.hidden, spikes, strict=True)):
            self.zeros[k] += int((s == 0).sum())
            self.total[k] += s.numel()
            if len(self.zeros_t[k]) == steps:  # batches of one length (padding aside)
                self.zeros_t[k] += (s == 0).reshape(steps, -1).sum(1).cpu().to(torch.float64)
                self.total_t[k] += s[0].numel()
            post = layer_membranes(layer, inputs[k])
            self.membrane = (self.membrane + membrane_updates(post) if post is not None
                             else float("nan"))

    def _connection(self, x, weight, steps: int, batch: int) -> None:
        ops = effective_ops(x, weight)
        if _is_binary(x):
            self.ac += ops
        else:
            self.mac += ops
        self.dense += steps * batch * weight.numel()

    def per_step(self) -> list[torch.Tensor]:
        """Activation sparsity per layer and time step: one [T] tensor per hidden layer."""
        return [z / max(t, 1) for z, t in zip(self.zeros_t, self.total_t, strict=True)]

    def result(self) -> dict[str, float]:
        n = max(self.samples, 1)
        out = {"synops_ac": self.ac / n, "synops_mac": self.mac / n,
               "synops_dense": self.dense / n,
               "activation_sparsity": sum(self.zeros) / max(sum(self.total), 1),
               "membrane_updates": self.membrane / n}
        for k, (z, t) in enumerate(zip(self.zeros, self.total, strict=True)):
            out[f"activation_sparsity_l{k}"] = z / max(t, 1)
        return out

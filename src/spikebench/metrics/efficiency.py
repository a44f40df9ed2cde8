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
from torch import nn

from spikebench.errors import ConfigError
from spikebench.models import device_of
from spikebench.neurons import NeuronDynamics, SpikingLayer
from spikebench.sparse import EventBatch

STATIC = ("footprint_bytes", "connection_sparsity")
WORKLOAD = ("synops_ac", "synops_mac", "synops_dense", "activation_sparsity",
            "membrane_updates")


def connection_weights(model) -> list[torch.Tensor]:
    """The connection matrices of a SpikingMLP: W_k (and V_k, masked) per hidden layer, then
    the readout's W. Of any other model (a hybrid): the weights of its ``nn.Linear``,
    convolution and attention modules and of its spiking layers."""
    if not hasattr(model, "hidden"):
        mats = []
        for m in model.modules():
            if isinstance(m, nn.Linear | nn.modules.conv._ConvNd | SpikingLayer):
                mats.append(m.weight)
            if isinstance(m, nn.MultiheadAttention):
                mats.append(m.in_proj_weight)
            if getattr(m, "rec_weight", None) is not None:
                mats.append(m.recurrent_matrix())
        return mats
    mats = []
    for layer in model.hidden:
        mats.append(layer.weight)
        if getattr(layer, "rec_weight", None) is not None:
            mats.append(layer.recurrent_matrix())
    mats.append(model.readout.weight)
    return mats


@torch.no_grad()
def static_metrics(model) -> dict[str, float]:
    return _static([*model.parameters(), *model.buffers()], connection_weights(model))


def _static(tensors: list[torch.Tensor], mats: list[torch.Tensor]) -> dict[str, float]:
    zeros = sum(int((m == 0).sum()) for m in mats)
    return {"footprint_bytes": float(sum(t.numel() * t.element_size() for t in tensors)),
            "connection_sparsity": zeros / sum(m.numel() for m in mats)}


@torch.no_grad()
def hybrid_static(encoder: nn.Module, head: nn.Module | None) -> dict[str, float]:
    """Footprint and connection sparsity of an encoder with ``head``: a spiking head
    replaces the encoder's default head (``encoder.head()``), None keeps it."""
    if head is None:
        return static_metrics(encoder)
    default = {id(t) for t in [*encoder.head().parameters(), *encoder.head().buffers()]}

    def kept(tensors):
        return [t for t in tensors if id(t) not in default]

    return _static(kept([*encoder.parameters(), *encoder.buffers()])
                   + [*head.parameters(), *head.buffers()],
                   kept(connection_weights(encoder)) + connection_weights(head))


def membrane_updates(post: torch.Tensor) -> int:
    """NeuroBench's membrane updates of one layer from its membranes after each step
    [T, B, n]: every neuron at the first step, then each one whose membrane changed."""
    return post[0].numel() + int(torch.count_nonzero(post[1:] - post[:-1]))


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
        self.update_layers(list(model.hidden), x, spikes, model.readout.weight)

    @torch.no_grad()
    def update_layers(self, layers: list, x, spikes: list[torch.Tensor],
                      readout: torch.Tensor | None = None) -> None:
        """Spiking ``layers`` in sequence with input x [T, B, n_in] and their spikes (the
        last layer's feed the ``readout`` weight, if any)."""
        steps, batch = x.shape[:2]
        self.samples += batch
        inputs = [x, *spikes]
        for k, layer in enumerate(layers):
            self._connection(inputs[k], layer.weight, steps, batch)
            if getattr(layer, "rec_weight", None) is not None:  # V s[t-1], zero at t = 0
                s = spikes[k]
                self._connection(torch.cat([torch.zeros_like(s[:1]), s[:-1]]),
                                 layer.recurrent_matrix(), steps, batch)
        if readout is not None:
            self._connection(spikes[-1], readout, steps, batch)
        if not self.zeros:
            self.zeros, self.total = [0] * len(spikes), [0] * len(spikes)
            self.zeros_t = [torch.zeros(steps, dtype=torch.float64) for _ in spikes]
            self.total_t = [0] * len(spikes)
        for k, (layer, s) in enumerate(zip(layers, spikes, strict=True)):
            self.zeros[k] += int((s == 0).sum())
            self.total[k] += s.numel()
            if len(self.zeros_t[k]) == steps:  # batches of one length (padding aside)
                self.zeros_t[k] += (s == 0).reshape(steps, -1).sum(1).cpu().to(torch.float64)
                self.total_t[k] += s[0].numel()
            post = layer.membranes(inputs[k])  # the neuron interface (None: no membrane)
            self.membrane = (self.membrane + membrane_updates(post) if post is not None
                             else float("nan"))

    def _connection(self, x, weight, steps: int, batch: int) -> None:
        self.add(effective_ops(x, weight), steps * batch * weight.numel(), _is_binary(x))

    def add(self, ops: int, dense: int, binary: bool) -> None:
        """One connection's effective and dense operations: ACs for binary input."""
        if binary:
            self.ac += ops
        else:
            self.mac += ops
        self.dense += dense

    def per_step(self) -> list[torch.Tensor]:
        """Activation sparsity per layer and time step: one [T] tensor per hidden layer."""
        return [z / max(t, 1) for z, t in zip(self.zeros_t, self.total_t, strict=True)]

    def result(self) -> dict[str, float]:
        n = max(self.samples, 1)
        if not self.total:  # no spiking layer (an ANN): no activations, no membranes
            return {"synops_ac": self.ac / n, "synops_mac": self.mac / n,
                    "synops_dense": self.dense / n, "activation_sparsity": float("nan"),
                    "membrane_updates": 0.0}
        out = {"synops_ac": self.ac / n, "synops_mac": self.mac / n,
               "synops_dense": self.dense / n,
               "activation_sparsity": sum(self.zeros) / max(sum(self.total), 1),
               "membrane_updates": self.membrane / n}
        for k, (z, t) in enumerate(zip(self.zeros, self.total, strict=True)):
            out[f"activation_sparsity_l{k}"] = z / max(t, 1)
        return out


def conv_ops(x: torch.Tensor, conv: nn.modules.conv._ConvNd, total: bool = False) -> int:
    """(nonzero input, nonzero weight) pairs of one convolution's call, as NeuroBench counts
    them: the convolution of the input's nonzero pattern with the weight's (``total``:
    every input and weight; padding positions are not operations)."""
    pattern = torch.ones_like(x, dtype=torch.float64) if total else (x != 0).double()
    weight = (torch.ones_like(conv.weight, dtype=torch.float64) if total
              else (conv.weight != 0).double())
    return round(float(conv._conv_forward(pattern, weight, None).sum()))  # exact counts


class ModuleCounter:
    """Synaptic operations of an ANN part (an encoder) by forward hooks, as NeuroBench's
    hooks count them: every ``nn.Linear`` and convolution call (effective: nonzero input
    and weight pairs; ACs where the call's input is binary, else MACs; dense: all pairs).
    ``nn.MultiheadAttention`` (whose projections are not module calls): its input
    projection is counted from its input, its output projection and the two attention
    products (Q K^T, A V) as dense MACs (activations are nonzero). Biases, norms, pooling
    and activation functions are no synaptic operations. Use as a context manager around
    the forward passes; the counts land in ``counter`` (an ``EfficiencyCounter``)."""

    def __init__(self, module: nn.Module, counter: EfficiencyCounter) -> None:
        self.module, self.counter, self.handles = module, counter, []

    def __enter__(self) -> ModuleCounter:
        for m in self.module.modules():
            if isinstance(m, nn.Linear | nn.modules.conv._ConvNd | nn.MultiheadAttention):
                self.handles.append(m.register_forward_hook(self._hook))
        return self

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    @torch.no_grad()
    def _hook(self, module, args, output) -> None:
        x, add = args[0], self.counter.add
        if isinstance(module, nn.Linear):
            add(effective_ops(x, module.weight), x[..., 0].numel() * module.weight.numel(),
                _is_binary(x))
        elif isinstance(module, nn.MultiheadAttention):
            batch_first = module.batch_first
            length = x.shape[1] if batch_first else x.shape[0]
            rows, dim = x[..., 0].numel(), module.embed_dim
            add(effective_ops(x, module.in_proj_weight), rows * module.in_proj_weight.numel(),
                _is_binary(x))
            out = rows * int((module.out_proj.weight != 0).sum())
            products = 2 * rows * length * dim  # Q K^T and A V, over all heads
            add(out + products, rows * module.out_proj.weight.numel() + products, False)
        else:
            add(conv_ops(x, module), conv_ops(x, module, total=True), _is_binary(x))


@torch.no_grad()
def hybrid_workload(net, heads: dict, x: torch.Tensor, batch: int = 256
                    ) -> dict[str, dict[str, float]]:
    """The efficiency metrics of a hybrid network (``models.hybrid.HybridNet``) on images x
    for each of ``heads`` (name -> a ``SpikingHead``, or None for the encoder's default
    head), per image: the encoder's operations (``ModuleCounter``: MACs on real-valued
    pixels and activations) once, then the head's. A spiking head is counted on one rate
    encoding per image (not the attacks' expectation over several): its Linear input is
    binary (ACs), its spikes give the activation sparsity and membrane updates. The
    default head (an ANN layer) has no spiking neurons: activation sparsity NaN."""
    out = {name: EfficiencyCounter() for name in heads}
    device = device_of(net)
    for i in range(0, len(x), batch):
        xb = x[i:i + batch].to(device)
        part = EfficiencyCounter()
        with ModuleCounter(net.encoder, part):
            features = net.features(xb)
        for name, head in heads.items():
            counter = out[name]
            counter.ac, counter.mac = counter.ac + part.ac, counter.mac + part.mac
            counter.dense += part.dense
            if head is None:
                with ModuleCounter(net.encoder.head(), counter):
                    net.encoder.head()(features)
                counter.samples += len(xb)
            else:
                spikes_in = head.encode(features)
                counter.update_layers([head.layer], spikes_in, [head.layer(spikes_in)])
    return {name: {**c.result(), **hybrid_static(net.encoder, heads[name])}
            for name, c in out.items()}


@torch.no_grad()
def conv_workload(model: nn.Module, x: torch.Tensor, batch: int = 256) -> dict[str, float]:
    """The efficiency metrics of a ``models.ConvNet`` (ANN or SNN) on images x, per image:
    SynOps of its conv and Linear calls over all T steps (``ModuleCounter``: ACs where a
    call's input is binary, i.e. spikes or a rate code, MACs for pixels and ANN
    activations), activation sparsity of its spiking neurons (NaN for an ANN), footprint
    and connection sparsity, ``spikes`` per image (0 for an ANN). Membrane updates are not
    counted here (0)."""
    counter, zeros, total, spikes = EfficiencyCounter(), 0, 0, 0.0

    def hook(module, args, out):
        nonlocal zeros, total, spikes
        zeros += int((out == 0).sum())
        total += out.numel()
        spikes += float(out.sum())

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, NeuronDynamics)]
    was = model.training
    model.eval()
    try:
        device = device_of(model)
        with ModuleCounter(model, counter):
            for i in range(0, len(x), batch):
                model(x[i:i + batch].to(device))
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    counter.samples = len(x)
    out = counter.result()
    out["activation_sparsity"] = zeros / total if total else float("nan")
    out["spikes"] = spikes / max(len(x), 1)  # per image, over every neuron and step
    return {**out, **static_metrics(model)}


# NeuroBench 2.3's operations per membrane update (``neuron_ops_reset_operations``): our
# LIF holds a current and a membrane, snnTorch's Synaptic; DLIF one membrane, Leaky.
# ParaLIF has no counterpart.
NEURON_OPS = {("lif", "subtract"): 6, ("lif", "zero"): 8, ("dlif", "subtract"): 4,
              ("dlif", "zero"): 4}

# Energy per operation, 45 nm CMOS, 32-bit float (Horowitz, "Computing's energy problem",
# ISSCC 2014): an add 0.9 pJ (an accumulate, AC), a multiply 3.7 pJ, so a MAC 4.6 pJ. A
# neuron operation of NeuroBench's count is costed as one add (a lower bound: some are
# multiplies). Parameters of ``energy_joules``: pass another technology's figures.
E_AC, E_MAC, E_NEURON_OP = 0.9e-12, 4.6e-12, 0.9e-12


def neuron_operations(membrane_updates: float, neuron: str, reset: str) -> float:
    """NeuroBench's effective neuron operations from our membrane updates (the same count
    NeuroBench's ``MembraneUpdates`` makes): updates x operations per update; NaN for a
    neuron NeuroBench has no figure for."""
    ops = NEURON_OPS.get((neuron, reset))
    return float("nan") if ops is None else membrane_updates * ops


def energy_joules(synops_ac: float, synops_mac: float, neuron_ops: float = 0.0,
                  e_ac: float = E_AC, e_mac: float = E_MAC,
                  e_neuron_op: float = E_NEURON_OP) -> float:
    """An energy estimate per sample from operation counts: ACs, MACs and neuron
    operations times their energies (defaults: Horowitz 2014, 45 nm, 32-bit float). Memory
    traffic, which often dominates, is not in it."""
    for name, v in (("e_ac", e_ac), ("e_mac", e_mac), ("e_neuron_op", e_neuron_op)):
        if not (isinstance(v, int | float) and 0 <= v < float("inf")):
            raise ConfigError(f"{name} must be a finite energy >= 0 in joules, got {v!r}")
    return synops_ac * e_ac + synops_mac * e_mac + neuron_ops * e_neuron_op

"""Empirical Fisher information per layer and time step (Kim et al. 2023).

For a sample (x, c) and a time step t, the output accumulated up to t is the decision the
model would take if the sequence ended at t, the mean readout
``z[t] = mean_{tau <= t} y[tau]`` (after ``burn_in``), and its loss is
``l_t = CE(z[t], c) = -log p_t(c | x)``. The trace of the empirical Fisher information of a
group of weights theta_g at step t is

    tr F_g[t] = E_(x, c) || d l_t / d theta_g ||^2 ,

the mean over samples of the squared norm of the per-sample gradient. Gradients go through
the spikes with the model's surrogate derivative, unrolled in time (BPTT), whatever rule
trained the model: the Fisher information is a property of the trained network.

Groups: the linear (input) weights W of each hidden layer and of the readout ("LW"), and
the recurrent weights V of each REC hidden layer ("RW"); biases are left out. ``shares``
sums each group over time and normalises so that all groups sum to one (the paper's
Figure 4: LW-FF, LW-REC, RW-REC).

Three computations of the same quantity:

- ``fisher_traces`` (used by the suites, step-wise neurons such as LIF): one forward pass
  per batch with a zero "probe" added to every layer's synaptic input at every step, then
  one backward pass per step t of the batch's summed loss: the probe gradients are the
  per-sample errors delta_tau of the current W x_tau (+ V s_tau-1), and the per-sample
  gradient norm follows from two T x T Gram matrices without forming the gradients:
  ||sum_tau delta_tau x_tau'||^2 = sum_{tau,tau'} (delta_tau . delta_tau')(x_tau . x_tau');
- ``fisher_traces_vmap``: ``torch.func`` (``vmap`` over samples of ``jacrev`` over the T
  losses), for any ``Probed`` model (ParaLIF MLPs, conv SNNs and ANNs, spiking heads),
  slower;
- ``fisher_traces_direct``: the plain loop over samples and steps the tests compare with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jacrev, vmap


def parameter_groups(model: nn.Module) -> dict[str, str]:
    """Group label (``h1.LW``, ``h1.RW``, ..., ``out.LW``; ``conv1.LW``, ... for a conv net)
    -> parameter name: the model's ``weight_groups`` (``models.contracts.Probed``)."""
    return model.weight_groups()


class _Readouts(nn.Module):
    """``model.probe(x, reference=True)``'s readouts as a module's forward, so that
    ``functional_call`` can swap the parameters of any ``Probed`` model."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.probe(x, reference=True)[0]


def step_losses(outputs: torch.Tensor, y: torch.Tensor, burn_in: int = 0) -> torch.Tensor:
    """Readout [T, B, C], labels [B] -> l_t [T - burn_in, B]: the CE of the mean readout
    accumulated up to each step t >= burn_in."""
    out = outputs[burn_in:]
    steps = torch.arange(1, out.shape[0] + 1, dtype=out.dtype, device=out.device)
    z = out.cumsum(0) / steps.view(-1, 1, 1)
    target = y.unsqueeze(0).expand(z.shape[0], -1)
    return F.cross_entropy(z.flatten(0, 1), target.flatten(), reduction="none").view(
        z.shape[0], -1)


def _batch_dim(model: nn.Module) -> int:
    """Where the samples are in the model's input: 1 for time-major [T, B, ...] (an MLP),
    0 for images or features (``Probed.batch_dim``)."""
    return getattr(model, "batch_dim", 1)


def _check(model: nn.Module, x: torch.Tensor, y: torch.Tensor, burn_in: int) -> None:
    if y.dim() != 1:
        raise ValueError("Fisher traces need one label per sample (labels [B]); got frame "
                         f"labels of shape {tuple(y.shape)}")
    bd = _batch_dim(model)
    if x.shape[bd] != y.shape[0]:
        raise ValueError(f"x has B={x.shape[bd]} samples (dim {bd} of {tuple(x.shape)}), but "
                         f"there are {len(y)} labels")
    if bd == 1 and burn_in >= x.shape[0]:
        raise ValueError(f"burn_in={burn_in} leaves no time steps of T={x.shape[0]}")


def _stepwise(model: nn.Module) -> bool:
    """The probe fast path: a spiking MLP whose neurons all have a step function (the
    neuron interface says so)."""
    hidden = getattr(model, "hidden", None)
    return hidden is not None and all(layer.stepwise for layer in hidden)


def _add(total: dict, g: str, value: torch.Tensor) -> None:
    total[g] = value if g not in total else total[g] + value


def _gram(a: torch.Tensor) -> torch.Tensor:
    """[T, b, n] -> per-sample Gram matrices over time [b, T, T] (float64)."""
    a = a.double()
    return torch.einsum("tbi,sbi->bts", a, a)


def fisher_traces(model: nn.Module, x: torch.Tensor, y: torch.Tensor, burn_in: int = 0,
                  batch_size: int = 64) -> dict[str, torch.Tensor]:
    """tr F_g[t] for every group g: a dict of [T - burn_in] tensors (mean over samples).

    ``x`` [T, B, ...] time-major, ``y`` [B]. Models without a step-wise neuron (ParaLIF)
    go through ``fisher_traces_vmap``."""
    _check(model, x, y, burn_in)
    if not _stepwise(model):
        return fisher_traces_vmap(model, x, y, burn_in)
    groups = parameter_groups(model)
    steps = x.shape[0] - burn_in
    total = {g: torch.zeros(steps, dtype=torch.float64) for g in groups}
    was_training = model.training
    model.eval()
    try:
        for i in range(0, x.shape[1], batch_size):
            for g, v in _probe_chunk(model, x[:, i:i + batch_size], y[i:i + batch_size],
                                     burn_in).items():
                total[g] += v
    finally:
        model.train(was_training)
    return {g: v / x.shape[1] for g, v in total.items()}


def _probe_chunk(model, x, y, burn_in: int) -> dict[str, torch.Tensor]:
    x = model.flatten_input(x)
    n_layers = len(model.hidden)
    state = model.initial_state(x.shape[1], x)
    probes = [[] for _ in range(n_layers + 1)]  # per layer (readout last), per step
    inputs = [[] for _ in range(n_layers + 1)]  # what W multiplies
    prev_spikes = [[] for _ in range(n_layers)]  # what V multiplies
    ys = []
    with torch.enable_grad():
        for x_t in x:
            h, layers = x_t, []
            for k, (layer, st) in enumerate(zip(model.hidden, state.layers, strict=True)):
                cur = layer.input_current(h, st)
                probe = torch.zeros_like(cur, requires_grad=True)
                probes[k].append(probe)
                inputs[k].append(h.detach())
                prev_spikes[k].append(st.s.detach())
                h, st = layer.dynamics(cur + probe, st)
                layers.append(st)
            y_t = model.readout.step(h, state.y)
            probe = torch.zeros_like(y_t, requires_grad=True)
            probes[-1].append(probe)
            inputs[-1].append(h.detach())
            y_t = y_t + probe
            ys.append(y_t)
            state = type(state)(tuple(layers), y_t)
        losses = step_losses(torch.stack(ys), y, burn_in).sum(1)  # [T']
        x_grams = [_gram(torch.stack(a)) for a in inputs]
        s_grams = [_gram(torch.stack(a)) for a in prev_spikes]
        spikes = [torch.stack(a).double() for a in prev_spikes]
        out = {g: torch.zeros(len(losses), dtype=torch.float64) for g in parameter_groups(model)}
        for j in range(len(losses)):
            t = burn_in + j + 1  # steps 0..t-1 influence the loss at step t-1
            flat = [p for layer_probes in probes for p in layer_probes[:t]]
            grads = torch.autograd.grad(losses[j], flat, retain_graph=j < len(losses) - 1)
            for k in range(n_layers + 1):
                delta = torch.stack(grads[k * t:(k + 1) * t]).double()  # [t, b, n_out]
                d_gram = _gram(delta)
                name = f"h{k + 1}" if k < n_layers else "out"
                out[f"{name}.LW"][j] = (d_gram * x_grams[k][:, :t, :t]).sum()
                if f"{name}.RW" in out:
                    full = (d_gram * s_grams[k][:, :t, :t]).sum()
                    diag = (delta * spikes[k][:t]).sum(0).pow(2).sum()  # V's diagonal is fixed at 0
                    out[f"{name}.RW"][j] = full - diag
    return out


def fisher_traces_vmap(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                       burn_in: int = 0, chunk: int = 8) -> dict[str, torch.Tensor]:
    """tr F_g[t] for every group g: a dict of [T - burn_in] tensors (mean over samples).

    ``x`` the input of any ``Probed`` model (time-major [T, B, ...] for an MLP, [B, ...] for
    a conv net or a head: its ``batch_dim``), ``y`` [B]; ``chunk`` samples are vectorised
    at a time (memory ~ chunk * T * parameters)."""
    _check(model, x, y, burn_in)
    groups = parameter_groups(model)
    params = {name: p.detach() for name, p in model.named_parameters()
              if name in groups.values()}
    # the unrolled definition: torch.func transforms do not go through the fused LIF scan
    readouts, bd = _Readouts(model), _batch_dim(model)

    def losses(p, x1, y1):
        out = functional_call(readouts, {f"model.{k}": v for k, v in p.items()},
                              (x1.unsqueeze(bd),))
        return step_losses(out, y1.view(1), burn_in)[:, 0]

    # stochastic neurons (a Bernoulli ParaLIF head) draw each sample's spikes apart
    per_sample = vmap(jacrev(losses), in_dims=(None, bd, 0), randomness="different")
    total: dict[str, torch.Tensor] = {}
    was_training = model.training
    model.eval()
    try:
        for i in range(0, x.shape[bd], chunk):
            jac = per_sample(params, x.narrow(bd, i, min(chunk, x.shape[bd] - i)),
                             y[i:i + chunk])
            for g, name in groups.items():  # jac[name]: [b, T', *shape]
                _add(total, g, jac[name].double().pow(2).flatten(2).sum(2).sum(0))
    finally:
        model.train(was_training)
    return {g: total[g] / x.shape[bd] for g in groups}


def fisher_traces_direct(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                         burn_in: int = 0) -> dict[str, torch.Tensor]:
    """The same quantity by a plain loop: one sample, one step, one autograd call at a time."""
    _check(model, x, y, burn_in)
    groups = parameter_groups(model)
    named = dict(model.named_parameters())
    bd = _batch_dim(model)
    total: dict[str, torch.Tensor] = {}
    for b in range(x.shape[bd]):
        out = model.probe(x.narrow(bd, b, 1), reference=True)[0]
        losses = step_losses(out, y[b:b + 1], burn_in)[:, 0]
        for g in groups:
            _add(total, g, torch.zeros(len(losses), dtype=torch.float64))
        for t in range(len(losses)):
            grads = torch.autograd.grad(losses[t], [named[n] for n in groups.values()],
                                        retain_graph=True)
            for g, grad in zip(groups, grads, strict=True):
                total[g][t] += grad.double().pow(2).sum()
    return {g: v / x.shape[bd] for g, v in total.items()}


def shares(traces: dict[str, torch.Tensor]) -> dict[str, float]:
    """Each group's trace summed over time, normalised so that all groups sum to one."""
    sums = {g: float(v.detach().sum()) for g, v in traces.items()}
    total = sum(sums.values())
    if not total > 0:
        raise ValueError("all Fisher traces are zero: the model's loss has no gradient "
                         "(no spikes reach the readout?)")
    return {g: s / total for g, s in sums.items()}

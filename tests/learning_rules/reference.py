"""Autograd references for the online rules: the forward pass with the stop-gradients
that define e-prop and DECOLLE, written independently of spikebench's online code."""

import torch

from spikebench.learning_rules import objective
from spikebench.neurons import spike


def stopgrad_forward(model, x):
    """Unrolled forward where each hidden layer's input, its recurrent input s[t-1] and its
    reset are constants; only the membrane's own linear history (through I and U) keeps
    its graph (and, in ALIF layers, the adaptation's dependence on the layer's own spikes:
    a[t] = rho a[t-1] + s[t-1]). Returns (readout [T, B, C] computed from detached spikes,
    spikes per layer)."""
    x = model.flatten_input(x)
    steps, batch = x.shape[:2]
    states = [None] * len(model.hidden)
    y = torch.zeros(batch, model.sizes[-1], dtype=x.dtype)
    outs, spikes = [], [[] for _ in model.hidden]
    for t in range(steps):
        h = x[t]
        for k, layer in enumerate(model.hidden):
            p = layer.params
            if states[k] is None:
                z = torch.zeros(batch, layer.n_out, dtype=x.dtype)
                states[k] = (z, z, z, z)
            i, u, a, s = states[k]
            cur = h.detach() @ layer.weight.t()
            if layer.recurrent:
                v = layer.rec_weight * getattr(layer, "rec_mask", 1.0)  # LIF: no diagonal
                cur = cur + s.detach() @ v.t()
            i = p.alpha * i + cur
            a = getattr(p, "rho", 0.0) * a + s  # ALIF's adaptation (zero weight in LIF)
            u = p.beta * u + p.gain * i - p.threshold * s.detach()
            s = spike(u - p.threshold - getattr(p, "adapt", 0.0) * a, p.surrogate, p.slope)
            states[k] = (i, u, a, s)
            spikes[k].append(s)
            h = s
        y = model.readout.kappa * y + h.detach() @ model.readout.weight.t() + model.readout.bias
        outs.append(y)
    return torch.stack(outs), [torch.stack(s) for s in spikes]


def eprop_reference_grads(model, x, y, feedback, burn_in=0):
    """Gradients e-prop must produce: readout by autograd of the loss; hidden layer k by
    autograd of sum_t <dE/dy[t], yhat_k[t]>, yhat_k a 'virtual readout' of layer k's spikes
    through its feedback matrix B_k with the readout's leak kappa."""
    model.zero_grad(set_to_none=True)
    outputs, spikes = stopgrad_forward(model, x)
    loss = objective(outputs, y, burn_in)
    (delta,) = torch.autograd.grad(loss, outputs, retain_graph=True)
    total = loss
    kappa = model.readout.kappa
    for s_k, b_k in zip(spikes, feedback, strict=True):
        yhat = torch.zeros_like(outputs[0])
        for t in range(len(s_k)):
            yhat = kappa * yhat + s_k[t] @ b_k.detach()
            total = total + (delta[t].detach() * yhat).sum()
    total.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def _layer_step(layer, h, state, detach_state):
    """One LIF step of ``layer`` written out: (i, u, s). With ``detach_state`` the state of
    the step before is a constant; else only the input and the reset are (the membrane's
    linear history keeps its graph)."""
    p = layer.params
    i, u, s = state
    if detach_state:
        i, u = i.detach(), u.detach()
    else:
        h = h.detach()
    cur = h @ layer.weight.t()
    if layer.recurrent:
        cur = cur + s.detach() @ (layer.rec_weight * layer.rec_mask).t()
    i = p.alpha * i + cur
    u = p.beta * u + p.gain * i - p.threshold * s.detach()
    return i, u, spike(u - p.threshold, p.surrogate, p.slope)


def unrolled(model, x, detach_state):
    """(readout [T, B, C], membranes U_k[t], spikes s_k[t]) of a forward whose states are
    detached at every step (``detach_state``: the readout's history too), or one in which
    only each membrane's linear history keeps its graph (readout from detached spikes)."""
    x = model.flatten_input(x)
    steps, batch = x.shape[:2]
    z = [torch.zeros(batch, layer.n_out, dtype=x.dtype) for layer in model.hidden]
    states = [(a, a, a) for a in z]
    y = torch.zeros(batch, model.sizes[-1], dtype=x.dtype)
    outs, us, ss = [], [[] for _ in model.hidden], [[] for _ in model.hidden]
    for t in range(steps):
        h = x[t]
        for k, layer in enumerate(model.hidden):
            states[k] = _layer_step(layer, h, states[k], detach_state)
            us[k].append(states[k][1])
            ss[k].append(states[k][2])
            h = states[k][2]
        y_prev = y.detach() if detach_state else y
        h_out = h if detach_state else h.detach()
        y = model.readout.kappa * y_prev + h_out @ model.readout.weight.t() + model.readout.bias
        outs.append(y)
    return torch.stack(outs), us, ss

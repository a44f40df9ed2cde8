"""Machinery shared by the online rules (e-prop, DECOLLE).

Both drive the model step by step without autograd and keep no history of states: at each
step they update presynaptic traces, read the surrogate derivative of every hidden layer,
and accumulate gradients. Their memory does not grow with T.

With the subtractive reset treated as a constant (stop-gradient), the membrane of a LIF
layer is linear in its weights through presynaptic traces:

    eps_I[t] = alpha eps_I[t-1] + z[t]            (z: the layer's input x, or its own s[t-1])
    eps_U[t] = beta  eps_U[t-1] + gain eps_I[t]   =>  dU_j[t]/dW_ji = eps_U_i[t]

``eps_U`` is e-prop's eligibility vector and DECOLLE's input trace P alike.

Two drivers. ``run_online`` steps the model one step at a time (the reference the tests
compare with; DECOLLE's per-step weight updates need it). ``run_chunked`` processes K steps
at a time with the weights of the batch: each layer's input current for the chunk is one
GEMM (CSR for an ``EventBatch``), the LIF recurrence a graph-free scan from the carried
state, and the traces are never written per step. Over a chunk (steps m = 0..K-1, traces
eps_I0, eps_U0 carried into it) the trace is linear in the chunk's inputs,

    eps_U[m] = sum_(m' <= m) H[m, m'] z[m'] + a_I[m] eps_I0 + a_U[m] eps_U0,
    H = gain D_beta D_alpha,  (D_d)[m, m'] = d^(m - m') for m >= m'  ([K, K] matrices)

so any contraction the rules need, sum_m q[m]^T eps_U[m] (q [K, B, n]), is
(H^T q)^T z, one CSR x dense product for event input, plus two [n, B] x [B, n_in] terms for
the carry (``InputTrace``). Memory: the chunk's [K, B, n] tensors and the carried [B, n_in]
traces, flat in T.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import torch

from spikebench.errors import ConfigError
from spikebench.learning_rules.base import RunningScore, step_error
from spikebench.models import SpikingMLP
from spikebench.neurons import ALIFParams, LIFLayer, spike_derivative
from spikebench.neurons.alif import alif_threshold
from spikebench.neurons.lif_scan import lif_run
from spikebench.sparse import EventBatch, dense, sequence_linear, weight_product


def check_online_model(model, rule: str, alif: bool = False) -> None:
    """Online rules need a SpikingMLP of LIF layers (with ``alif``: or ALIF layers, whose
    adaptation the rule's own traces carry) with the subtractive reset."""
    if not isinstance(model, SpikingMLP):
        raise TypeError(f"rule {rule!r} trains SpikingMLP models, got {type(model).__name__}")
    for k, layer in enumerate(model.hidden):
        if not (isinstance(layer, LIFLayer)
                or (alif and isinstance(getattr(layer, "params", None), ALIFParams))):
            raise TypeError(
                f"rule {rule!r} needs LIF{' or ALIF' if alif else ''} hidden layers (their "
                f"eligibility traces are derived for those dynamics); layer {k} is "
                f"{type(layer).__name__} ({type(getattr(layer, 'params', None)).__name__})"
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
    def __init__(self, layer) -> None:  # a LIF or ALIF layer (the same I and U filters)
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
                psi=spike_derivative(st.u - (alif_threshold(st, p) if isinstance(
                    p, ALIFParams) else p.threshold), p.surrogate, p.slope),
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
            mask = getattr(layer, "rec_mask", None)  # LIF: no self-connections
            _add_grad(layer.rec_weight, gv if mask is None else gv * mask)


# -- chunked driver ------------------------------------------------------------------------

@lru_cache(maxsize=64)
def _decay_matrix64(decay: float, steps: int) -> torch.Tensor:
    """D [K, K]: D[m, m'] = decay^(m - m') for m >= m', else 0 (float64, CPU)."""
    m = torch.arange(steps, dtype=torch.float64, device="cpu")
    diff = m.view(-1, 1) - m.view(1, -1)
    return torch.where(diff >= 0, decay ** diff.clamp(min=0), 0.0)


def decay_matrix(decay: float, steps: int, like: torch.Tensor) -> torch.Tensor:
    return _decay_matrix64(float(decay), steps).to(dtype=like.dtype, device=like.device)


def leaky_filter(decay: float, q: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """q [K, ...] filtered along its first axis from zero state: D q, the causal leaky
    sum r[m] = decay r[m-1] + q[m]; with ``reverse``, D^T q, the anti-causal one
    r[m] = q[m] + decay r[m+1]."""
    d = decay_matrix(decay, q.shape[0], q)
    return ((d.t() if reverse else d) @ q.reshape(q.shape[0], -1)).view(q.shape)


def powers(decay: float, start: int, stop: int, like: torch.Tensor) -> torch.Tensor:
    """decay^k for k = start..stop-1 (negative steps: decreasing powers)."""
    k = torch.arange(start, stop, 1 if stop >= start else -1, dtype=torch.float64,
                     device="cpu")
    return (float(decay) ** k).to(dtype=like.dtype, device=like.device)


class InputTrace:
    """eps_U of one layer's input z (the module doc), chunk by chunk: ``begin(z)`` with the
    chunk's input (an EventBatch or dense [K, B, n_in]), then ``contract`` / ``outer``, then
    ``advance()`` to carry eps_I, eps_U to the chunk's end."""

    def __init__(self, layer: LIFLayer) -> None:
        p = layer.params
        self.alpha, self.beta, self.gain = p.alpha, p.beta, p.gain
        self.e_i: torch.Tensor | None = None  # [B, n_in], None: zero (no chunk yet)
        self.e_u: torch.Tensor | None = None
        self.z = None

    def begin(self, z) -> None:
        self.z = z
        steps = z.shape[0]
        like = z.rows.values() if isinstance(z, EventBatch) else z
        d_alpha = decay_matrix(self.alpha, steps, like)
        d_beta = decay_matrix(self.beta, steps, like)
        self.h = self.gain * d_beta @ d_alpha  # [K, K]
        if self.e_i is not None:
            self.a_i = self.alpha * self.gain * (d_beta @ powers(self.alpha, 0, steps, like))
            self.a_u = powers(self.beta, 1, steps + 1, like)

    def _filtered(self, q: torch.Tensor) -> torch.Tensor:
        """H^T q: [K, B, n] -> [K B, n]."""
        steps = q.shape[0]
        return (self.h.t() @ q.reshape(steps, -1)).view(-1, q.shape[-1])

    def contract(self, q: torch.Tensor) -> torch.Tensor:
        """sum_m q[m]^T eps_U[m], [n, n_in], for q [K, B, n]."""
        g = weight_product(self.z, self._filtered(q))
        if self.e_i is not None:
            steps, batch, n = q.shape
            w_i = (self.a_i @ q.reshape(steps, -1)).view(batch, n)
            w_u = (self.a_u @ q.reshape(steps, -1)).view(batch, n)
            g = g.addmm(w_i.t(), self.e_i).addmm_(w_u.t(), self.e_u)
        return g

    def contract_now(self, q: torch.Tensor) -> torch.Tensor:
        """sum_m q[m]^T gain z[m], [n, n_in]: the instantaneous dU[m]/dW = gain z[m] (the
        membrane's history detached), for q [K, B, n]."""
        return weight_product(self.z, self.gain * q.reshape(-1, q.shape[-1]))

    def outer(self, c: torch.Tensor, into: torch.Tensor | None = None,
              scale: float = 1.0) -> torch.Tensor:
        """Per sample, sum_m eps_U[m] (x) c[m] for c [K, B, n]: [B, n_in, n], added in place
        to ``scale`` x ``into`` when given (e-prop's carried trace)."""
        steps, batch, n = c.shape
        ct = self._filtered(c)  # [K B, n]
        z = self.z
        n_in = z.shape[2]
        if into is None:
            into, scale = ct.new_zeros(batch, n_in, n), 0.0
        if isinstance(z, EventBatch):
            # a block-diagonal CSR [B n_in, K B]: entry (b n_in + i, m B + b) = z[m, b, i]
            step, sample, col, val = z.entries()
            row = sample * n_in + col
            order = torch.argsort(row, stable=True)
            crow = torch.zeros(batch * n_in + 1, dtype=torch.int64, device=row.device)
            crow[1:] = torch.cumsum(torch.bincount(row, minlength=batch * n_in), 0)
            blocks = torch.sparse_csr_tensor(crow, (step * batch + sample)[order], val[order],
                                             size=(batch * n_in, steps * batch),
                                             device=row.device, check_invariants=False)
            into.view(-1, n).addmm_(blocks, ct, beta=scale)  # in place: no [B n_in, n] temp
        else:
            into.baddbmm_(z.permute(1, 2, 0), ct.view(steps, batch, n).transpose(0, 1),
                          beta=scale)
        if self.e_i is not None:
            w_i = (self.a_i @ c.reshape(steps, -1)).view(batch, n)
            w_u = (self.a_u @ c.reshape(steps, -1)).view(batch, n)
            carry = torch.stack([self.e_i, self.e_u], 2)  # [B, n_in, 2]
            into.baddbmm_(carry, torch.stack([w_i, w_u], 1))
        return into

    def advance(self) -> None:
        """eps_I, eps_U at the chunk's last step (the carry into the next chunk)."""
        z = self.z
        steps, batch, n_in = z.shape
        like = z.rows.values() if isinstance(z, EventBatch) else z
        c_i = powers(self.alpha, steps - 1, -1, like)  # alpha^(K-1-m)
        c_u = self.h[-1]  # H[K-1, m]
        e_i, e_u = _weighted_steps(z, c_i), _weighted_steps(z, c_u)
        if self.e_i is not None:
            e_u += self.a_u[-1] * self.e_u + self.a_i[-1] * self.e_i
            e_i += self.alpha ** steps * self.e_i
        self.e_i, self.e_u, self.z = e_i, e_u, None


def _weighted_steps(z, c: torch.Tensor) -> torch.Tensor:
    """sum_m c[m] z[m]: [B, n_in]."""
    if isinstance(z, EventBatch):
        step, sample, col, val = z.entries()
        n_in = z.shape[2]
        out = val.new_zeros(z.batch * n_in)
        out.index_add_(0, sample * n_in + col, val * c[step])
        return out.view(z.batch, n_in)
    return (c @ z.reshape(z.shape[0], -1)).view(z.shape[1], z.shape[2])


@dataclass
class LayerChunk:
    """What a chunked rule sees of hidden layer k over one chunk of K steps."""

    s: torch.Tensor  # spikes [K, B, n]
    psi: torch.Tensor  # surrogate derivatives at U, [K, B, n]
    inp: InputTrace | None  # eps_U of the layer's input (None: not kept)
    rec: InputTrace | None  # eps_U of its own s[t-1] (REC)


class ChunkedReadout:
    """The readout's exact gradient (``ReadoutGradient``) a chunk at a time:
    sbar = D_kappa s + kappa^(m+1) sbar0, dE/dW += delta^T sbar, dE/db += delta bbar."""

    def __init__(self, model: SpikingMLP) -> None:
        self.kappa = model.readout.kappa
        self.sbar: torch.Tensor | None = None
        self.bbar = 0.0
        self.gw = torch.zeros_like(model.readout.weight)
        self.gb = torch.zeros_like(model.readout.bias)

    def update(self, s: torch.Tensor, delta: torch.Tensor) -> None:
        steps = s.shape[0]
        d = decay_matrix(self.kappa, steps, s)
        sbar = (d @ s.reshape(steps, -1)).view(s.shape)
        up = powers(self.kappa, 1, steps + 1, s)
        if self.sbar is not None:
            sbar += up.view(-1, 1, 1) * self.sbar
        bbar = d.sum(1) + up * self.bbar
        self.gw.addmm_(delta.reshape(-1, delta.shape[-1]).t(), sbar.reshape(-1, s.shape[-1]))
        self.gb += (delta.sum(1) * bbar.unsqueeze(1)).sum(0)
        self.sbar, self.bbar = sbar[-1], float(bbar[-1])


def spatial_errors(model: SpikingMLP, layers: list[LayerChunk], top: torch.Tensor
                   ) -> list[torch.Tensor]:
    """dE/dU_k [K, B, n_k] of every hidden layer through the spatial path alone: ``top`` =
    dE/ds of the last hidden layer at each step (e.g. delta W_out), carried down the layers
    at the same step (dU_k[t]/ds_(k-1)[t] = gain W_k); nothing crosses time steps."""
    g_s, out = top, [None] * len(layers)
    for k in range(len(layers) - 1, -1, -1):
        out[k] = g_s * layers[k].psi
        if k:
            layer = model.hidden[k]
            g_s = layer.params.gain * (out[k] @ layer.weight)
    return out


OnChunk = Callable[[int, list[LayerChunk], torch.Tensor, torch.Tensor, torch.Tensor, bool],
                   None]


@torch.no_grad()
def run_chunked(model: SpikingMLP, x, y: torch.Tensor, burn_in: int, chunk: int,
                on_chunk: OnChunk, traces: bool = True) -> RunningScore:
    """Drive ``model`` over x [T, B, ...] (dense or an EventBatch) ``chunk`` steps at a time
    (module doc); for each chunk call ``on_chunk(t0, layers, delta, targets, weights,
    last)`` with ``delta`` = dE/dy [K, B, C] of ``step_ce``, before the traces advance
    (``traces=False``: the layers' input traces are not kept, ``inp`` / ``rec`` None).
    Fills the readout's exact gradient; returns the loss and the decision."""
    x = model.flatten_input(x)
    steps = x.shape[0]
    score = RunningScore(y, steps, burn_in)
    states: list = [None] * len(model.hidden)
    traces = [(InputTrace(layer), InputTrace(layer) if layer.recurrent else None) if traces
              else (None, None) for layer in model.hidden]
    last_s: list[torch.Tensor | None] = [None] * len(model.hidden)
    readout = ChunkedReadout(model)
    y_last = None
    w_out, b_out, kappa = model.readout.weight, model.readout.bias, model.readout.kappa
    for t0 in range(0, steps, chunk):
        t1 = min(t0 + chunk, steps)
        k_steps = t1 - t0
        z = x.steps_slice(t0, t1) if isinstance(x, EventBatch) else x[t0:t1]
        layers = []
        for k, (layer, (tr_in, tr_rec)) in enumerate(zip(model.hidden, traces, strict=True)):
            p = layer.params
            u, s, states[k] = lif_run(sequence_linear(z, layer.weight), p,
                                      layer.recurrent_matrix(), states[k])
            if tr_in is not None:
                tr_in.begin(z)
            if tr_rec is not None:
                prev = last_s[k] if last_s[k] is not None else torch.zeros_like(s[0])
                tr_rec.begin(torch.cat([prev.unsqueeze(0), s[:-1]]))
            last_s[k] = s[-1]
            layers.append(LayerChunk(s, spike_derivative(u - p.threshold, p.surrogate, p.slope),
                                     tr_in, tr_rec))
            z = s
        drive = sequence_linear(z, w_out) + b_out
        ys = leaky_filter(kappa, drive)
        if y_last is not None:
            ys += powers(kappa, 1, k_steps + 1, ys).view(-1, 1, 1) * y_last
        y_last = ys[-1]
        targets, weights = score.targets[t0:t1], score.weights[t0:t1]
        delta = step_error(ys, targets, weights)
        readout.update(z, delta)
        on_chunk(t0, layers, delta, targets, weights, t1 == steps)
        score.update_chunk(t0, ys)
        if t1 < steps:
            for tr in (tr for pair in traces for tr in pair if tr is not None):
                tr.advance()
    _add_grad(model.readout.weight, readout.gw)
    _add_grad(model.readout.bias, readout.gb)
    return score

r"""OSTL: online spatio-temporal learning (Bohnstingl, Woźniak, Pantazi, Eleftheriou,
IEEE TNNLS 2022).

The gradient is split into a spatial part (the error at step t, carried through the layers
at that step: ``spatial_errors``) and a temporal part (each layer's own eligibility of its
weights, carried forward in time). Unlike e-prop's trace, the temporal part keeps the
reset's dependence on the weights (RTRL of one LIF layer): with a[t] = beta - theta
psi[t-1] (beta alone with ``detach_reset``),

    e_I[t] = alpha e_I[t-1] + x[t]                     (per presynaptic neuron)
    e_U[t] = a_j[t] e_U[t-1] + gain e_I[t]             (per sample and synapse: dU_j[t]/dW_ji)

The last hidden layer feeds the leaky readout, whose memory is linear: its eligibility is
filtered with the readout's kappa (ebar = kappa ebar + psi e_U) and met by L[t] = delta[t]
W_out, which makes its gradient exact. The layers below get the spatial error g_U_k[t]
(through the layers above at step t) times psi e_U: the paths through the upper layers'
own dynamics (from step t to later steps) are dropped, as OSTL drops them. Consequences
(tests): with one hidden layer (FF) OSTL equals BPTT exactly; in deeper nets the last
hidden layer's and the readout's gradients still equal BPTT's, the lower layers' differ. In
REC layers the recurrent input s[t-1] is treated as presynaptic input (as e-prop does): V's
effect on the other neurons' states is not carried, so REC is an approximation throughout.

Chunked (``chunk=K``, default 100). ``carry`` says how a chunk's eligibility reaches later
learning signals, as in e-prop:

- ``trace`` (online): within a chunk, sum_m q[m] e_U[m] = sum_m r[m] gain e_I[m] + (a[0]
  r[0]) e_U0 with the reverse scan r[m] = q[m] + a[m+1] r[m+1], so the chunk's share is one
  contraction of the presynaptic current trace (``InputTrace`` with beta = 0); the
  per-sample e_U [B, n_in, n] is built only when another chunk follows;
- ``replay``: the gradient is a sum over the sequence, so r can be run over all of it in
  reverse once every q is known (a [B, n] carry, a[0] r[0], into the chunk before), and with
  f = D_alpha^T r (another [B, n] carry) dL/dW = sum_t gain f[t]^T z[t]: one product with
  the layer's input over the whole sequence (for events, the batch's own transposed CSR).
  It keeps per step the readout error and every layer's psi, s and f (and the spatial
  error below the top), never e_U. The same gradient, to rounding (tests);
- ``auto`` (default): ``replay`` while it needs less memory than the trace, else ``trace``,
  so peak memory is bounded by the trace's: flat in T from there on.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

from spikebench.learning_rules.base import LearningRule, StepOutput
from spikebench.learning_rules.online import (
    InputTrace,
    check_online_model,
    leaky_filter,
    powers,
    run_chunked,
    set_hidden_grads,
    spatial_errors,
)
from spikebench.learning_rules.spatial import check_carry, check_chunk, replays
from spikebench.sparse import weight_product


def reverse_scan(q: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """r[m] = q[m] + a[m+1] r[m+1] over the first axis ([K, B, n])."""
    r = torch.empty_like(q)
    r[-1] = q[-1]
    for m in range(q.shape[0] - 2, -1, -1):
        r[m] = torch.addcmul(q[m], a[m + 1], r[m + 1])
    return r


class ResetTrace:
    """e_U of one weight matrix (module doc), chunk by chunk: ``begin(z, a)``, then
    ``contract`` / ``outer``, then ``advance()``."""

    def __init__(self, layer) -> None:
        p = layer.params
        self.cur = InputTrace(SimpleNamespace(params=SimpleNamespace(
            alpha=p.alpha, beta=0.0, gain=p.gain)))  # sum_m q[m] gain e_I[m]
        self.e_u: torch.Tensor | None = None  # [B, n_in, n] at the chunk's start

    def begin(self, z, a: torch.Tensor) -> None:
        self.cur.begin(z)
        self.a = a

    def _carry(self, r: torch.Tensor) -> torch.Tensor:
        return self.a[0] * r[0]  # [B, n]: the weight of e_U0 in sum_m q[m] e_U[m]

    def contract(self, q: torch.Tensor) -> torch.Tensor:
        """sum_(m, b) q[m] e_U[m], [n, n_in]."""
        r = reverse_scan(q, self.a)
        g = self.cur.contract(r)
        if self.e_u is not None:
            g += torch.einsum("bin,bn->ni", self.e_u, self._carry(r))
        return g

    def outer(self, q: torch.Tensor) -> torch.Tensor:
        """Per sample, sum_m q[m] e_U[m]: [B, n_in, n]."""
        r = reverse_scan(q, self.a)
        out = self.cur.outer(r)
        if self.e_u is not None:
            out += self.e_u * self._carry(r).unsqueeze(1)
        return out

    def advance(self) -> None:
        last = torch.zeros_like(self.a)
        last[-1] = 1.0
        self.e_u = self.outer(last)
        self.cur.advance()


class OSTL(LearningRule):
    """OSTL: spatial errors at every step x reset-aware eligibility traces, online."""

    name = "ostl"
    credit_space = "backprop through layers at each step"
    credit_time = "per-layer exact eligibility (reset kept); cross-layer temporal terms dropped"
    neurons = ("lif",)  # its eligibility is derived for LIF's step dynamics

    def __init__(self, burn_in: int = 0, loss: str = "step_ce", chunk: int = 100,
                 carry: str = "auto") -> None:
        super().__init__(burn_in, loss)
        self.chunk, self.carry = check_chunk(chunk), check_carry(carry)

    def config(self) -> dict:
        return {**super().config(), "chunk": self.chunk, "carry": self.carry}

    def prepare(self, model) -> None:
        check_online_model(model, self.name)

    def replays(self, model, steps: int) -> bool:
        """Whether ``carry`` replays the chunks (``auto``: when that needs less memory)."""
        top = len(model.hidden) - 1
        kept = model.sizes[-2] + sum((3 if k == top else 4) * layer.n_out  # L; psi, s, r (q)
                                     for k, layer in enumerate(model.hidden))
        return replays(self.carry, self.chunk, steps, kept, model)

    def backward(self, model, x, y: torch.Tensor, update=None) -> StepOutput:
        check_online_model(model, self.name)
        model.zero_grad(set_to_none=True)
        if self.replays(model, x.shape[0]):
            return self._backward_replay(model, x, y)
        kappa, top_k = model.readout.kappa, len(model.hidden) - 1
        grads = [[torch.zeros_like(layer.weight),
                  torch.zeros_like(layer.rec_weight) if layer.recurrent else None]
                 for layer in model.hidden]
        traces = [(ResetTrace(layer), ResetTrace(layer) if layer.recurrent else None)
                  for layer in model.hidden]
        psi_last: list[torch.Tensor | None] = [None] * len(model.hidden)
        ebar: dict[int, torch.Tensor] = {}  # the last layer's kappa-filtered e_U, per sample

        def on_chunk(t0, layers, delta, targets, weights, last):
            steps = delta.shape[0]
            signal = delta @ model.readout.weight  # L[t] of the last hidden layer
            errors = spatial_errors(model, layers, signal)
            for k, (lc, layer) in enumerate(zip(layers, model.hidden, strict=True)):
                a = _leak(layer.params, psi_last[k], lc.psi)
                psi_last[k] = lc.psi[-1]
                for j, (trace, z) in enumerate(((traces[k][0], lc.inp.z),
                                                (traces[k][1], lc.rec.z if lc.rec else None))):
                    if trace is None:
                        continue
                    trace.begin(z, a)
                    if k < top_k:
                        grads[k][j] += trace.contract(errors[k])
                        continue
                    lam = leaky_filter(kappa, signal, reverse=True)  # D_kappa^T L
                    grads[k][j] += trace.contract(lam * lc.psi)
                    old = ebar.get(j)
                    if old is not None:  # sum_b w[b, j] ebar[b, i, j], w = sum_m kappa^(m+1) L
                        w = (powers(kappa, 1, steps + 1, signal) @ signal.reshape(steps, -1)
                             ).view(signal.shape[1:])
                        grads[k][j] += torch.einsum("bin,bn->ni", old, w)
                    if not last:
                        keep = powers(kappa, steps - 1, -1, signal).view(-1, 1, 1)
                        new = trace.outer(keep * lc.psi)
                        ebar[j] = new if old is None else new.add_(old, alpha=kappa ** steps)
            if not last:
                for tr_in, tr_rec in traces:
                    tr_in.advance()
                    if tr_rec is not None:
                        tr_rec.advance()

        score = run_chunked(model, x, y, self.burn_in, self.chunk, on_chunk)
        set_hidden_grads(model, [g for g, _ in grads], [v for _, v in grads])
        loss, correct, count = score.result()
        return StepOutput(loss, None, correct, count)

    def _backward_replay(self, model, x, y: torch.Tensor) -> StepOutput:
        """carry=replay (module doc): each chunk's errors, psi and s are kept; then, chunk by
        chunk in reverse, r and f = D_alpha^T r with [B, n] carries into the chunk before;
        each weight's gradient is one product of gain f with the layer's input over T."""
        kappa, top_k = model.readout.kappa, len(model.hidden) - 1
        kept: list = []  # per chunk: L, and per layer (spatial error or None, psi, s)

        def on_chunk(t0, layers, delta, targets, weights, last):
            signal = delta @ model.readout.weight
            errors = spatial_errors(model, layers, signal)
            kept.append((signal, [(errors[k] if k < top_k else None, lc.psi, lc.s)
                                  for k, lc in enumerate(layers)]))

        score = run_chunked(model, x, y, self.burn_in, self.chunk, on_chunk, traces=False)
        x = model.flatten_input(x)
        steps = x.shape[0]
        f_all = [psi.new_empty(steps, *psi.shape[1:]) for _, psi, _ in kept[0][1]]
        lam_next, carried = None, [None] * len(model.hidden)  # per layer: a[0] r[0], f[0]
        t1 = steps
        for i in range(len(kept) - 1, -1, -1):
            signal, chunk = kept[i]
            t0 = t1 - signal.shape[0]
            lam = leaky_filter(kappa, signal, reverse=True)  # Lambda = D_kappa^T L
            if lam_next is not None:
                lam += powers(kappa, t1 - t0, 0, lam).view(-1, 1, 1) * lam_next
            lam_next = lam[0]
            for k, (error, psi, _) in enumerate(chunk):
                p = model.hidden[k].params
                q = error.clone() if k < top_k else lam * psi
                a = _leak(p, kept[i - 1][1][k][1][-1] if i else None, psi)
                if carried[k] is not None:
                    q[-1] += carried[k][0]
                r = reverse_scan(q, a)
                f = leaky_filter(p.alpha, r, reverse=True)
                if carried[k] is not None:
                    f += powers(p.alpha, t1 - t0, 0, f).view(-1, 1, 1) * carried[k][1]
                carried[k] = (a[0] * r[0], f[0])
                torch.mul(f, p.gain, out=f_all[k][t0:t1])
            t1 = t0
        g_in, g_rec = [], []
        for k, layer in enumerate(model.hidden):
            g = f_all[k].reshape(-1, layer.n_out)
            z = x if k == 0 else torch.cat([c[k - 1][2] for _, c in kept])
            g_in.append(weight_product(z, g))
            if layer.recurrent:
                s = torch.cat([c[k][2] for _, c in kept])
                g_rec.append(g[g.shape[0] // steps:].t() @ s[:-1].reshape(-1, layer.n_out))
            else:
                g_rec.append(None)
        set_hidden_grads(model, g_in, g_rec)
        loss, correct, count = score.result()
        return StepOutput(loss, None, correct, count)


def _leak(p, prev: torch.Tensor | None, psi: torch.Tensor) -> torch.Tensor:
    """a[t] = dU[t]/dU[t-1] through the reset, beta - theta psi[t-1] (beta with the reset
    detached), for a chunk's psi [K, B, n] and ``prev``, psi at the step before (None: 0)."""
    if p.detach_reset:
        return torch.full_like(psi, p.beta)
    before = torch.zeros_like(psi[0]) if prev is None else prev
    return p.beta - p.threshold * torch.cat([before.unsqueeze(0), psi[:-1]])

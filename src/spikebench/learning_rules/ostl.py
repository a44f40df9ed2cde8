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

Chunked (``chunk=K``, default 100): within a chunk, sum_m q[m] e_U[m] = sum_m r[m] gain
e_I[m] + (a[0] r[0]) e_U0 with the reverse scan r[m] = q[m] + a[m+1] r[m+1], so the chunk's
share is one contraction of the presynaptic current trace (``InputTrace`` with beta = 0);
the per-sample e_U [B, n_in, n] is built only when another chunk follows. Memory: flat in
T (that carried trace, as e-prop's).
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
from spikebench.learning_rules.spatial import check_chunk


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

    def __init__(self, burn_in: int = 0, loss: str = "step_ce", chunk: int = 100) -> None:
        super().__init__(burn_in, loss)
        self.chunk = check_chunk(chunk)

    def config(self) -> dict:
        return {**super().config(), "chunk": self.chunk}

    def prepare(self, model) -> None:
        check_online_model(model, self.name)

    def backward(self, model, x, y: torch.Tensor, update=None) -> StepOutput:
        check_online_model(model, self.name)
        model.zero_grad(set_to_none=True)
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
                p = layer.params
                prev = psi_last[k] if psi_last[k] is not None else torch.zeros_like(lc.psi[0])
                a = p.beta - (0.0 if p.detach_reset else p.threshold) * torch.cat(
                    [prev.unsqueeze(0), lc.psi[:-1]])
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

r"""e-prop (Bellec et al., Nature Communications 2020; the locality paper's Eqs. 4-6).

For a weight W_ji onto hidden neuron j:

    e_ji[t]    = psi_j[t] * eps_U_i[t]                  eligibility trace (online.py)
    ebar_ji[t] = kappa ebar_ji[t-1] + e_ji[t]           filtered with the readout's kappa
    L_j[t]     = sum_k B_jk (pi_k[t] - pi*_k[t]) w[t]   learning signal, broadcast
    dE/dW_ji   = sum_t L_j[t] ebar_ji[t]

where pi[t] = softmax(y[t]) and w[t] the step's weight in the ``step_ce`` loss, so
(pi - pi*) w = dE/dy[t]. The filter of ebar is the readout's own kappa, with the same
scaling (y[t] = kappa y[t-1] + W s[t]), which makes the gradient exact through the readout.
The reset and the recurrent input s[t-1] are treated as constants; the diagonal of V is
excluded. The readout (no recurrent weights) gets its exact gradient.

Feedback B (which matrix each hidden layer k receives, C = classes):

- ``symmetric`` (default, the paper's): the last hidden layer gets the readout weights,
  L = delta @ W_out. A lower layer k gets the product of the forward weights above it,
  L_k = delta @ W_out @ W_K ... @ W_{k+1} (the linear path from layer k to the output,
  ignoring spiking nonlinearities), taken from the current weights at every batch. The error
  reaches every layer directly; nothing is backpropagated through layers or time.
- ``random``: a fixed random matrix per layer, [C, n_k], uniform in +-1/sqrt(n_k), drawn in
  ``prepare`` and saved with the checkpoint.

Memory: the filtered traces ebar are [n_k, B, n_in] per layer, constant in T. This is
e-prop's inherent cost (one trace per sample and synapse). Rewriting it at every step costs
about B n_k n_in memory operations per layer and step, several times BPTT's matmuls on this
CPU. ``chunk=K`` (default 16) processes K steps at a time instead (``ChunkedTrace``): with
the chunk's steps m = 0..K-1 and the trace ebar_0 carried into it,

    sum_k L[k] ebar[k] = (sum_k kappa^(k+1) L[k]) . ebar_0 + sum_m (Lambda[m] psi[m]) eps[m]
    Lambda[m] = sum_(k >= m) kappa^(k-m) L[k]       (a reverse scan over the chunk)
    ebar_K    = kappa^K ebar_0 + sum_m kappa^(K-1-m) psi[m] eps[m]

so the gradient of the chunk is one GEMM over its K B rows plus one contraction with the
carried trace, and the trace is rewritten once per chunk, not once per step. Only the K
steps of the current chunk are buffered: memory stays flat in T. ``chunk=1`` is the
per-step algorithm (the reference the tests compare every K with, float64).
"""

from __future__ import annotations

import math

import torch

from spikebench.errors import ConfigError
from spikebench.learning_rules.base import (
    LearningRule,
    StepOutput,
    matrices_from_state,
    matrices_state,
)
from spikebench.learning_rules.online import check_online_model, run_online, set_hidden_grads

FEEDBACK = ("symmetric", "random")


class EProp(LearningRule):
    """e-prop: eligibility traces x the output error broadcast to every hidden layer."""

    name = "eprop"
    neurons = ("lif",)  # its traces are derived for LIF's step dynamics

    def __init__(self, burn_in: int = 0, loss: str = "step_ce", feedback: str = "symmetric",
                 feedback_seed: int = 0, chunk: int = 16) -> None:
        super().__init__(burn_in, loss)
        if feedback not in FEEDBACK:
            raise ConfigError(f"unknown feedback {feedback!r}; known: {', '.join(FEEDBACK)}")
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ConfigError(f"chunk (time steps per trace update) must be an integer >= 1, "
                              f"got {chunk!r}")
        self.feedback, self.feedback_seed, self.chunk = feedback, feedback_seed, chunk
        self.B: list[torch.Tensor] = []

    def config(self) -> dict:
        return {**super().config(), "feedback": self.feedback,
                "feedback_seed": self.feedback_seed, "chunk": self.chunk}

    def prepare(self, model) -> None:
        check_online_model(model, self.name)
        if self.feedback == "random":
            g = torch.Generator().manual_seed(self.feedback_seed)
            c, dtype = model.sizes[-1], model.readout.weight.dtype
            self.B = [
                ((torch.rand(c, layer.n_out, generator=g) * 2 - 1) / math.sqrt(layer.n_out)).to(
                    dtype)
                for layer in model.hidden
            ]

    def feedback_matrices(self, model) -> list[torch.Tensor]:
        """B_k [C, n_k] for every hidden layer k."""
        if self.feedback == "random":
            return self.B
        with torch.no_grad():
            mats = [model.readout.weight]
            for layer in reversed(model.hidden[1:]):
                mats.append(mats[-1] @ layer.weight)
        return mats[::-1]

    def backward(self, model, x: torch.Tensor, y: torch.Tensor, update=None) -> StepOutput:
        if self.chunk > 1:
            return self._backward_chunked(model, x, y)
        model.zero_grad(set_to_none=True)
        B = self.feedback_matrices(model)
        kappa = model.readout.kappa
        # filtered eligibility traces, laid out [n_k, batch, n_in] so that the update is one
        # in-place pass and the contraction with the learning signal a batched matmul
        ebar_in: list[torch.Tensor | None] = [None] * len(model.hidden)
        ebar_rec: list[torch.Tensor | None] = [None] * len(model.hidden)
        g_in = [torch.zeros_like(layer.weight) for layer in model.hidden]
        g_rec = [torch.zeros_like(layer.rec_weight) if layer.recurrent else None
                 for layer in model.hidden]

        def accumulate(ebar, psi_t, eps, signal_t, grad):
            """ebar = kappa ebar + psi x eps; grad += sum_b signal x ebar."""
            if ebar is None:
                ebar = psi_t.unsqueeze(2) * eps.unsqueeze(0)
            else:
                ebar.mul_(kappa).addcmul_(psi_t.unsqueeze(2), eps.unsqueeze(0))
            grad += torch.bmm(signal_t.unsqueeze(1), ebar).squeeze(1)
            return ebar

        def on_step(t, layers, delta, targets, weights):
            for k, ls in enumerate(layers):
                signal_t = (delta @ B[k]).t()  # L_k[t], [n_k, batch]
                psi_t = ls.psi.t()
                ebar_in[k] = accumulate(ebar_in[k], psi_t, ls.eps_in, signal_t, g_in[k])
                if ls.eps_rec is not None:
                    ebar_rec[k] = accumulate(ebar_rec[k], psi_t, ls.eps_rec, signal_t, g_rec[k])

        score = run_online(model, x, y, self.burn_in, on_step)
        set_hidden_grads(model, g_in, g_rec)
        loss, correct, count = score.result()
        return StepOutput(loss, None, correct, count)

    def _backward_chunked(self, model, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
        """The same gradient as the per-step algorithm, K steps at a time (module doc)."""
        model.zero_grad(set_to_none=True)
        B = self.feedback_matrices(model)
        kappa = model.readout.kappa
        g_in = [torch.zeros_like(layer.weight) for layer in model.hidden]
        g_rec = [torch.zeros_like(layer.rec_weight) if layer.recurrent else None
                 for layer in model.hidden]
        tr_in = [ChunkedTrace(kappa, self.chunk, g) for g in g_in]
        tr_rec = [ChunkedTrace(kappa, self.chunk, g) if g is not None else None for g in g_rec]

        def on_step(t, layers, delta, targets, weights):
            for k, ls in enumerate(layers):
                signal_t = (delta @ B[k]).t()  # L_k[t], [n_k, batch]
                psi_t = ls.psi.t()
                tr_in[k].add(psi_t, ls.eps_in, signal_t)
                if ls.eps_rec is not None:
                    tr_rec[k].add(psi_t, ls.eps_rec, signal_t)

        score = run_online(model, x, y, self.burn_in, on_step)
        for tr in [*tr_in, *tr_rec]:
            if tr is not None:
                tr.flush()
        set_hidden_grads(model, g_in, g_rec)
        loss, correct, count = score.result()
        return StepOutput(loss, None, correct, count)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return matrices_state("B", self.B)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if self.feedback == "symmetric":
            super().load_state_dict(state)
            return
        self.B = matrices_from_state(state, "B", self.B, "feedback shapes")


class ChunkedTrace:
    """The filtered eligibility trace of one weight matrix, updated K steps at a time, and
    the gradient it contributes (``grad``, accumulated in place). See the module doc."""

    def __init__(self, kappa: float, chunk: int, grad: torch.Tensor) -> None:
        self.kappa, self.chunk, self.grad = kappa, chunk, grad
        self.ebar: torch.Tensor | None = None  # [B, n, n_in], carried between chunks
        self.psi: list[torch.Tensor] = []  # [n, B] per buffered step
        self.eps: list[torch.Tensor] = []  # [B, n_in]
        self.signal: list[torch.Tensor] = []  # [n, B]

    def add(self, psi_t: torch.Tensor, eps_t: torch.Tensor, signal_t: torch.Tensor) -> None:
        self.psi.append(psi_t)
        self.eps.append(eps_t)
        self.signal.append(signal_t)
        if len(self.psi) == self.chunk:
            self.flush()

    def flush(self) -> None:
        steps = len(self.psi)
        if steps == 0:
            return
        kappa = self.kappa
        psi, eps, sig = torch.stack(self.psi), torch.stack(self.eps), torch.stack(self.signal)
        self.psi, self.eps, self.signal = [], [], []
        n, batch = psi.shape[1], psi.shape[2]
        # Lambda[m] = sum_(k >= m) kappa^(k-m) L[k]: a reverse scan over the chunk
        lam = torch.empty_like(sig)
        acc = torch.zeros_like(sig[0])
        for m in range(steps - 1, -1, -1):
            acc = sig[m] + kappa * acc
            lam[m] = acc
        # within the chunk: one GEMM over its steps and samples
        q = (lam * psi).permute(1, 0, 2).reshape(n, steps * batch)
        self.grad.addmm_(q, eps.reshape(steps * batch, -1))
        # the carried trace: its share of the chunk's gradient, then its update (laid out
        # [B, n, n_in], so that the update is one in-place batched GEMM over the samples)
        coeff = kappa ** torch.arange(steps - 1, -1, -1, dtype=sig.dtype, device=sig.device)
        p_bnm = (psi * coeff.view(-1, 1, 1)).permute(2, 1, 0)  # [B, n, K]
        e_bmi = eps.permute(1, 0, 2)  # [B, K, n_in]
        if self.ebar is None:
            self.ebar = torch.bmm(p_bnm, e_bmi)
        else:
            powers = kappa ** torch.arange(1, steps + 1, dtype=sig.dtype, device=sig.device)
            w = (sig * powers.view(-1, 1, 1)).sum(0)  # [n, B]
            # grad[j, i] += sum_b w[j, b] ebar[b, j, i]: batched over j on a strided view
            self.grad += torch.bmm(w.unsqueeze(1), self.ebar.transpose(0, 1)).squeeze(1)
            self.ebar.baddbmm_(p_bnm, e_bmi, beta=kappa ** steps)

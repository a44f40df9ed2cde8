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

Memory and speed. Online, the filtered traces ebar are [n_k, B, n_in] per layer (one per
sample and synapse, constant in T), and rewriting them at every step costs about
B n_k n_in memory operations per layer and step. ``chunk=K`` (default 100) processes K
steps at a time instead (``run_chunked`` in online.py: the chunk's forward as GEMMs, the
input traces as [K, K] filter matrices): with the chunk's steps m = 0..K-1 and the trace
ebar_0 carried into it,

    sum_k L[k] ebar[k] = (sum_k kappa^(k+1) L[k]) . ebar_0 + sum_m (Lambda[m] psi[m]) eps[m]
    Lambda[m] = sum_(k >= m) kappa^(k-m) L[k]       (D_kappa^T L)
    ebar_K    = kappa^K ebar_0 + sum_m kappa^(K-1-m) psi[m] eps[m]

The chunk's own share is one contraction of the input trace (``InputTrace.contract``: a
CSR x dense product for event input); the per-sample trace ebar [B, n_in, n] is built only
when another chunk follows (``InputTrace.outer``, a block-diagonal CSR product for events)
and used once by it. A sequence of at most K steps needs no per-synapse trace at all.
Memory stays flat in T (the chunk's [K, B, n] tensors and ebar). ``chunk=1`` is the
per-step algorithm (the reference the tests compare every K with, float64).

``carry`` says how a chunk's eligibility reaches the learning signals of later chunks:

- ``trace``: the carried per-sample trace ebar above (online; memory B sum_k n_k n_in_k);
- ``replay``: the gradient is a sum over the sequence, so the chunks' own shares can be
  taken in reverse order once every L is known: Lambda of a chunk is D_kappa^T L plus
  kappa^(K-m) times Lambda at the next chunk's first step (a [B, n] carry backwards), and
  the chunk's share is its trace contraction with Lambda psi. It keeps, per step, the
  output error and every layer's psi and input (memory B T (C + 2 sum_k n_k)) and never
  builds ebar. The same gradient, to rounding;
- ``auto`` (default): ``replay`` while it needs less memory than the trace, else
  ``trace``. Peak memory therefore never exceeds the online trace's, whatever T.

ALIF layers (``neurons/alif.py``; Bellec et al.'s adaptive eligibility). The spike also
depends on the weights through the adaptation a[t] = rho a[t-1] + s[t-1] of the threshold
A = theta + adapt a, so each synapse carries a second eligibility vector, per sample:

    eps_a[t] = (rho - adapt psi[t-1]) eps_a[t-1] + psi[t-1] eps_U[t-1]    (= da[t]/dW)
    e[t]     = psi[t] (eps_U[t] - adapt eps_a[t])

(reset and recurrent input constant, as for LIF). eps_a mixes the postsynaptic psi into
every synapse's trace, so it does not factor into presynaptic traces: ALIF runs the
per-step algorithm whatever ``chunk``, with eps_a and ebar [B, n, n_in] per layer (flat in
T). With ``adapt = 0`` it is LIF's e-prop; for one feed-forward layer with the reset
detached it equals BPTT (tests).
"""

from __future__ import annotations

import copy
import math

import torch

from spikebench.errors import ConfigError
from spikebench.learning_rules.base import (
    LearningRule,
    StepOutput,
    matrices_from_state,
    matrices_state,
)
from spikebench.learning_rules.online import (
    check_online_model,
    leaky_filter,
    powers,
    run_chunked,
    run_online,
    set_hidden_grads,
)
from spikebench.learning_rules.spatial import check_carry, replays
from spikebench.neurons import ALIFParams

FEEDBACK = ("symmetric", "random")


class EProp(LearningRule):
    """e-prop: eligibility traces x the output error broadcast to every hidden layer."""

    name = "eprop"
    credit_space = "output error broadcast (symmetric or random feedback)"
    credit_time = "forward eligibility traces (reset constant)"
    neurons = ("lif", "alif")  # its traces are derived for these step dynamics

    def __init__(self, burn_in: int = 0, loss: str = "step_ce", feedback: str = "symmetric",
                 feedback_seed: int = 0, chunk: int = 100, carry: str = "auto") -> None:
        super().__init__(burn_in, loss)
        if feedback not in FEEDBACK:
            raise ConfigError(f"unknown feedback {feedback!r}; known: {', '.join(FEEDBACK)}")
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ConfigError(f"chunk (time steps per trace update) must be an integer >= 1, "
                              f"got {chunk!r}")
        self.feedback, self.feedback_seed, self.chunk = feedback, feedback_seed, chunk
        self.carry = check_carry(carry)
        self.B: list[torch.Tensor] = []

    def config(self) -> dict:
        return {**super().config(), "feedback": self.feedback,
                "feedback_seed": self.feedback_seed, "chunk": self.chunk, "carry": self.carry}

    def prepare(self, model) -> None:
        check_online_model(model, self.name, alif=True)
        if self.feedback == "random":
            g = torch.Generator().manual_seed(self.feedback_seed)
            c, like = model.sizes[-1], model.readout.weight
            self.B = [  # drawn on the CPU (the same on every device), then moved
                ((torch.rand(c, layer.n_out, generator=g) * 2 - 1) / math.sqrt(layer.n_out)).to(
                    like)
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
        if any(isinstance(layer.params, ALIFParams) for layer in model.hidden):
            return self._backward_alif(model, x, y)
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

    def _backward_alif(self, model, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
        """The per-step algorithm with ALIF's adaptive eligibility (module doc)."""
        model.zero_grad(set_to_none=True)
        B = self.feedback_matrices(model)
        kappa = model.readout.kappa
        grads = [(torch.zeros_like(layer.weight),
                  torch.zeros_like(layer.rec_weight) if layer.recurrent else None)
                 for layer in model.hidden]
        carried: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}  # eps_a, ebar
        before: list = [None] * len(model.hidden)  # the previous step's LayerStep

        def on_step(t, layers, delta, targets, weights):
            for k, (ls, layer) in enumerate(zip(layers, model.hidden, strict=True)):
                p, prev = layer.params, before[k]
                signal = delta @ B[k]  # L_k[t], [B, n]
                for j, eps in enumerate((ls.eps_in, ls.eps_rec)):
                    if eps is None:
                        continue
                    if prev is None:
                        eps_a = eps.new_zeros(eps.shape[0], layer.n_out, eps.shape[1])
                        ebar = torch.zeros_like(eps_a)
                    else:
                        eps_a, ebar = carried[(k, j)]
                        eps_prev = (prev.eps_in, prev.eps_rec)[j]
                        eps_a.mul_((p.rho - p.adapt * prev.psi).unsqueeze(2)).addcmul_(
                            prev.psi.unsqueeze(2), eps_prev.unsqueeze(1))
                    e = ls.psi.unsqueeze(2) * (eps.unsqueeze(1) - p.adapt * eps_a)
                    ebar.mul_(kappa).add_(e)
                    grads[k][j].add_(torch.einsum("bn,bni->ni", signal, ebar))
                    carried[(k, j)] = (eps_a, ebar)
                before[k] = ls

        score = run_online(model, x, y, self.burn_in, on_step)
        set_hidden_grads(model, [g for g, _ in grads], [g for _, g in grads])
        loss, correct, count = score.result()
        return StepOutput(loss, None, correct, count)

    def replays(self, model, steps: int) -> bool:
        """Whether ``carry`` replays the chunks (``auto``: when that needs less memory)."""
        kept = model.sizes[-1] + 2 * sum(model.sizes[1:-1])  # delta, psi and input per step
        return replays(self.carry, self.chunk, steps, kept, model)

    def _backward_chunked(self, model, x, y: torch.Tensor) -> StepOutput:
        """The same gradient as the per-step algorithm, K steps at a time (module doc)."""
        model.zero_grad(set_to_none=True)
        B = self.feedback_matrices(model)
        kappa = model.readout.kappa
        g_in = [torch.zeros_like(layer.weight) for layer in model.hidden]
        g_rec = [torch.zeros_like(layer.rec_weight) if layer.recurrent else None
                 for layer in model.hidden]
        grads = list(zip(g_in, g_rec, strict=True))
        ebar: dict[tuple[int, int], torch.Tensor] = {}  # [B, n_in, n], carried (trace)
        kept: list = []  # per chunk: delta, and per layer psi and its input traces (replay)
        replay = self.replays(model, x.shape[0])

        def on_chunk(t0, layers, delta, targets, weights, last):
            if replay:
                kept.append((delta, [(lc.psi, copy.copy(lc.inp), copy.copy(lc.rec))
                                     for lc in layers]))
                return
            steps = delta.shape[0]
            carry_w = powers(kappa, 1, steps + 1, delta)  # kappa^(m+1)
            keep = powers(kappa, steps - 1, -1, delta).view(-1, 1, 1)  # kappa^(K-1-m)
            for k, lc in enumerate(layers):
                signal = delta @ B[k]  # L_k [K, B, n]
                lam = leaky_filter(kappa, signal, reverse=True)  # Lambda = D_kappa^T L
                w = (carry_w @ signal.reshape(steps, -1)).view(signal.shape[1:])  # [B, n]
                for j, trace in enumerate((lc.inp, lc.rec)):
                    if trace is None:
                        continue
                    grads[k][j].add_(trace.contract(lam * lc.psi))
                    old = ebar.get((k, j))
                    if old is not None:  # the carried trace's share: sum_b w[b, j] ebar[b, i, j]
                        share = torch.zeros_like(grads[k][j].t())
                        for e_b, w_b in zip(old, w, strict=True):  # one pass over ebar
                            share.addcmul_(e_b, w_b)
                        grads[k][j].add_(share.t())
                    if not last:
                        ebar[(k, j)] = trace.outer(keep * lc.psi, old, kappa ** steps)

        score = run_chunked(model, x, y, self.burn_in, self.chunk, on_chunk)
        lam_next: list[torch.Tensor | None] = [None] * len(model.hidden)
        while kept:  # replay: the chunks in reverse, Lambda carried backwards
            delta, layers = kept.pop()
            steps = delta.shape[0]
            tail = powers(kappa, steps, 0, delta).view(-1, 1, 1)  # kappa^(K-m)
            for k, (psi, tr_in, tr_rec) in enumerate(layers):
                lam = leaky_filter(kappa, delta @ B[k], reverse=True)
                if lam_next[k] is not None:
                    lam += tail * lam_next[k]
                lam_next[k] = lam[0]
                for j, trace in enumerate((tr_in, tr_rec)):
                    if trace is not None:
                        grads[k][j].add_(trace.contract(lam * psi))
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

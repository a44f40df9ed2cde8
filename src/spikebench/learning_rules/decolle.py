r"""DECOLLE (Kaiser, Mostafa, Neftci, Frontiers in Neuroscience 2020): deep continuous
local learning.

Every hidden layer k has a fixed random linear readout R_k [C, n_k] (uniform in
+-a/sqrt(n_k), never trained, drawn in ``prepare`` and saved with the checkpoint) and its
own loss, the ``step_ce`` cross-entropy of R_k s_k[t] at every step after the burn-in. The
neuron state and the input to the next layer are detached: the membrane depends on the
weights only through the presynaptic traces of the current step (online.py,
dU_j[t]/dW_ji = eps_U_i[t], reset as a constant), so no gradient crosses time or layers:

    dl_k/dW_ji = sum_t [(R_k^T dl_k/dz_k[t])_j psi_j[t]] eps_U_i[t],   z_k[t] = R_k s_k[t]

The sum of the local losses trains each layer (each layer only sees its own). The leaky
readout, the final layer, is trained by its own loss (the network's ``step_ce``) with its
input detached, i.e. its exact gradient.

Updates: by default (``online=False``) gradients are summed over the sample and the
optimiser steps once per batch, like the other rules. ``online=True`` steps the optimiser
after every time step (the original DECOLLE schedule); the harness passes its update
function.

Speed: with batch updates the weights are fixed over the sample, so ``chunk=K`` (default
100) processes K steps at a time (``run_chunked`` in online.py): the chunk's forward as
GEMMs, and each layer's gradient sum_t g_u[t]^T eps_U[t] as one contraction of its input
trace (a CSR x dense product for event input). No per-synapse state is needed. ``chunk=1``
(and ``online=True``, whose weights change every step) steps the model one step at a time,
the reference the tests compare with.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from spikebench.errors import ConfigError
from spikebench.learning_rules.base import (
    LearningRule,
    StepOutput,
    matrices_from_state,
    matrices_state,
    step_error,
    step_loss,
)
from spikebench.learning_rules.online import (
    check_online_model,
    run_chunked,
    run_online,
    set_hidden_grads,
)


class DECOLLE(LearningRule):
    """DECOLLE: per-layer local losses through fixed random readouts, no BPTT."""

    name = "decolle"
    credit_space = "local: a fixed random readout and loss per layer"
    credit_time = "presynaptic traces"
    neurons = ("lif",)  # its traces are derived for LIF's step dynamics

    def __init__(self, burn_in: int = 0, loss: str = "step_ce", readout_scale: float = 1.0,
                 readout_seed: int = 0, online: bool = False, chunk: int = 100) -> None:
        super().__init__(burn_in, loss)
        if readout_scale <= 0:
            raise ConfigError(f"readout_scale must be positive, got {readout_scale}")
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ConfigError(f"chunk (time steps per forward block) must be an integer >= 1, "
                              f"got {chunk!r}")
        self.chunk = chunk
        self.readout_scale, self.readout_seed, self.online = readout_scale, readout_seed, online
        self.R: list[torch.Tensor] = []
        self.local_losses: list[float] = []

    def config(self) -> dict:
        return {**super().config(), "readout_scale": self.readout_scale,
                "readout_seed": self.readout_seed, "online": self.online, "chunk": self.chunk}

    def prepare(self, model) -> None:
        check_online_model(model, self.name)
        g = torch.Generator().manual_seed(self.readout_seed)
        c, like = model.sizes[-1], model.readout.weight  # drawn on the CPU, then moved
        self.R = [
            ((torch.rand(c, layer.n_out, generator=g) * 2 - 1)
             * self.readout_scale / math.sqrt(layer.n_out)).to(like)
            for layer in model.hidden
        ]

    def backward(self, model, x: torch.Tensor, y: torch.Tensor,
                 update: Callable[[], None] | None = None) -> StepOutput:
        if not self.R:
            raise RuntimeError("DECOLLE.prepare(model) must be called before backward")
        if self.online and update is None:
            raise ValueError("DECOLLE(online=True) needs the harness's update function")
        model.zero_grad(set_to_none=True)
        g_in = [torch.zeros_like(layer.weight) for layer in model.hidden]
        g_rec = [torch.zeros_like(layer.rec_weight) if layer.recurrent else None
                 for layer in model.hidden]
        local = [0.0] * len(model.hidden)

        def local_error(k, s, psi, targets, weights):
            """dl_k/dU_k (one step [B, n_k] or a chunk [K, B, n_k]); adds l_k to local."""
            z = s @ self.R[k].t()
            local[k] += float(step_loss(z, targets, weights))
            return (step_error(z, targets, weights) @ self.R[k]) * psi

        def on_step(t, layers, delta, targets, weights):
            for k, ls in enumerate(layers):
                g_u = local_error(k, ls.s, ls.psi, targets, weights)
                g_in[k] += g_u.t() @ ls.eps_in
                if ls.eps_rec is not None:
                    g_rec[k] += g_u.t() @ ls.eps_rec

        def on_chunk(t0, layers, delta, targets, weights, last):
            for k, lc in enumerate(layers):
                g_u = local_error(k, lc.s, lc.psi, targets, weights)
                g_in[k] += lc.inp.contract(g_u)
                if lc.rec is not None:
                    g_rec[k] += lc.rec.contract(g_u)

        def flush():
            """Hand this step's gradients to the optimiser and start afresh."""
            set_hidden_grads(model, g_in, g_rec)
            update()
            model.zero_grad(set_to_none=True)
            for g in [*g_in, *(v for v in g_rec if v is not None)]:
                g.zero_()

        if self.online or self.chunk == 1:
            score = run_online(model, x, y, self.burn_in, on_step,
                               flush=flush if self.online else None)
        else:
            score = run_chunked(model, x, y, self.burn_in, self.chunk, on_chunk)
        if not self.online:
            set_hidden_grads(model, g_in, g_rec)
        self.local_losses = local
        loss, correct, count = score.result()
        return StepOutput(loss, None, correct, count, updated=self.online)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return matrices_state("R", self.R)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.R = matrices_from_state(state, "R", self.R, "DECOLLE readouts")

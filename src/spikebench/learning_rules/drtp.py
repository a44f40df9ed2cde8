r"""DRTP: direct random target projection (Frenkel, Lefebvre, Bol, Front. Neurosci. 2021).

No error reaches the hidden layers at all: each hidden layer k gets a fixed random
projection of the *target* as its learning signal, at every step,

    g_s_k[t]  = w[t] onehot(y*[t]) B_k              B_k [C, n_k], fixed, random
    dE/dW_ji  = sum_t (g_s_kj[t] psi_j[t]) eps_U_i[t]

(the reference code's DRTP hook: the gradient at a layer's output is labels x B, then the
layer's own derivative; w[t] is the step's weight in ``step_ce`` so the scale matches the
other rules). The spiking layer's local factor is its presynaptic trace eps_U (online.py;
reset and inputs held constant, as in e-prop and DECOLLE). The readout, the output layer,
gets its exact gradient from the output error. Fully local in space and time, online: no
backward pass and memory flat in T. B_k is uniform in +-1/sqrt(n_k), drawn in ``prepare``
from ``feedback_seed`` and saved with the checkpoint. ``chunk`` as for DECOLLE.

Check (tests): the analytic update, sum_t <g_s_k[t], s_k[t]> differentiated through a
forward in which only the membrane's linear history keeps its graph.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from spikebench.learning_rules.base import (
    LearningRule,
    StepOutput,
    matrices_from_state,
    matrices_state,
)
from spikebench.learning_rules.online import check_online_model, run_chunked, set_hidden_grads
from spikebench.learning_rules.spatial import check_chunk


class DRTP(LearningRule):
    """DRTP: fixed random projections of the target as every hidden layer's signal."""

    name = "drtp"
    credit_space = "none: a random projection of the target per layer"
    credit_time = "presynaptic traces"
    neurons = ("lif",)  # its traces are derived for LIF's step dynamics

    def __init__(self, burn_in: int = 0, loss: str = "step_ce", feedback_seed: int = 0,
                 chunk: int = 100) -> None:
        super().__init__(burn_in, loss)
        self.feedback_seed, self.chunk = feedback_seed, check_chunk(chunk)
        self.B: list[torch.Tensor] = []

    def config(self) -> dict:
        return {**super().config(), "feedback_seed": self.feedback_seed, "chunk": self.chunk}

    def prepare(self, model) -> None:
        check_online_model(model, self.name)
        g = torch.Generator().manual_seed(self.feedback_seed)
        c, like = model.sizes[-1], model.readout.weight
        self.B = [((torch.rand(c, layer.n_out, generator=g) * 2 - 1)
                   / math.sqrt(layer.n_out)).to(like) for layer in model.hidden]

    def backward(self, model, x, y: torch.Tensor, update=None) -> StepOutput:
        if not self.B:
            raise RuntimeError("DRTP.prepare(model) must be called before backward")
        model.zero_grad(set_to_none=True)
        g_in = [torch.zeros_like(layer.weight) for layer in model.hidden]
        g_rec = [torch.zeros_like(layer.rec_weight) if layer.recurrent else None
                 for layer in model.hidden]

        def on_chunk(t0, layers, delta, targets, weights, last):
            target = F.one_hot(targets.clamp(min=0), delta.shape[-1]).to(delta)
            target = target * weights.to(delta).unsqueeze(-1)  # 0 on IGNORE and burn-in
            for k, lc in enumerate(layers):
                g_u = (target @ self.B[k]) * lc.psi
                g_in[k] += lc.inp.contract(g_u)
                if lc.rec is not None:
                    g_rec[k] += lc.rec.contract(g_u)

        score = run_chunked(model, x, y, self.burn_in, self.chunk, on_chunk)
        set_hidden_grads(model, g_in, g_rec)
        loss, correct, count = score.result()
        return StepOutput(loss, None, correct, count)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return matrices_state("B", self.B)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.B = matrices_from_state(state, "B", self.B, "DRTP projections")

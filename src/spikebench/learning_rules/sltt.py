r"""SLTT: spatial learning through time (Meng et al., ICCV 2023).

BPTT with the temporal path dropped: every neuron's state of the step before (I, U and the
reset) is a constant in the backward, so each step's error reaches the weights only through
that step's own input,

    g_U_k[t]  = dl_t/dU_k[t]        through layers at step t only (``spatial_errors``)
    dE/dW_ji  = sum_t g_U_kj[t] gain x_i[t]       (x: the layer's input, or s[t-1] for V)

which is OTTT with the instantaneous input in place of the trace. ``sampled=K`` (SLTT-K)
takes the error at K time steps drawn at random per batch (from torch's generator, which the
harness seeds) and none at the others, cutting the backward's cost; 0 takes every step. The
readout gets its exact gradient. Memory is flat in T.

Checks (tests): autograd of the loss through a forward whose states are detached at every
step; SpikingJelly 2's ``SLTTLIFNode`` on the same net where it is installed (alpha = 0).
"""

from __future__ import annotations

import torch

from spikebench.errors import ConfigError
from spikebench.learning_rules.spatial import SpatialRule


class SLTT(SpatialRule):
    """SLTT: the instantaneous spatial error x the instantaneous input; SLTT-K optional."""

    name = "sltt"
    credit_space = "backprop through layers at each step"
    credit_time = "none (temporal path dropped)"

    def __init__(self, burn_in: int = 0, loss: str = "step_ce", chunk: int = 100,
                 sampled: int = 0) -> None:
        super().__init__(burn_in, loss, chunk)
        if isinstance(sampled, bool) or not isinstance(sampled, int) or sampled < 0:
            raise ConfigError(f"sampled (SLTT-K's time steps per batch; 0: all) must be an "
                              f"integer >= 0, got {sampled!r}")
        self.sampled = sampled

    def config(self) -> dict:
        return {**super().config(), "sampled": self.sampled}

    def step_mask(self, steps: int) -> torch.Tensor | None:
        if not self.sampled or self.sampled >= steps:
            return None
        mask = torch.zeros(steps)
        mask[torch.randperm(steps)[:self.sampled]] = 1.0
        return mask

    def grads(self, lc, g_u):
        return lc.inp.contract_now(g_u), lc.rec.contract_now(g_u) if lc.rec is not None else None

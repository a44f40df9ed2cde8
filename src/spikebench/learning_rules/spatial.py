"""What OTTT and SLTT share: the error of every step reaches each hidden layer through the
spatial path alone (``spatial_errors``: the readout, then the layers above at the same
step), times a per-layer factor of dU/dW that each rule chooses. Driven chunk by chunk
(``run_chunked``), with the weights of the batch. Also what every chunked rule's options
share: ``check_chunk``, ``check_carry`` and the memory rule of ``carry=auto`` (``replays``,
e-prop's and OSTL's)."""

from __future__ import annotations

import torch

from spikebench.errors import ConfigError
from spikebench.learning_rules.base import LearningRule, StepOutput
from spikebench.learning_rules.online import (
    check_online_model,
    run_chunked,
    set_hidden_grads,
    spatial_errors,
)


def check_chunk(chunk) -> int:
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ConfigError(f"chunk (time steps per forward block) must be an integer >= 1, "
                          f"got {chunk!r}")
    return chunk


CARRY = ("auto", "trace", "replay")


def check_carry(carry) -> str:
    if carry not in CARRY:
        raise ConfigError(f"unknown carry {carry!r}; known: {', '.join(CARRY)}")
    return carry


def replays(carry: str, chunk: int, steps: int, kept: int, model) -> bool:
    """Whether a chunked rule replays its chunks in reverse (``carry`` replay) or carries
    the per-sample trace forward (``trace``); ``auto``: replay while keeping ``kept``
    numbers per step and sample for ``steps`` steps needs no more memory than that trace
    (one per synapse and sample), so peak memory never exceeds the online trace's."""
    if carry != "auto":
        return carry == "replay"
    if steps <= chunk:
        return True  # one chunk: neither form carries anything
    trace = sum(layer.n_out * (layer.n_in + (layer.n_out if layer.recurrent else 0))
                for layer in model.hidden)
    return steps * kept <= trace


class SpatialRule(LearningRule):
    """The spatial error at every step, times a per-layer factor of dU/dW the subclass
    chooses (``grads``): OTTT the presynaptic trace, SLTT the instantaneous input."""

    neurons = ("lif",)  # the traces are derived for LIF's step dynamics

    def __init__(self, burn_in: int = 0, loss: str = "step_ce", chunk: int = 100) -> None:
        super().__init__(burn_in, loss)
        self.chunk = check_chunk(chunk)

    def config(self) -> dict:
        return {**super().config(), "chunk": self.chunk}

    def prepare(self, model) -> None:
        check_online_model(model, self.name)

    def step_mask(self, steps: int) -> torch.Tensor | None:
        """Which steps contribute (None: all)."""
        return None

    def grads(self, lc, g_u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def backward(self, model, x, y: torch.Tensor, update=None) -> StepOutput:
        check_online_model(model, self.name)
        model.zero_grad(set_to_none=True)
        g_in = [torch.zeros_like(layer.weight) for layer in model.hidden]
        g_rec = [torch.zeros_like(layer.rec_weight) if layer.recurrent else None
                 for layer in model.hidden]
        mask = self.step_mask(x.shape[0])

        def on_chunk(t0, layers, delta, targets, weights, last):
            top = delta @ model.readout.weight
            if mask is not None:
                top = top * mask[t0:t0 + delta.shape[0]].to(top).view(-1, 1, 1)
            for k, (lc, g_u) in enumerate(zip(layers, spatial_errors(model, layers, top),
                                              strict=True)):
                gw, gv = self.grads(lc, g_u)
                g_in[k] += gw
                if gv is not None:
                    g_rec[k] += gv

        score = run_chunked(model, x, y, self.burn_in, self.chunk, on_chunk)
        set_hidden_grads(model, g_in, g_rec)
        loss, correct, count = score.result()
        return StepOutput(loss, None, correct, count)

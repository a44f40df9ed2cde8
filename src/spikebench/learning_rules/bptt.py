"""Backpropagation through time: unroll the model's step function, autograd the loss."""

from __future__ import annotations

import torch

from spikebench.learning_rules.base import LearningRule, StepOutput, count_correct, objective


class BPTT(LearningRule):
    """Global rule: exact gradient of the objective through the unrolled network
    (with the neuron's surrogate derivative in place of the Heaviside's)."""

    name = "bptt"
    credit_space = "exact (backprop through layers)"
    credit_time = "exact (backprop through all T steps)"
    losses = ("step_ce", "mean_ce")

    def __init__(self, burn_in: int = 0, loss: str = "step_ce", fast: bool = True) -> None:
        super().__init__(burn_in, loss)
        self.fast = fast  # False: autograd through the unrolled step (the reference path)

    def config(self) -> dict:
        return {**super().config(), "fast": self.fast}

    def backward(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                 update=None) -> StepOutput:
        model.zero_grad(set_to_none=True)
        outputs = model(x) if self.fast else model(x, reference=True)
        loss = objective(outputs, y, self.burn_in, self.loss)
        loss.backward()
        correct, count = count_correct(outputs.detach(), y, self.burn_in)
        return StepOutput(float(loss.detach()), outputs.detach(), correct, count)

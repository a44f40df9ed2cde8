"""The learning-rule interface and the objective shared by every rule.

A rule turns (model, batch) into gradients on the model's parameters (``p.grad``); the
harness owns the optimiser, the loop, logging and checkpoints.

Decision rule (the same for every rule, so that accuracies are comparable): the readout
``y`` [T, B, C] is averaged over the time steps after ``burn_in``; the class is its argmax.
With sequence targets ``y`` [T, B] (frame-wise labels, -1 = padding) every frame is
classified from its own readout value.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE = -1  # label of padded frames


@dataclass
class StepOutput:
    loss: float  # the rule's training loss on this batch
    outputs: torch.Tensor  # readout [T, B, C], detached
    correct: int  # correctly classified samples (or frames)
    count: int  # samples (or frames) counted


def decision_logits(outputs: torch.Tensor, burn_in: int = 0) -> torch.Tensor:
    """Readout [T, B, C] -> logits [B, C]: mean over time after ``burn_in`` steps."""
    if burn_in >= outputs.shape[0]:
        raise ValueError(f"burn_in={burn_in} leaves no time steps of T={outputs.shape[0]}")
    return outputs[burn_in:].mean(0)


def objective(outputs: torch.Tensor, y: torch.Tensor, burn_in: int = 0) -> torch.Tensor:
    """Cross-entropy of the decision. ``y`` is [B] (one label per sample) or [T, B]
    (frame-wise labels; ``IGNORE`` frames are masked out)."""
    if y.dim() == 1:
        return F.cross_entropy(decision_logits(outputs, burn_in), y)
    if y.shape != outputs.shape[:2]:
        raise ValueError(f"frame labels {tuple(y.shape)} do not match outputs {outputs.shape}")
    return F.cross_entropy(
        outputs[burn_in:].flatten(0, 1), y[burn_in:].flatten(), ignore_index=IGNORE
    )


def count_correct(outputs: torch.Tensor, y: torch.Tensor, burn_in: int = 0) -> tuple[int, int]:
    if y.dim() == 1:
        pred = decision_logits(outputs, burn_in).argmax(-1)
        return int((pred == y).sum()), int(y.numel())
    pred = outputs[burn_in:].argmax(-1)
    target = y[burn_in:]
    mask = target != IGNORE
    return int(((pred == target) & mask).sum()), int(mask.sum())


class LearningRule(ABC):
    """Base class for a learning rule. Subclasses set ``name`` and implement ``backward``.

    ``prepare`` is called once per model before training (e.g. to draw fixed random
    feedback); rule state that must survive lives in ``state_dict`` and is saved with the
    checkpoint.
    """

    name: str = ""

    def __init__(self, burn_in: int = 0) -> None:
        if burn_in < 0:
            raise ValueError(f"burn_in must be >= 0, got {burn_in}")
        self.burn_in = burn_in

    def prepare(self, model: torch.nn.Module) -> None:  # noqa: B027 (optional hook)
        """Set up rule state for ``model`` (default: none)."""

    @abstractmethod
    def backward(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
        """Fill ``p.grad`` of the model's parameters for the batch; return loss and outputs."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if state:
            raise ValueError(f"rule {self.name!r} has no state, got keys {sorted(state)}")

    def config(self) -> dict:
        return {"burn_in": self.burn_in}


@torch.no_grad()
def evaluate_batch(model, x: torch.Tensor, y: torch.Tensor, burn_in: int = 0) -> StepOutput:
    """Forward pass only; the same decision for every rule."""
    outputs = model(x)
    loss = float(objective(outputs, y, burn_in))
    correct, count = count_correct(outputs, y, burn_in)
    return StepOutput(loss, outputs, correct, count)

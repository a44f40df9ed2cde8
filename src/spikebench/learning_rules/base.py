"""The learning-rule interface and the objective shared by every rule.

A rule turns (model, batch) into gradients on the model's parameters (``p.grad``); the
harness owns the optimiser, the loop, logging and checkpoints.

Decision rule (the same for every rule, so that accuracies are comparable): the readout
``y`` [T, B, C] is averaged over the time steps after ``burn_in``; the class is its argmax.
With sequence targets ``y`` [T, B] (frame-wise labels, -1 = padding) every frame is
classified from its own readout value.

Training loss (``LOSSES``):

- ``step_ce`` (default for every rule): the cross-entropy of every time step's readout
  after ``burn_in``, averaged over those steps and the batch. It is a sum over time, so
  online rules (e-prop, DECOLLE) can compute its error signal at each step:
  ``dE/dy[t] = w[t] * (softmax(y[t]) - onehot)`` with ``w`` from ``step_weights``.
- ``mean_ce``: the cross-entropy of the decision logits (time-averaged readout); only
  for BPTT, since its error is known only at the end of the sequence.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from spikebench.datasets.base import IGNORE
from spikebench.errors import ConfigError


@dataclass
class StepOutput:
    loss: float  # the rule's training loss on this batch
    outputs: torch.Tensor | None  # readout [T, B, C], detached (None: an online rule kept none)
    correct: int  # correctly classified samples (or frames)
    count: int  # samples (or frames) counted
    updated: bool = False  # the rule already applied its updates (per-step schedules)


def decision_logits(outputs: torch.Tensor, burn_in: int = 0) -> torch.Tensor:
    """Readout [T, B, C] -> logits [B, C]: mean over time after ``burn_in`` steps."""
    if burn_in >= outputs.shape[0]:
        raise ValueError(f"burn_in={burn_in} leaves no time steps of T={outputs.shape[0]}")
    return outputs[burn_in:].mean(0)


LOSSES = ("step_ce", "mean_ce")


def frame_targets(y: torch.Tensor, steps: int) -> torch.Tensor:
    """Labels [B] -> [T, B] (every step has the sample's label); [T, B] is checked."""
    if y.dim() == 1:
        return y.unsqueeze(0).expand(steps, -1)
    if y.shape[0] != steps:
        raise ValueError(f"frame labels have {y.shape[0]} steps, outputs have {steps}")
    return y


def step_weights(y: torch.Tensor, steps: int, burn_in: int = 0) -> torch.Tensor:
    """Weight [T, B] of each step's cross-entropy in ``step_ce``: 1/(number of counted
    frames) after ``burn_in``, 0 before it and on ``IGNORE`` frames."""
    if burn_in >= steps:
        raise ValueError(f"burn_in={burn_in} leaves no time steps of T={steps}")
    mask = frame_targets(y, steps) != IGNORE
    mask[:burn_in] = False
    n = mask.sum()
    if n == 0:
        raise ValueError("no labelled frames after burn-in")
    return mask.to(torch.get_default_dtype()) / n


def step_error(y_t: torch.Tensor, target_t: torch.Tensor, weight_t: torch.Tensor):
    """dE/dy[t] of ``step_ce`` at one step: weight * (softmax(y) - onehot); [B, C]."""
    p = torch.softmax(y_t, dim=-1)
    onehot = F.one_hot(target_t.clamp(min=0), y_t.shape[-1]).to(p.dtype)
    return (p - onehot) * weight_t.to(p.dtype).unsqueeze(-1)


def step_loss(y_t: torch.Tensor, target_t: torch.Tensor, weight_t: torch.Tensor):
    """The ``step_ce`` term of one step: sum_b weight * CE(y[t], target) (or of several
    steps at once: y [K, B, C], targets and weights [K, B])."""
    logp = torch.log_softmax(y_t, dim=-1)
    nll = -logp.gather(-1, target_t.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (nll * weight_t.to(nll.dtype)).sum()


class RunningScore:
    """``step_ce`` loss and the common decision, accumulated one step at a time, so that
    online rules keep no per-step history (not even of the readout)."""

    def __init__(self, y: torch.Tensor, steps: int, burn_in: int = 0) -> None:
        self.y, self.burn_in = y, burn_in
        self.targets = frame_targets(y, steps)
        self.weights = step_weights(y, steps, burn_in)
        self.loss = 0.0
        self.logit_sum: torch.Tensor | float = 0.0
        self.frame_correct = 0

    def update(self, t: int, y_t: torch.Tensor) -> None:
        """Step t's readout y_t [B, C]."""
        self.update_chunk(t, y_t.unsqueeze(0))

    def update_chunk(self, t0: int, ys: torch.Tensor) -> None:
        """The readouts ys [K, B, C] of steps t0 .. t0 + K - 1."""
        t1 = t0 + ys.shape[0]
        self.loss += float(step_loss(ys, self.targets[t0:t1], self.weights[t0:t1]))
        skip = max(0, self.burn_in - t0)
        if skip >= ys.shape[0]:
            return
        if self.y.dim() == 1:
            self.logit_sum = self.logit_sum + ys[skip:].sum(0)
        else:
            targets = self.targets[t0 + skip:t1]
            hit = (ys[skip:].argmax(-1) == targets) & (targets != IGNORE)
            self.frame_correct += int(hit.sum())

    def result(self) -> tuple[float, int, int]:
        """(loss, correct, count) as ``objective`` and ``count_correct`` give them."""
        if self.y.dim() == 1:
            correct = int((self.logit_sum.argmax(-1) == self.y).sum())
            return self.loss, correct, int(self.y.numel())
        mask = self.targets[self.burn_in:] != IGNORE
        return self.loss, self.frame_correct, int(mask.sum())


def objective(
    outputs: torch.Tensor, y: torch.Tensor, burn_in: int = 0, loss: str = "step_ce"
) -> torch.Tensor:
    """Training loss of readout [T, B, C] for labels [B] or frame labels [T, B]."""
    if loss not in LOSSES:
        raise ConfigError(f"unknown loss {loss!r}; known losses: {', '.join(LOSSES)}")
    if y.dim() == 2 and y.shape != outputs.shape[:2]:
        raise ValueError(f"frame labels {tuple(y.shape)} do not match outputs {outputs.shape}")
    if loss == "mean_ce" and y.dim() == 1:
        return F.cross_entropy(decision_logits(outputs, burn_in), y)
    steps = outputs.shape[0]
    targets = frame_targets(y, steps)[burn_in:]
    per_frame = F.cross_entropy(
        outputs[burn_in:].flatten(0, 1), targets.flatten(), ignore_index=IGNORE,
        reduction="none",
    )
    w = step_weights(y, steps, burn_in)[burn_in:].flatten().to(per_frame.dtype)
    return (per_frame * w).sum()


def count_correct(outputs: torch.Tensor, y: torch.Tensor, burn_in: int = 0) -> tuple[int, int]:
    if y.dim() == 1:
        pred = decision_logits(outputs, burn_in).argmax(-1)
        return int((pred == y).sum()), int(y.numel())
    pred = outputs[burn_in:].argmax(-1)
    target = y[burn_in:]
    mask = target != IGNORE
    return int(((pred == target) & mask).sum()), int(mask.sum())


@runtime_checkable
class Learner(Protocol):
    """What the one ``fit`` loop calls on every batch (``engine.executor.learner_step``):
    a ``LearningRule`` of a spiking MLP, or a training procedure of an image classifier
    (``spikebench.training.Procedure``: adversarial training, MS-MPPD, HIRE-SNN, AGC
    fine-tuning, robust fine-tuning, plain cross-entropy)."""

    name: str

    def backward(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                 update: Callable[[], None] | None = None) -> StepOutput:
        """Fill ``p.grad`` for the batch (or, calling ``update`` itself, apply the updates
        and return ``updated=True``); the loss, correct and counted samples."""


class LearningRule(ABC):
    """Base class for a learning rule. Subclasses set ``name`` and implement ``backward``.

    ``prepare`` is called once per model before training (e.g. to draw fixed random
    feedback); rule state that must survive lives in ``state_dict`` and is saved with the
    checkpoint.
    """

    name: str = ""
    losses: tuple[str, ...] = ("step_ce",)  # the training losses the rule can follow
    neurons: tuple[str, ...] | None = None  # neurons it can train (None: any)
    # its locality class: what it keeps of the credit assignment across layers (space) and
    # across time steps (time), as the locality-frontier tables state it ("" : not stated)
    credit_space: str = ""
    credit_time: str = ""

    def __init__(self, burn_in: int = 0, loss: str = "step_ce") -> None:
        if burn_in < 0:
            raise ConfigError(f"burn_in must be >= 0, got {burn_in}")
        if loss not in self.losses:
            raise ConfigError(
                f"rule {self.name!r} cannot train with loss {loss!r}; it supports: "
                f"{', '.join(self.losses)}"
            )
        self.burn_in, self.loss = burn_in, loss

    def prepare(self, model: torch.nn.Module) -> None:  # noqa: B027 (optional hook)
        """Set up rule state for ``model`` (default: none)."""

    @abstractmethod
    def backward(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                 update: Callable[[], None] | None = None) -> StepOutput:
        """Fill ``p.grad`` of the model's parameters for the batch; return loss and outputs.

        ``update`` is the harness's optimiser step; a rule that updates during the sequence
        calls it itself and returns ``updated=True`` (the harness then does not step)."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if state:
            raise ValueError(f"rule {self.name!r} has no state, got keys {sorted(state)}")

    def config(self) -> dict:
        return {"burn_in": self.burn_in, "loss": self.loss}


def matrices_state(prefix: str, mats: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Fixed per-layer matrices of a rule (feedback, readouts) as checkpoint entries."""
    return {f"{prefix}{k}": m for k, m in enumerate(mats)}


def matrices_from_state(state: dict[str, torch.Tensor], prefix: str,
                        expected: list[torch.Tensor], what: str) -> list[torch.Tensor]:
    """The inverse of ``matrices_state``, checked against the shapes the model needs."""
    loaded = [state[f"{prefix}{k}"] for k in range(len(state))]
    if [m.shape for m in loaded] != [m.shape for m in expected]:
        raise ValueError(
            f"saved {what} {[tuple(m.shape) for m in loaded]} do not match the model's "
            f"{[tuple(m.shape) for m in expected]}"
        )
    return [m.to(e) for m, e in zip(loaded, expected, strict=True)]  # onto the model's device


@torch.no_grad()
def evaluate_batch(
    model, x: torch.Tensor, y: torch.Tensor, burn_in: int = 0, loss: str = "step_ce",
    counter=None,
) -> StepOutput:
    """Forward pass only; the same decision for every rule. With ``counter`` (an
    ``analysis.efficiency.EfficiencyCounter``), the hidden spikes are counted too."""
    if counter is not None:
        outputs, spikes = model(x, record=True)
        counter.update(model, x, spikes)
    else:
        outputs = model(x)
    loss = float(objective(outputs, y, burn_in, loss))
    correct, count = count_correct(outputs, y, burn_in)
    return StepOutput(loss, outputs, correct, count)

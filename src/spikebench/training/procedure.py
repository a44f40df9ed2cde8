"""The learning-rule interface of image classifiers: a training procedure.

A ``Procedure`` is what the one ``fit`` loop calls on every batch of a conv SNN or ANN, a
hybrid network or a spiking head, exactly as it calls a ``LearningRule`` on a spiking MLP
(both are ``learning_rules.Learner``: ``backward(model, x, y, update=None) ->
StepOutput``). The model maps a batch to logits [B, C] (its decision); a procedure says
what loss one batch minimises (``loss``), and the default ``backward`` fills the
parameters' gradients from it. A procedure that steps several times within a batch
(HIRE-SNN's periods) or acts after the update (AGC's masks) overrides ``backward``, calls
``update`` itself and returns ``updated=True``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, is_dataclass

import torch

from spikebench.learning_rules import StepOutput


def hits(logits: torch.Tensor, y: torch.Tensor) -> int:
    """Correctly classified samples of a batch's logits [B, C]."""
    return int((logits.argmax(-1) == y).sum())


class Procedure:
    """Base class of the training procedures (registry ``training.PROCEDURES``)."""

    name: str = ""

    def prepare(self, model: torch.nn.Module) -> None:  # noqa: B027 (optional hook)
        """Set up state for ``model`` (default: none)."""

    def loss(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the batch's training loss, the model's clean logits [B, C]); a procedure that
        overrides ``backward`` with updates of its own need not define it."""
        raise NotImplementedError(f"procedure {self.name!r} defines no single loss")

    def backward(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                 update: Callable[[], None] | None = None) -> StepOutput:
        model.zero_grad(set_to_none=True)
        loss, logits = self.loss(model, x, y)
        loss.backward()
        return StepOutput(loss.item(), None, hits(logits, y), len(y))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def config(self) -> dict:
        return asdict(self) if is_dataclass(self) else {}


def needs_update(procedure: Procedure, update) -> Callable[[], None]:
    """``update``, or a ValueError naming the procedure that steps within a batch."""
    if update is None:
        raise ValueError(f"procedure {procedure.name!r} updates within a batch: pass the "
                         "optimiser's step as update")
    return update

r"""HIRE-SNN crafted-noise training (Kundu, Pedram, Beerel, ICCV 2021;
docs/suites/robust.md).

The T steps of a direct-input SNN are split into ``periods`` periods of T/N steps. Each
period sees another variant of the image: the first the image itself, each later one
x + eps sign(g), clipped to ``clip``, where g is the input gradient of the previous
period's loss. After each period the weights are updated from that period's gradients (the
period's loss is the cross-entropy of its readout averaged over its steps), and the
neurons' membranes carry over into the next period (detached: truncated BPTT), so that each
image is still simulated for T steps in total.

Where the input gradient comes from (the paper does not say how it avoids extra passes):

- ``craft="free"`` (default): from the period's own backward pass, which computes it at no
  extra cost beside the weight gradients (free adversarial training's reuse): the
  training costs what standard training of T steps costs;
- ``craft="updated"``: from one more forward/backward of the period with the updated
  weights (the paper's Figure 6 caption), about 1.5-2x the cost.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from spikebench.attacks.perturb import input_gradient, mode
from spikebench.errors import ConfigError
from spikebench.learning_rules import StepOutput
from spikebench.training.procedure import Procedure, hits, needs_update

CRAFTS = ("free", "updated")


@dataclass(frozen=True)
class HireSchedule:
    periods: int = 2  # N (Figure 6: T = 4, N = 2)
    eps: float = 0.05  # the crafted noise's L-inf bound
    craft: str = "free"

    def __post_init__(self) -> None:
        if self.periods < 1:
            raise ConfigError(f"periods must be >= 1, got {self.periods}")
        if self.craft not in CRAFTS:
            raise ConfigError(f"craft is one of {CRAFTS}, got {self.craft!r}")

    def window(self, steps: int) -> int:
        if steps % self.periods:
            raise ConfigError(f"HIRE-SNN splits T = {steps} steps into {self.periods} "
                              "periods: T must be a multiple of the periods")
        return steps // self.periods


def hire_step(model, update, x: torch.Tensor, y: torch.Tensor,
              schedule: HireSchedule, clip=(0.0, 1.0), extra_loss=None, after_step=None
              ) -> tuple[float, torch.Tensor]:
    """One batch of HIRE-SNN training: ``periods`` optimizer steps (``update()``, the
    optimiser's step, after each period's backward pass). ``extra_loss(model, variant,
    spikes)``: a term added to each period's loss from the period's own spikes (every
    neuron layer's [steps, B, ...]; AGC's attention guidance, ``prune.attention_guidance``),
    which never enters the crafted noise: that follows the cross-entropy alone;
    ``after_step()``: called after each optimizer step (AGC's masks). Returns the mean
    period loss and the readout averaged over all T steps (detached)."""
    width = schedule.window(model.steps)
    free = schedule.craft == "free"
    state, variant, losses, outs = None, x, [], []
    for p in range(schedule.periods):
        model.zero_grad(set_to_none=True)
        inp = variant.detach().clone().requires_grad_(free)
        start = state
        spikes: list | None = [] if extra_loss is not None else None
        out, state = model.window(inp, width, state, p * width, record=spikes)
        loss = F.cross_entropy(out.mean(0), y)
        grad = None
        if extra_loss is not None:
            if free and p + 1 < schedule.periods:  # the noise: CE's input gradient
                (grad,) = torch.autograd.grad(loss, inp, retain_graph=True)
            loss = loss + extra_loss(model, inp, spikes)
        loss.backward()
        if free and grad is None:
            grad = inp.grad
        update()
        if after_step is not None:
            after_step()
        state = [s.detach() for s in state]
        losses.append(loss.item())
        outs.append(out.detach())
        if p + 1 < schedule.periods:
            if grad is None:  # the input gradient with the updated weights
                with mode(model, False):
                    grad = input_gradient(_Window(model, width, start, p * width), inp, y)
            variant = (x + schedule.eps * grad.sign()).clamp(*clip)
    return sum(losses) / len(losses), torch.cat(outs).mean(0)


class Hire(Procedure):
    """HIRE-SNN training as a procedure (``hire_step``; it updates ``periods`` times per
    batch). ``extra_loss`` and ``after_step`` as ``hire_step`` takes them (AGC + HIRE)."""

    name = "hire"

    def __init__(self, schedule: HireSchedule, extra_loss=None, after_step=None,
                 clip=(0.0, 1.0)) -> None:
        self.schedule, self.extra_loss, self.after_step = schedule, extra_loss, after_step
        self.clip = clip

    def backward(self, model, x, y, update=None) -> StepOutput:
        loss, logits = hire_step(model, needs_update(self, update), x, y, self.schedule,
                                 self.clip, self.extra_loss, self.after_step)
        return StepOutput(loss, None, hits(logits, y), len(y), updated=True)

    def config(self) -> dict:
        return {**asdict(self.schedule), "clip": list(self.clip)}


class _Window(torch.nn.Module):
    """A period of ``model`` from fixed membranes, batch-first logits (for its gradient)."""

    def __init__(self, model, width: int, state, t0: int) -> None:
        super().__init__()
        self.model, self.width, self.state, self.t0 = model, width, state, t0

    def forward(self, x):
        return self.model.window(x, self.width, self.state, self.t0)[0].mean(0)

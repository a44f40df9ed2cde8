"""Input perturbations shared by robust training and by the attacks (``attacks.ensemble``,
``attacks.art``): Gaussian noise, FGSM, PGD (L-inf), RFGSM on the KL
(docs/suites/robust.md). The one implementation of FGSM and of the input gradient.

Every generator takes a batch-first classifier ``model`` (images [B, ...] -> logits) and
leaves its parameters' gradients and its train/eval mode as they were. Gradient-based ones
are crafted in eval mode (BatchNorm's running statistics, as the papers craft them) unless
``train_mode`` is set. ``clip`` is the valid input range (images: [0, 1]); None leaves the
perturbed input unclipped (Ding et al.'s Gaussian training).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, target) -> scalar


@contextmanager
def mode(model: nn.Module, train: bool | None):
    """Run ``model`` in train or eval mode (None: every module's as it is), then restore each
    module's mode."""
    modes = [(m, m.training) for m in model.modules()]
    if train is not None:
        model.train(train)
    try:
        yield model
    finally:
        for m, was in modes:
            m.training = was


def _clip(x: torch.Tensor, clip) -> torch.Tensor:
    return x if clip is None else x.clamp(*clip)


def input_gradient(model: nn.Module, x: torch.Tensor, target: torch.Tensor,
                   loss: Loss | None = None) -> torch.Tensor:
    """d loss(model(x), target) / dx; parameter gradients untouched."""
    x = x.detach().clone().requires_grad_(True)
    value = (loss or F.cross_entropy)(model(x), target)
    if not value.requires_grad:  # the input does not reach the loss differentiably
        return torch.zeros_like(x)  # (a model that masks its gradient completely)
    (grad,) = torch.autograd.grad(value, x, allow_unused=True)
    return torch.zeros_like(x) if grad is None else grad


def kl_loss(logits: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """KL(p_reference || p_logits), batch mean (TRADES' term; log-softmax form)."""
    return F.kl_div(F.log_softmax(logits, -1), F.log_softmax(reference, -1),
                    reduction="batchmean", log_target=True)


def gaussian(x: torch.Tensor, sigma: float, clip=(0.0, 1.0),
             generator: torch.Generator | None = None) -> torch.Tensor:
    # drawn on the CPU (its generator), so the noise is the same on every device
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device="cpu").to(x.device)
    return _clip(x + sigma * noise, clip)


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, clip=(0.0, 1.0),
         noise: float = 0.0, train_mode: bool | None = False) -> torch.Tensor:
    """x + eps sign(grad) (from x + noise N(0, 1): Ding et al.'s one-step AT, noise 0.001);
    ``train_mode`` None: the modules' modes as they are."""
    start = x + noise * torch.randn_like(x) if noise else x
    with mode(model, train_mode):
        grad = input_gradient(model, start, y)
    return _clip(start.detach() + eps * grad.sign(), clip)


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 10,
        step_size: float | None = None, clip=(0.0, 1.0), random_start: bool = True,
        loss: Loss | None = None, target: torch.Tensor | None = None,
        generator: torch.Generator | None = None, train_mode: bool = False,
        start: torch.Tensor | None = None, judge: nn.Module | None = None,
        restarts: int = 1) -> torch.Tensor:
    """L-inf projected gradient ascent on ``loss(model(x'), target)`` (default: CE against
    y): ``steps`` signed steps of ``step_size`` (default 2.5 eps / steps), each followed by
    clipping to ``clip`` and projection onto the eps ball around x. Start: ``start`` if
    given, else uniform in the ball (``random_start``), else x.

    With ``judge`` (the model whose decision counts, in eval mode; ``model`` may be a
    gradient route of it) the attack keeps, per sample, the first iterate that ``judge``
    misclassifies (best-iterate tracking; else the last iterate), over ``restarts``
    random starts (a sample fooled once keeps that iterate). Without it: the last iterate
    of one start."""
    if eps == 0 or steps == 0:
        return x.detach().clone()
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    step_size = 2.5 * eps / steps if step_size is None else step_size
    target = y if target is None else target
    x = x.detach()
    best, fooled = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for restart in range(restarts if judge is not None else 1):
        if start is not None and restart == 0:
            adv = start.detach().clone()
        elif random_start or restart > 0:
            u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device="cpu").to(
                x.device)
            adv = _clip(x + eps * (2 * u - 1), clip)
        else:
            adv = x.clone()
        with mode(model, train_mode):
            for _ in range(steps):
                grad = input_gradient(model, adv, target, loss)
                adv = _clip(adv + step_size * grad.sign(), clip)
                adv = x + (adv - x).clamp(-eps, eps)
                if judge is not None:
                    with torch.no_grad(), mode(judge, False):
                        wrong = judge(adv).argmax(-1) != y
                    new = wrong & ~fooled
                    best[new], fooled = adv[new], fooled | wrong
        if judge is None:
            return adv.detach()
        best[~fooled] = adv[~fooled]
        if bool(fooled.all()):
            break
    return best.detach()


def rfgsm_kl(model: nn.Module, x: torch.Tensor, eps: float, alpha: float,
             clip=(0.0, 1.0), train_mode: bool = False) -> torch.Tensor:
    """One step on KL(p(x) || p(x')) from x + alpha sign(N(0, 1)), of size eps - alpha,
    projected onto the eps ball and ``clip`` (the robust fine-tuning's x-hat)."""
    with mode(model, train_mode):
        with torch.no_grad():
            reference = model(x)
        start = _clip(x + alpha * torch.randn_like(x).sign(), clip)
        grad = input_gradient(model, start, reference, kl_loss)
    adv = _clip(start.detach() + (eps - alpha) * grad.sign(), clip)
    return (x + (adv - x).clamp(-eps, eps)).detach()

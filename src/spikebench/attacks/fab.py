"""Targeted FAB (Croce & Hein 2020, AutoAttack's FAB-T) from torchattacks, the one
well-kept library that has it (ART has none): the minimum-norm L-inf attack towards each
of ``targets`` classes, run through a gradient route; a sample counts as fooled only
where FAB's point lies within eps (torchattacks keeps no other).

torchattacks is installed without its dependencies (``make setup``: its metadata asks for
torchvision, which it never imports and whose wheel does not load with our torch).
"""

from __future__ import annotations

import torch
from torch import nn

from spikebench.errors import ConfigError


def fab_targeted(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                 steps: int, targets: int, classes: int, seed: int = 0) -> torch.Tensor:
    """Adversarial images [B, ...] in [0, 1] from FAB-T with ``steps`` iterations towards
    the ``targets`` classes ranked after the top clean logit (the input where it fails).
    ``model`` is the attacked view (a ``Routed`` model); the global RNG is left as it was
    (torchattacks reseeds it)."""
    try:
        from torchattacks import FAB
    except ImportError as err:  # a user's own install without make setup
        raise ConfigError("FAB-T (fab_targets > 0) needs torchattacks: pip install --no-deps "
                          "torchattacks==3.5.1 (its torchvision requirement is not needed)"
                          ) from err
    targets = min(targets, classes - 1)
    if targets < 1 or not len(x):
        return x.clone()
    # multi_targeted runs the targets ranked 2 .. n_classes: n_classes = targets + 1
    attack = FAB(model, norm="Linf", eps=eps, steps=steps, n_restarts=1, seed=seed,
                 multi_targeted=True, n_classes=targets + 1)
    with torch.random.fork_rng(devices=[]):
        adv = attack(x, y)
    over = (adv - x).flatten(1).abs().amax(1) > eps * (1 + 1e-6)
    return torch.where(over.view(-1, *[1] * (x.dim() - 1)), x, adv)

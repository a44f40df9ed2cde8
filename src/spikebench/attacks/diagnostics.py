"""Checks for gradient masking, per model, beside its robust accuracy (Athalye et al. 2018,
Carlini et al. 2019; docs/suites/robust.md). A robust accuracy is
trusted only where none of them fires:

- ``vanishing``: the share of samples whose input gradient (the model's own surrogate,
  cross-entropy) is exactly zero: there, gradient attacks see nothing;
- ``large_eps``: PGD accuracy at a large radius (``LARGE_EPS``, a quarter of the valid
  range): any model must fall towards 0 there (flagged above ``LARGE_EPS_ACC``);
- ``more_steps``: PGD with twice the steps must not score higher than PGD-k;
- ``gradient_free``: the gradient-free attack (Square) must not beat the best gradient
  attack (FGSM, PGD, APGD).

``flags(result, n)`` names the checks that fire, each by the two-standard-error rule on
``n`` samples, so sampling noise alone does not raise one.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from spikebench.attacks.ensemble import Routed, is_stochastic, robust_evaluation
from spikebench.attacks.perturb import input_gradient, mode, pgd
from spikebench.models import device_of

LARGE_EPS = 0.25  # of the valid range (images in [0, 1])
VANISHING = 0.1  # a share of samples with zero gradient that is flagged
LARGE_EPS_ACC = 0.1  # an accuracy at LARGE_EPS that is flagged


def masking_checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                   pgd_steps: int, clip=(0.0, 1.0), batch_size: int = 128, eot: int = 4
                   ) -> dict[str, float]:
    """``vanishing`` (share of samples), ``pgd_large_eps`` and ``pgd_more_steps``
    (accuracies) of ``model`` on (x, y), through the model's own surrogate (with
    expectation over ``eot`` encodings for a rate-coded model), on the model's device."""
    lo, hi = clip
    device = device_of(model)
    x, y = x.to(device), y.to(device)
    attack = Routed(model, "surrogate", eot if is_stochastic(model) else 1)
    zero, large, more = [], [], []
    with mode(model, False):
        for i in range(0, len(x), batch_size):
            xb, yb = x[i:i + batch_size], y[i:i + batch_size]
            grad = input_gradient(attack, xb, yb)
            zero.append((grad.flatten(1).abs().amax(1) == 0).float())
            big = pgd(attack, xb, yb, LARGE_EPS * (hi - lo), pgd_steps, clip=clip, judge=model)
            twice = pgd(attack, xb, yb, eps, 2 * pgd_steps, clip=clip, judge=model)
            with torch.no_grad():
                large.append((model(big).argmax(-1) == yb).float())
                more.append((model(twice).argmax(-1) == yb).float())
    return {"vanishing": float(torch.cat(zero).mean()),
            "pgd_large_eps": float(torch.cat(large).mean()),
            "pgd_more_steps": float(torch.cat(more).mean())}


def evaluate_protocol(model: nn.Module, x: torch.Tensor, y: torch.Tensor, spec) -> dict:
    """``robust_evaluation`` at a robust suite's spec's budgets (eps, routes, PGD steps and
    restarts, APGD, Square, sigma, EOT, seed; ``ensemble.protocol`` says them in words),
    then the ``masking_checks`` of the same model."""
    out = robust_evaluation(model, x, y, spec.eps, spec.routes, spec.pgd_steps,
                            spec.square_queries, spec.sigma, spec.eot, seed=spec.seed,
                            pgd_restarts=spec.pgd_restarts, apgd_steps=spec.apgd_steps,
                            apgd_targets=spec.apgd_targets,
                            fab_targets=spec.fab_targets)
    out.update(masking_checks(model, x, y, spec.eps, spec.pgd_steps, eot=spec.eot))
    return out


def exceeds(a: float, b: float, n: int) -> bool:
    """a exceeds b by more than two standard errors of a difference of shares on n."""
    se = math.sqrt(max(a * (1 - a) + b * (1 - b), 1.0 / n) / max(n, 1))
    return a - b > 2 * se


def flags(result: dict, n: int) -> list[str]:
    """The masking checks that fire for one model's ``robust_evaluation`` +
    ``masking_checks`` result (keys absent from it are not checked)."""
    out = []
    if result.get("vanishing", 0.0) > VANISHING:
        out.append(f"zero gradient on {100 * result['vanishing']:.0f} % of samples")
    if result.get("pgd_large_eps", 0.0) > LARGE_EPS_ACC and exceeds(
            result["pgd_large_eps"], LARGE_EPS_ACC, n):
        out.append(f"PGD at eps {LARGE_EPS:g} leaves {100 * result['pgd_large_eps']:.0f} %")
    if "pgd_more_steps" in result and exceeds(result["pgd_more_steps"], result["pgd"], n):
        out.append("more PGD steps raise accuracy")
    gradient = [result[k] for k in ("fgsm", "pgd", "apgd-ce", "apgd-dlr", "fab-t")
                if k in result]
    if "square" in result and gradient and exceeds(min(gradient), result["square"], n):
        out.append("Square beats the gradient attacks")
    return out


LEGEND = (f"*masking checks* (`attacks.diagnostics`, each beyond two standard errors): a zero "
          f"input gradient on more than {100 * VANISHING:.0f} % of the samples, PGD at eps "
          f"{LARGE_EPS:g} leaving more than {100 * LARGE_EPS_ACC:.0f} %, PGD with twice the "
          "steps scoring higher, Square beating every gradient attack; a number beside a "
          "fired check is an upper bound")

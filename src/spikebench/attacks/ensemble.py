"""Adaptive attacks on spiking models (docs/suites/robust.md, Özdenizci &
Legenstein's ensemble; Ding et al.'s evaluation): a spiking network's input gradient
depends on the surrogate an attacker picks, and a defence can look robust only because
one gradient route is masked. So each white-box attack is run through several routes
and a sample counts as robust only if it survives every one of them.

Gradient routes (``SpikingActivation.route``, set for the attack's gradients only; every
accuracy is measured on the unchanged model):

- ``surrogate``: the model's own training surrogate;
- ``NAME:SLOPE``: another surrogate (``triangle:0.5`` is the triangle of width 2,
  ``straight_through:1`` a rectangle of width 2, ``exponential:1``, ``identity:1`` the
  identity straight-through estimator, and the reference's gamma forms ``pwl``, ``rect``,
  ``exp_damped``: ``neurons.surrogate``);
- ``bptr``: backward through rates (forward spikes, the backward through the
  time-averaged effective input a[t] I[t] where a neuron fires, no unrolling);
- ``proxy``: the ANN proxy (ReLU-like rates on the same weights; a transfer attack).

Attacks (L-inf, images in ``clip``): FGSM and PGD-k (``attacks.perturb``: one
implementation for training and attacks; uniform start, step 2.5 eps / k), Square
(ART's, gradient-free, ``queries`` iterations: the check on gradient masking), Gaussian
noise. A stochastic input coding (Bernoulli rate code) is attacked with expectation over
transformation: gradients of the logits averaged over ``eot`` encodings, the crafted
input judged with fresh ones.

``robust_evaluation`` returns per-attack accuracies and the ensemble: correct under FGSM,
PGD through every route and Square, per sample.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from spikebench.attacks.art import ARTAttack, predict
from spikebench.attacks.fab import fab_targeted
from spikebench.attacks.perturb import fgsm, gaussian, mode, pgd
from spikebench.errors import ConfigError
from spikebench.models import device_of
from spikebench.neurons import NeuronDynamics
from spikebench.neurons.surrogate import surrogate_names

DEFAULT_ROUTES = ("surrogate", "triangle:0.5", "triangle:2", "straight_through:1",
                  "exponential:1", "identity:1", "bptr", "proxy")
# the robust-conversion reference's 19 routes (its gamma-parametrised forms)
REFERENCE_ROUTES = (*(f"pwl:{g:g}" for g in (0.25, 0.5, 1, 2, 3)),
                    *(f"rect:{g:g}" for g in (0.25, 0.5, 1, 2, 4)),
                    *(f"{f}:{g:g}" for f in ("exponential", "exp_damped") for g in (0.5, 1, 2)),
                    "identity:1", "bptr", "proxy")


def parse_route(route: str):
    """A route name -> the value ``SpikingActivation.route`` takes."""
    if route == "surrogate":
        return None
    if route in ("bptr", "proxy"):
        return route
    name, _, slope = route.partition(":")
    try:
        value = float(slope)
    except ValueError:
        value = float("nan")
    if name not in surrogate_names() or not value > 0:
        raise ConfigError(f"unknown gradient route {route!r}: 'surrogate', 'bptr', 'proxy' or "
                          f"SURROGATE:SLOPE (slope > 0) with a surrogate of "
                          f"{', '.join(surrogate_names())}")
    return (name, value)


@contextmanager
def gradient_route(model: nn.Module, route: str):
    """Every neuron of ``model`` on ``route`` inside the block."""
    value = parse_route(route)
    neurons = [m for m in model.modules() if hasattr(m, "route")]  # DLIF's dynamics
    before = [n.route for n in neurons]
    for n in neurons:
        n.route = value
    try:
        yield model
    finally:
        for n, r in zip(neurons, before, strict=True):
            n.route = r


class Routed(nn.Module):
    """``model`` as its gradient route sees it, with expectation over ``eot`` encodings."""

    def __init__(self, model: nn.Module, route: str = "surrogate", eot: int = 1) -> None:
        super().__init__()
        self.model, self.route, self.eot = model, route, eot

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with gradient_route(self.model, self.route):
            return torch.stack([self.model(x) for _ in range(self.eot)]).mean(0)


@torch.no_grad()
def correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
            batch_size: int = 256) -> torch.Tensor:
    """Per sample: the model's decision is y (eval mode)."""
    with mode(model, False):
        return predict(model, x, batch_size) == y


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             batch_size: int = 256) -> float:
    """The share of ``correct`` decisions (0 for no samples)."""
    return float(correct(model, x, y, batch_size).float().mean()) if len(x) else 0.0


def is_stochastic(model: nn.Module) -> bool:
    return getattr(model, "coding", "direct") != "direct"


def robust_evaluation(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                      routes=DEFAULT_ROUTES, pgd_steps: int = 10, square_queries: int = 100,
                      sigma: float = 0.1, eot: int = 4,
                      clip=(0.0, 1.0), batch_size: int = 128, seed: int = 0,
                      pgd_restarts: int = 1, apgd_steps: int = 0, apgd_targets: int = 0,
                      fab_targets: int = 0) -> dict[str, float]:
    """Accuracies on (x, y) at L-inf ``eps``: ``clean``, ``fgsm`` and ``pgd`` (the model's
    own surrogate), ``pgd[ROUTE]`` per route (best iterate over ``pgd_restarts`` random
    starts), ``apgd-ce`` and ``apgd-dlr`` (ART's APGD with the cross-entropy and the
    difference-of-logits-ratio loss, ``apgd_steps`` iterations through the model's own
    surrogate; 0: none), ``apgd-t`` (targeted APGD-DLR towards each of the
    ``apgd_targets`` classes the clean logits rank next after the top one, AutoAttack's
    APGD-T; 0: none), ``fab-t`` (torchattacks' targeted FAB, ``apgd_steps`` iterations
    towards each of ``fab_targets`` classes; 0: none), ``square`` (``square_queries``
    iterations; 0: none),
    ``gaussian`` (sigma, clipped) and ``ensemble``: the share of samples correct under
    every one of these attacks (clean, FGSM, each route's PGD, APGD, FAB, Square), so never
    above any of them. An ANN, and a model whose neurons have no gradient routes (only
    DLIF's ``SpikingActivation`` has them), has one route. Computed on the model's device."""
    neurons = [m for m in model.modules() if isinstance(m, NeuronDynamics)]
    # the routes are switched in neurons that have them (SpikingActivation); a model with
    # other neurons is attacked through its own surrogate only: an upper bound
    routes = list(routes) if neurons and all(hasattr(m, "route") for m in neurons) \
        else ["surrogate"]
    device = device_of(model)  # computed where the model is
    x, y = x.to(device), y.to(device)
    k = eot if is_stochastic(model) else 1
    torch.manual_seed(seed)
    ok = {"clean": correct(model, x, y, batch_size)}
    fg, per_route = [], {r: [] for r in routes}
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        fg.append(correct(model, fgsm(Routed(model, "surrogate", k), xb, yb, eps, clip), yb))
        for r in routes:
            adv = pgd(Routed(model, r, k), xb, yb, eps, pgd_steps, clip=clip, judge=model,
                      restarts=pgd_restarts)
            per_route[r].append(correct(model, adv, yb))
    ok["fgsm"] = torch.cat(fg)
    for r in routes:
        ok[f"pgd[{r}]"] = torch.cat(per_route[r])
    ok["pgd"] = ok["pgd[surrogate]"]
    ensemble = ok["clean"] & ok["fgsm"]
    for r in routes:
        ensemble = ensemble & ok[f"pgd[{r}]"]
    classes = 0
    if apgd_steps or fab_targets:
        with torch.no_grad(), mode(model, False):
            classes = int(model(x[:1]).shape[-1])
    # DLR takes the three largest logits: with two classes only APGD-CE runs
    for loss in (("ce", "dlr") if classes > 2 else ("ce",)) if apgd_steps else ():
        with mode(model, False):
            apgd = ARTAttack(f"apgd-{loss}", (("max_iter", apgd_steps),))
            adv = torch.cat([apgd(Routed(model, "surrogate", k), x[i:i + batch_size],
                                  y[i:i + batch_size], eps, clip)
                             for i in range(0, len(x), batch_size)])
        ok[f"apgd-{loss}"] = correct(model, adv, y)
        ensemble = ensemble & ok[f"apgd-{loss}"]
    if apgd_steps and apgd_targets and classes > 2:
        ok["apgd-t"] = _targeted_apgd(model, x, y, eps, apgd_steps, apgd_targets, k, clip,
                                      batch_size)
        ensemble = ensemble & ok["apgd-t"]
    if fab_targets and classes > 1:
        with mode(model, False):
            adv = torch.cat([fab_targeted(Routed(model, "surrogate", k), x[i:i + batch_size],
                                          y[i:i + batch_size], eps, max(apgd_steps, 10),
                                          fab_targets, classes, seed)
                             for i in range(0, len(x), batch_size)])
        ok["fab-t"] = correct(model, adv.clamp(*clip), y)
        ensemble = ensemble & ok["fab-t"]
    out = {name: float(v.float().mean()) for name, v in ok.items()}
    if square_queries:
        with mode(model, False):
            sq = ARTAttack("square", (("max_iter", square_queries),))
            adv = torch.cat([sq(Routed(model, "surrogate", k), x[i:i + batch_size],
                                y[i:i + batch_size], eps, clip)
                             for i in range(0, len(x), batch_size)])
        ok["square"] = correct(model, adv, y)
        out["square"] = float(ok["square"].float().mean())
        ensemble = ensemble & ok["square"]
    out["ensemble"] = float(ensemble.float().mean())
    noisy = gaussian(x, sigma, clip)
    out["gaussian"] = float(correct(model, noisy, y, batch_size).float().mean())
    return out


def _targeted_apgd(model, x, y, eps, steps, targets, eot, clip, batch_size) -> torch.Tensor:
    """Per sample: correct under targeted APGD-DLR towards each of the ``targets`` classes
    ranked next after the top clean logit (AutoAttack's APGD-T)."""
    with torch.no_grad(), mode(model, False):
        ranked = torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
                           ).argsort(-1, descending=True)
    ok = correct(model, x, y, batch_size)
    apgd = ARTAttack("apgd-dlr", (("max_iter", steps), ("targeted", True)))
    with mode(model, False):
        for j in range(1, min(targets, ranked.shape[1] - 1) + 1):
            adv = torch.cat([apgd(Routed(model, "surrogate", eot), x[i:i + batch_size],
                                  ranked[i:i + batch_size, j], eps, clip)
                             for i in range(0, len(x), batch_size)])
            ok = ok & correct(model, adv, y)
    return ok


def protocol(spec) -> str:
    """The ensemble a robust suite's spec runs, in words (its budgets), for its report."""
    targets, fab = getattr(spec, "apgd_targets", 0), getattr(spec, "fab_targets", 0)
    apgd = (f", APGD-CE, APGD-DLR{f' and APGD-T ({targets} target classes)' if targets else ''}"
            f" ({spec.apgd_steps} iterations, ART)" if spec.apgd_steps else "")
    if fab:
        apgd += (f", FAB-T ({fab} target classes, {max(spec.apgd_steps, 10)} iterations, "
                 "torchattacks)")
    return (f"*ensemble*: correct under FGSM, PGD-{spec.pgd_steps} through every gradient route "
            f"({', '.join(f'`{r}`' for r in spec.routes)}; best iterate per sample over "
            f"{spec.pgd_restarts} random start(s)){apgd} and Square ({spec.square_queries} "
            "queries, ART), per sample")

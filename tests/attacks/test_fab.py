"""FAB-T and the whole ensemble against an exact computation: a linear classifier's robust
accuracy in an L-inf ball intersected with the image box is a closed form (each class
pair's worst margin is separable per pixel), so no attack may report less, and a strong
one reaches it. torchattacks' own AutoAttack (APGD-CE, APGD-T, FAB-T, Square 5000) on the
same model is never stronger than our ensemble."""

import sys

import numpy as np
import pytest
import torch
from torch import nn

from spikebench.attacks.ensemble import robust_evaluation
from spikebench.attacks.fab import fab_targeted
from spikebench.errors import ConfigError

pytest.importorskip("torchattacks", reason="torchattacks is installed by make setup")

EPS = 0.03


def exact_robust(w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray, eps: float):
    """Per sample: (robust, the smallest worst-case margin over the other classes)."""
    lo, hi = np.maximum(-eps, -x), np.minimum(eps, 1 - x)  # the ball within [0, 1]
    margins = []
    for k in range(len(b)):
        d = w[y] - w[k]  # [B, n]
        c = b[y] - b[k]
        worst = (d * x).sum(1) + c + np.minimum(d * lo, d * hi).sum(1)
        margins.append(np.where(k == y, np.inf, worst))
    m = np.min(margins, 0)
    return m > 0, m


@pytest.fixture(scope="module")
def linear():
    """A 5-class linear model on 8x8 images and samples whose worst-case margins are
    clear of 0 (no tie for any float rounding to flip)."""
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 5))
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(5, 64, generator=g) / 2)
        model[1].bias.copy_(0.5 * torch.randn(5, generator=g))
    x = torch.rand(400, 1, 8, 8, generator=g)
    with torch.no_grad():
        y = model(x).argmax(-1)
    w, b = (t.detach().double().numpy() for t in (model[1].weight, model[1].bias))
    flat = x.flatten(1).double().numpy()
    robust, margin = exact_robust(w, b, flat, y.numpy(), EPS)
    _, clean_margin = exact_robust(w, b, flat, y.numpy(), 0.0)
    keep = (np.abs(margin) > 0.05) & (clean_margin > 0.05)
    keep &= np.cumsum(keep) <= 60
    return model.eval(), x[keep], y[keep], robust[keep]


def test_the_exact_robust_set_is_neither_empty_nor_everything(linear):
    *_, robust = linear
    assert 0.2 < robust.mean() < 0.8


def test_fab_t_fools_exactly_the_non_robust_samples_within_eps(linear):
    model, x, y, robust = linear
    adv = fab_targeted(model, x, y, EPS, steps=20, targets=4, classes=5)
    assert (adv - x).abs().max() <= EPS * (1 + 1e-6) and adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():
        fooled = (model(adv).argmax(-1) != y).numpy()
    assert not (fooled & robust).any()  # sound: no attack beats the closed form
    assert fooled.sum() >= 0.9 * (~robust).sum()  # and it finds (nearly) all the others


def test_the_ensemble_reaches_the_exact_robust_accuracy_and_beats_autoattack(linear):
    import torchattacks

    model, x, y, robust = linear
    ours = robust_evaluation(model, x, y, EPS, pgd_steps=20, square_queries=200,
                             apgd_steps=20, apgd_targets=4, fab_targets=4)
    exact = float(robust.mean())
    assert ours["ensemble"] == pytest.approx(exact, abs=1e-6)
    assert all(ours[k] >= exact - 1e-6 for k in ("fgsm", "pgd", "apgd-ce", "apgd-t", "fab-t",
                                                 "square"))
    attack = torchattacks.AutoAttack(model, norm="Linf", eps=EPS, version="standard",
                                     n_classes=5, seed=0)
    with torch.random.fork_rng(devices=[]):
        adv = attack(x, y)
    with torch.no_grad():
        theirs = float((model(adv).argmax(-1) == y).float().mean())
    assert exact - 1e-6 <= ours["ensemble"] <= theirs + 1e-6


def test_fab_without_torchattacks_is_a_clear_error(monkeypatch, linear):
    model, x, y, _ = linear
    monkeypatch.setitem(sys.modules, "torchattacks", None)
    with pytest.raises(ConfigError, match="pip install --no-deps torchattacks"):
        fab_targeted(model, x, y, EPS, steps=5, targets=2, classes=5)


def test_fab_t_joins_the_ensemble_of_a_spiking_net():
    from spikebench.models import ConvNet
    from spikebench.neurons import DLIFParams

    torch.manual_seed(0)
    snn = ConvNet("vgg-small", 1, 12, 4, DLIFParams(steps=2, threshold=0.3), steps=2).eval()
    x, y = torch.rand(6, 1, 12, 12), torch.tensor([0, 1, 2, 3, 0, 1])
    out = robust_evaluation(snn, x, y, 0.1, routes=("surrogate",), pgd_steps=2,
                            square_queries=0, apgd_steps=3, fab_targets=2)
    assert "fab-t" in out and out["ensemble"] <= min(out["fab-t"], out["apgd-ce"]) + 1e-12

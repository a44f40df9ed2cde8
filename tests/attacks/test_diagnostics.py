"""The masking checks fire for models built to mask gradients (a hard step, a saturated
layer) and stay silent for a model whose gradient is exact (a linear classifier)."""

import torch
from torch import nn

from spikebench.attacks.diagnostics import LARGE_EPS, flags, masking_checks
from spikebench.attacks.ensemble import robust_evaluation


class HardStep(nn.Module):
    """Class 0 iff more than half the pixels exceed 0.5: no input gradient at all."""

    def forward(self, x):
        frac = (x.flatten(1) > 0.5).float().mean(1)
        return torch.stack([frac, torch.full_like(frac, 0.5)], 1) * 10


class Saturated(nn.Module):
    """A linear decision behind a sigmoid pushed far into saturation: its gradient
    underflows to exactly zero although the decision is a smooth function of x."""

    def forward(self, x):
        m = x.flatten(1).mean(1, keepdim=True) - 0.5
        s = torch.sigmoid(1e4 * m)
        return torch.cat([s, 1 - s], 1) * 10


class Linear(nn.Module):
    def forward(self, x):
        m = x.flatten(1).mean(1, keepdim=True) - 0.5
        return torch.cat([m, -m], 1) * 10


def data():
    x = torch.cat([torch.full((20, 1, 6, 6), 0.6), torch.full((20, 1, 6, 6), 0.4)])
    return x, torch.tensor([0] * 20 + [1] * 20)


def evaluate(model):
    x, y = data()
    r = robust_evaluation(model, x, y, 0.05, pgd_steps=5, square_queries=40)
    r.update(masking_checks(model, x, y, 0.05, 5))
    return r, flags(r, len(x))


def test_models_built_to_mask_gradients_are_flagged():
    for model in (HardStep(), Saturated()):
        r, fired = evaluate(model)
        assert r["clean"] == 1.0 and r["vanishing"] == 1.0
        assert r["pgd_large_eps"] == 1.0  # no gradient: even eps 0.25 moves nothing
        assert any("zero gradient" in f for f in fired)
        assert any(f"eps {LARGE_EPS:g}" in f for f in fired), fired


def test_an_exact_gradient_raises_no_flag():
    r, fired = evaluate(Linear())
    assert r["vanishing"] == 0.0 and r["pgd_large_eps"] == 0.0
    assert r["pgd_more_steps"] <= r["pgd"]
    assert fired == []


def test_flags_follow_the_two_standard_error_rule():
    base = {"fgsm": 0.5, "pgd": 0.4, "square": 0.38, "pgd_more_steps": 0.42,
            "pgd_large_eps": 0.05, "vanishing": 0.0}
    assert flags(base, 100) == []  # within noise
    assert flags({**base, "square": 0.1}, 100) == ["Square beats the gradient attacks"]
    assert flags({**base, "pgd_more_steps": 0.7}, 100) == ["more PGD steps raise accuracy"]

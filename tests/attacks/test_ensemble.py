"""Adaptive attacks: our PGD against ART's, the ensemble against its members, and a
gradient-masking model that only the gradient-free attack sees through."""

import numpy as np
import pytest
import torch
from torch import nn

from spikebench.attacks.ensemble import (
    gradient_route,
    parse_route,
    robust_evaluation,
)
from spikebench.attacks.perturb import pgd
from spikebench.errors import ConfigError
from spikebench.metrics.efficiency import conv_workload
from spikebench.models import ConvNet
from spikebench.neurons import DLIFParams


def test_our_pgd_equals_art_pgd_from_the_same_start():
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    torch.manual_seed(0)
    ann = ConvNet("vgg-small", 1, 8, 3).eval()
    x = torch.rand(6, 1, 8, 8)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    ours = pgd(ann, x, y, 0.1, steps=5, step_size=0.025, random_start=False)
    est = PyTorchClassifier(ann, nn.CrossEntropyLoss(), input_shape=(1, 8, 8), nb_classes=3,
                            clip_values=(0.0, 1.0), device_type="cpu")
    art = ProjectedGradientDescent(est, norm=np.inf, eps=0.1, eps_step=0.025, max_iter=5,
                                   num_random_init=0, batch_size=6, verbose=False)
    theirs = torch.from_numpy(art.generate(x.numpy(), y=y.numpy()))
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    assert (ours - x).abs().max() > 0.05  # it moved


def test_ensemble_is_never_weaker_than_a_member_and_counts_spikes():
    torch.manual_seed(0)
    snn = ConvNet("vgg-small", 1, 8, 3, DLIFParams(steps=3, threshold=0.2), steps=3).eval()
    x = torch.rand(12, 1, 8, 8)
    y = snn(x).argmax(-1)  # every sample correct before the attack
    r = robust_evaluation(snn, x, y, 0.2, routes=("surrogate", "triangle:0.5", "bptr", "proxy"),
                          pgd_steps=3, square_queries=5, batch_size=5, apgd_steps=3,
                          apgd_targets=2)
    assert r["clean"] == 1.0
    members = ["fgsm", "square", "apgd-ce", "apgd-dlr", "apgd-t",
               *[f"pgd[{k}]" for k in ("surrogate", "triangle:0.5", "bptr", "proxy")]]
    assert all(r["ensemble"] <= r[m] for m in members)
    assert 0 <= r["gaussian"] <= 1
    assert conv_workload(snn, x)["spikes"] > 0
    assert conv_workload(ConvNet("vgg-small", 1, 8, 3).eval(), x)["spikes"] == 0
    # the routes are set inside the block only
    with gradient_route(snn, "triangle:0.5"):
        assert all(n.route == ("triangle", 0.5) for n in snn.neurons())
    assert all(n.route is None for n in snn.neurons())
    with pytest.raises(ConfigError, match="route"):
        parse_route("bogus:1")


class Quantised(nn.Module):
    """Gradient masking by construction: a hard step without surrogate before a linear
    decision (class 0 iff more than half the pixels exceed 0.5); its input gradient is 0."""

    def forward(self, x):
        frac = (x.flatten(1) > 0.5).float().mean(1)
        return torch.stack([frac, torch.full_like(frac, 0.5)], 1) * 10


def test_gradient_masking_is_caught_by_the_gradient_free_attack():
    x = torch.cat([torch.full((8, 1, 6, 6), 0.75), torch.full((8, 1, 6, 6), 0.25)])
    y = torch.tensor([0] * 8 + [1] * 8)
    r = robust_evaluation(Quantised(), x, y, 0.27, pgd_steps=5, square_queries=50)
    assert r["clean"] == 1.0
    assert r["fgsm"] == r["pgd"] == 1.0  # no gradient: the gradient attacks see nothing
    assert r["square"] < 0.5  # the gradient-free attack flips most decisions
    assert r["ensemble"] <= r["square"]


def test_rate_coded_models_are_attacked_with_expectation_over_encodings():
    from spikebench.attacks.ensemble import Routed, is_stochastic

    torch.manual_seed(0)
    m = ConvNet("vgg-small", 1, 8, 3, DLIFParams(steps=4, threshold=0.05), steps=4,
                coding="bernoulli").eval()
    assert is_stochastic(m) and not is_stochastic(ConvNet("vgg-small", 1, 8, 3))
    x = torch.rand(5, 1, 8, 8)
    torch.manual_seed(1)
    averaged = Routed(m, "surrogate", eot=3)(x)
    torch.manual_seed(1)
    by_hand = torch.stack([m(x) for _ in range(3)]).mean(0)
    torch.testing.assert_close(averaged, by_hand)
    torch.manual_seed(2)
    assert not torch.equal(m(x), m(x))  # each call draws a new encoding


def test_the_reference_routes_are_its_19_in_its_own_parametrisation():
    from spikebench.attacks.ensemble import REFERENCE_ROUTES
    from spikebench.neurons.surrogate import spike_derivative

    assert len(REFERENCE_ROUTES) == len(set(REFERENCE_ROUTES)) == 19
    assert {"identity:1", "bptr", "proxy"} <= set(REFERENCE_ROUTES)
    for r in REFERENCE_ROUTES:
        parse_route(r)
    u = torch.linspace(-20, 20, 400_001, dtype=torch.float64)
    du = float(u[1] - u[0])
    for gamma in (0.25, 0.5, 1, 2, 3):  # max(0, gamma - |u|) / gamma^2: unit area
        d = spike_derivative(u, "pwl", gamma)
        assert float(d.sum()) * du == pytest.approx(1.0, rel=1e-3)
        assert float(d.max()) == pytest.approx(1 / gamma, rel=1e-6)
    for gamma in (0.25, 0.5, 1, 2, 4):  # 1[|u| < gamma / 2] / gamma: unit area
        assert float(spike_derivative(u, "rect", gamma).sum()) * du == pytest.approx(
            1.0, rel=1e-3)
    for gamma in (0.5, 1, 2):
        torch.testing.assert_close(spike_derivative(u, "exp_damped", gamma),
                                   0.3 * torch.exp(-gamma * u.abs()))
    assert torch.equal(spike_derivative(u, "identity", 1.0), torch.ones_like(u))


def test_best_iterate_pgd_is_never_weaker_than_its_last_iterate_and_restarts_help():
    """From the same start, keeping each sample's first fooling iterate can only lower the
    accuracy; more random starts can only lower it further (the same first start)."""
    from spikebench.attacks.ensemble import correct

    torch.manual_seed(0)
    snn = ConvNet("vgg-small", 1, 8, 3, DLIFParams(steps=3, threshold=0.2), steps=3).eval()
    x = torch.rand(40, 1, 8, 8)
    y = snn(x).argmax(-1)
    accs = {}
    for name, kw in {"last": {}, "best": {"judge": snn}, "restarts": {"judge": snn,
                                                                        "restarts": 3}}.items():
        adv = pgd(snn, x, y, 0.15, steps=4, generator=torch.Generator().manual_seed(5), **kw)
        assert (adv - x).abs().max() <= 0.15 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
        accs[name] = float(correct(snn, adv, y).float().mean())
    assert accs["restarts"] <= accs["best"] <= accs["last"]
    with pytest.raises(ValueError, match="restarts"):
        pgd(snn, x, y, 0.1, judge=snn, restarts=0)

"""The attack layer: FGSM against ART's on a plain ANN, the ANN counterpart against its
formula, clipping, EOT, and the ART attacks on a spiking model."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from art.attacks.evasion import FastGradientMethod
from torch import nn

from spikebench.attacks.art import (
    ANNCounterpart,
    Classifier,
    art_classifier,
    attack_accuracy,
    fgsm,
    predict,
)
from spikebench.datasets.encoders import Encoder
from spikebench.learning_rules.base import decision_logits
from spikebench.models import SpikingMLP


def plain_ann():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(2 * 5 * 5, 16), nn.ReLU(), nn.Linear(16, 3))


@pytest.mark.parametrize("eps", [0.01, 0.1])
def test_our_fgsm_equals_art_on_a_plain_ann(eps):
    model = plain_ann()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(32, 2, 5, 5, generator=g)
    y = torch.randint(0, 3, (32,), generator=g)
    ours = fgsm(model, x, y, eps, (0.0, 1.0))
    art = FastGradientMethod(art_classifier(model, x, (0.0, 1.0)), norm=np.inf, eps=eps)
    theirs = torch.from_numpy(art.generate(x.numpy(), y=y.numpy()))
    torch.testing.assert_close(ours, theirs)
    assert (ours - x).abs().max() <= eps + 1e-6
    assert F.cross_entropy(model(ours), y) > F.cross_entropy(model(x), y)


def snn(recurrent=False, seed=0):
    torch.manual_seed(seed)
    return SpikingMLP((2 * 5 * 5, 12, 3), recurrent=recurrent, weight_scale=4.0)


def frames(n=16, steps=6, seed=2):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, steps, 2, 5, 5, generator=g) < 0.3).float()
    return x, torch.randint(0, 3, (n,), generator=g)


def test_classifier_is_the_common_decision_on_batch_first_frames():
    model = snn()
    x, _ = frames()
    logits = Classifier(model, burn_in=2)(x)
    torch.testing.assert_close(logits, decision_logits(model(x.transpose(0, 1)), 2))
    # ART's 4-D view [B, T*P, H, W] of the same frames gives the same logits
    torch.testing.assert_close(Classifier(model, 2)(x.flatten(1, 2)), logits)
    with pytest.raises(ValueError, match="does not split"):
        Classifier(model)(torch.zeros(2, 7))


@pytest.mark.parametrize("cap", [None, 0.05])
@pytest.mark.parametrize("recurrent", [False, True])
def test_ann_counterpart_follows_its_formula(recurrent, cap):
    model = snn(recurrent).double()
    x, _ = frames()
    x = x.double()
    theta = model.params.threshold
    layer = model.hidden[0]
    h = torch.zeros(len(x), 12, dtype=torch.float64)
    y = torch.zeros(len(x), 3, dtype=torch.float64)
    ys = []
    for t in range(x.shape[1]):
        cur = x[:, t].flatten(1) @ layer.weight.t()
        if recurrent:
            cur = cur + h @ (layer.rec_weight * (1 - torch.eye(12, dtype=torch.float64))).t()
        h = torch.relu(cur / theta)
        if cap is not None:  # rates capped (the fidelity study's variant)
            h = torch.minimum(h, torch.tensor(cap, dtype=h.dtype))
        y = model.kappa * y + h @ model.readout.weight.t() + model.readout.bias
        ys.append(y)
    expected = torch.stack(ys)[1:].mean(0)
    ann = ANNCounterpart(model, burn_in=1, max_rate=cap)
    torch.testing.assert_close(ann(x), expected)
    if cap is not None:  # the cap binds here (else this case would test nothing)
        assert not torch.allclose(ANNCounterpart(model, burn_in=1)(x), expected)


def test_fgsm_on_the_counterpart_is_clipped_and_moves_the_snn():
    model = snn()
    x, y = frames(64)
    for source in (ANNCounterpart(model), Classifier(model)):
        adv = fgsm(source, x, y, 0.5, (0.0, 1.0))
        assert adv.min() >= 0 and adv.max() <= 1
        assert torch.all((adv - x).abs() <= 0.5 + 1e-6)
        assert not torch.equal(adv, x)
    same = attack_accuracy(Classifier(model), x, y, 0.0, "fgsm")
    assert same["acc"] == same["clean_acc"] and same["success_rate"] == 0
    clean = float((predict(Classifier(model), x) == y).float().mean())
    assert same["clean_acc"] == pytest.approx(clean)
    strong = attack_accuracy(Classifier(model), x, y, 1.0, "fgsm", clip=(0.0, 1.0))
    assert strong["acc"] < strong["clean_acc"]


def test_eot_averages_the_logits_of_several_encodings():
    model = snn()
    enc = Encoder("bernoulli", 6)
    images = torch.rand(8, 2, 5, 5)
    torch.manual_seed(5)
    draws = [decision_logits(model(enc(images))) for _ in range(4)]
    torch.manual_seed(5)
    torch.testing.assert_close(Classifier(model, encode=enc, eot=4)(images),
                               torch.stack(draws).mean(0))
    # the straight-through rate code passes gradients to the image
    images.requires_grad_(True)
    Classifier(model, encode=enc, eot=2)(images).sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


@pytest.mark.parametrize("attack", ["pgd", "square"])
def test_art_attacks_run_on_a_spiking_model_within_eps(attack):
    model = snn()
    x, y = frames(12)
    clf = Classifier(model)
    from spikebench.attacks.art import ATTACKS

    adv = ATTACKS.get(attack)(clf, x, y, 0.2, (0.0, 1.0))
    assert adv.shape == x.shape
    assert (adv - x).abs().max() <= 0.2 + 1e-5
    assert adv.min() >= 0 and adv.max() <= 1
    r = attack_accuracy(clf, x, y, 0.2, attack, clip=(0.0, 1.0))
    assert r["acc"] <= r["clean_acc"] + 1e-9

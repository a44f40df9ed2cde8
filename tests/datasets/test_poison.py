"""BadNets backdoor: where and when the trigger is, what poisoning changes, and ASR."""

import pytest
import torch

from spikebench.attacks.art import Classifier, predict
from spikebench.datasets import SampleData
from spikebench.datasets.poison import (
    TRIGGER_PIXELS,
    Backdoor,
    add_trigger,
    poison,
    random_pairs,
    triggered_source,
)
from spikebench.learning_rules import make_rule
from spikebench.models import SpikingMLP

SMALL = ((1, 1), (1, 3), (3, 1), (3, 3))  # a trigger for an 8 x 8 sensor


def test_trigger_sets_exactly_the_stated_pixels_at_every_step():
    x = torch.zeros(3, 7, 2, 34, 34, dtype=torch.uint8)
    out = add_trigger(x, TRIGGER_PIXELS)
    assert x.sum() == 0  # the input is not modified
    changed = out.nonzero()
    assert len(changed) == 3 * 7 * 2 * 4  # samples x steps x polarities x pixels
    assert {(int(c[4]), int(c[3])) for c in changed} == set(TRIGGER_PIXELS)  # (x, y)
    assert {int(c[1]) for c in changed} == set(range(7))  # every time step
    assert {int(c[2]) for c in changed} == {0, 1}
    with pytest.raises(ValueError, match="outside"):
        add_trigger(x, ((40, 1),))
    with pytest.raises(ValueError, match="event frames"):
        add_trigger(torch.zeros(3, 34, 34))


@pytest.mark.parametrize("polarity, channels", [("on", {1}), ("off", {0}), ("both", {0, 1})])
def test_trigger_polarity_and_period(polarity, channels):
    x = torch.zeros(2, 9, 2, 34, 34, dtype=torch.uint8)
    bd = Backdoor(0, 1, 0.5, polarity=polarity, period=4)
    out = triggered_source(SampleData(x, torch.zeros(2, dtype=torch.long), classes=10), bd).x
    changed = out.nonzero()
    assert {int(c[1]) for c in changed} == {0, 4, 8}  # every 4th step, from step 0
    assert {int(c[2]) for c in changed} == channels  # events' p = 1 is channel 1 (ON)
    assert len(changed) == 2 * 3 * len(channels) * 4
    for bad in ({"polarity": "up"}, {"period": 0}, {"period": 1.5}):
        with pytest.raises(ValueError, match="polarity|period"):
            Backdoor(0, 1, 0.5, **bad)


def toy(n, seed, sensor=8, steps=6):
    """Class c lights column c of an 8 x 8 sensor (plus noise)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    rate = torch.full((n, steps, 2, sensor, sensor), 0.02)
    for c in range(4):
        rate[y == c, :, :, :, 4 + c] = 0.5
    return SampleData((torch.rand(rate.shape, generator=g) < rate).to(torch.uint8), y, 4)


def test_poison_relabels_the_chosen_share_of_the_source_class_only():
    data = toy(200, 0)
    bd = Backdoor(source=1, target=2, rate=0.3, pixels=SMALL)
    poisoned, idx = poison(data, bd)
    assert len(idx) == round(0.3 * 50)
    assert torch.all(data.y[idx] == 1) and torch.all(poisoned.y[idx] == 2)
    rest = torch.ones(200, dtype=torch.bool)
    rest[idx] = False
    assert torch.equal(poisoned.x[rest], data.x[rest])
    assert torch.equal(poisoned.y[rest], data.y[rest])
    assert torch.all(poisoned.x[idx][..., 1, 1] == 1)
    assert torch.equal(poison(data, bd)[1], idx)  # seeded
    with pytest.raises(ValueError, match="differ"):
        Backdoor(source=1, target=1, rate=0.5)
    with pytest.raises(ValueError, match="class 7"):
        poison(data, Backdoor(source=7, target=1, rate=0.5))
    pairs = random_pairs(5, 10)
    assert len(set(pairs)) == 5 and all(s != t for s, t in pairs)


def train(data, epochs=12, seed=0):
    torch.manual_seed(seed)
    model = SpikingMLP((2 * 64, 32, 4), weight_scale=4.0)
    rule = make_rule("bptt")
    rule.prepare(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(data), generator=g).split(32):
            opt.zero_grad()
            rule.backward(model, data.x[idx].float().transpose(0, 1), data.y[idx])
            opt.step()
    return model


def asr(model, test, bd):
    trig = triggered_source(test, bd)
    return float((predict(Classifier(model), trig.x.float()) == bd.target).float().mean())


def test_asr_is_chance_untrained_and_high_after_heavy_poisoning():
    test = toy(200, 1)
    bd = Backdoor(source=0, target=3, rate=0.9, pixels=SMALL)
    # untrained: the trigger does not steer predictions; ASR equals the share of clean
    # source samples the random network already assigns to the target
    for seed in range(3):
        torch.manual_seed(seed)
        model = SpikingMLP((2 * 64, 32, 4), weight_scale=4.0)
        src = test.x[test.y == 0].float()
        base = float((predict(Classifier(model), src) == 3).float().mean())
        assert abs(asr(model, test, bd) - base) < 0.15
    poisoned, _ = poison(toy(400, 2), bd)
    model = train(poisoned)
    clean = float((predict(Classifier(model), test.x.float()) == test.y).float().mean())
    assert clean > 0.7  # still learns the task on the other classes
    assert asr(model, test, bd) > 0.8
    assert asr(train(toy(400, 2)), test, bd) < 0.3  # the same training without poison

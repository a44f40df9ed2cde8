"""HIRE-SNN's period schedule and crafted noise; AGC's pruning: the global target, the
per-layer ratios' ranking, and zeros that stay zero through fine-tuning and saving."""

import copy

import pytest
import torch

from spikebench.errors import ConfigError
from spikebench.models import ConvNet
from spikebench.neurons import DLIFParams
from spikebench.training.hire import HireSchedule, hire_step
from spikebench.training.prune import (
    Pruner,
    attention_guidance,
    attention_maps,
    compression_ratio,
    guided_loss,
    layer_densities,
    layer_importance,
    prunable,
)


def snn(steps=4, seed=0):
    torch.manual_seed(seed)
    return ConvNet("vgg-small", 1, 8, 3, DLIFParams(steps=steps, threshold=0.3), steps=steps)


@pytest.mark.parametrize("craft", ["free", "updated"])
def test_each_period_feeds_its_share_of_steps_of_its_own_variant(craft, monkeypatch):
    m = snn(steps=6)
    x = torch.rand(4, 1, 8, 8)
    y = torch.tensor([0, 1, 2, 0])
    seen, window = [], m.window

    def spy(inp, steps, state, t0, **kw):
        seen.append((inp.detach().clone(), steps, t0, state is None))
        return window(inp, steps, state, t0, **kw)

    monkeypatch.setattr(m, "window", spy)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    before = [p.detach().clone() for p in m.parameters()]
    loss, logits = hire_step(m, opt.step, x, y, HireSchedule(periods=3, eps=0.1, craft=craft))
    # each period's first window (with craft="updated" a second one per period takes the
    # input gradient with the updated weights, from the same membranes and variant)
    periods = list({s[2]: s for s in reversed(seen)}.values())[::-1]
    assert [(s[1], s[2], s[3]) for s in periods] == [(2, 0, True), (2, 2, False),
                                                      (2, 4, False)]
    assert len(seen) == (3 if craft == "free" else 5)
    assert torch.equal(seen[0][0], x)  # the first period sees the image itself
    variants = [s[0] for s in periods]
    for v in variants[1:]:
        assert (v - x).abs().max() <= 0.1 + 1e-7 and v.min() >= 0 and v.max() <= 1
        assert not torch.equal(v, x)
    assert not torch.equal(variants[1], variants[2])
    assert logits.shape == (4, 3) and loss > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, m.parameters(), strict=True))
    with pytest.raises(ConfigError, match="multiple"):
        hire_step(snn(steps=4), opt.step, x, y, HireSchedule(periods=3))


def tiny_teacher_student():
    teacher = snn(seed=1).eval()
    student = snn(seed=1)
    student.load_state_dict(teacher.state_dict())
    return teacher, student


def test_pruning_meets_the_global_target_and_follows_the_importance_ranking():
    teacher, student = tiny_teacher_student()
    x, y = torch.rand(16, 1, 8, 8), torch.arange(16) % 3
    imp = layer_importance(student, [(x, y)])
    sizes = [m.weight.numel() for m in prunable(student)]
    for target in (0.4, 0.1, 1 / 30):
        dens = layer_densities(imp, sizes, target)
        kept = sum(d * n for d, n in zip(dens, sizes, strict=True))
        assert kept / sum(sizes) == pytest.approx(target, abs=1e-9)
        order = sorted(range(len(imp)), key=lambda k: imp[k])
        assert all(dens[a] <= dens[b] + 1e-12 for a, b in zip(order, order[1:], strict=False))
        pruner = Pruner(snn(seed=1), dens)
        assert abs(pruner.density() - target) <= 0.005
    assert layer_densities([1.0, 1.0], [10, 10], 1.0) == [1.0, 1.0]


def test_pruned_weights_stay_zero_through_fine_tuning_and_saving(tmp_path):
    teacher, student = tiny_teacher_student()
    pruner = Pruner(student, [0.2] * len(prunable(student)))
    zeros = [(m.weight == 0).clone() for m in prunable(student)]
    assert compression_ratio(student) == pytest.approx(5.0, rel=0.05)
    opt = torch.optim.SGD(student.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-3)
    x, y = torch.rand(8, 1, 8, 8), torch.arange(8) % 3
    for _ in range(3):
        opt.zero_grad()
        loss, _ = guided_loss(student, teacher, x, y, beta=10.0)
        loss.backward()
        opt.step()
        pruner.apply()
    torch.save(student.state_dict(), tmp_path / "m.pt")
    back = snn(seed=2)
    back.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    for z, m in zip(zeros, prunable(back), strict=True):
        assert torch.all(m.weight[z] == 0)
        assert (m.weight[~z] != 0).any()


def test_attention_maps_are_unit_norm_per_conv_activation():
    m = snn().eval()
    logits, maps = attention_maps(m, torch.rand(5, 1, 8, 8))
    assert logits.shape == (5, 3) and len(maps) == 2  # two convs in vgg-small
    for q in maps:
        norms = q.norm(dim=1)
        assert torch.all((norms - 1).abs() < 1e-5) or torch.all(norms <= 1 + 1e-5)


def test_layer_importance_is_the_ce_saliency_in_eval_mode():
    """The student is its teacher's copy, so L_AT is exactly 0 in eval mode: the importance
    is |W dCE/dW| (float64, against a plain computation), whatever mode the model is in."""
    teacher, student = tiny_teacher_student()
    teacher, student = teacher.double(), student.double()
    x, y = torch.rand(16, 1, 8, 8, dtype=torch.float64), torch.arange(16) % 3
    student.eval()
    assert float(guided_loss(student, teacher, x, y, beta=10.0)[0]
                 - torch.nn.functional.cross_entropy(student(x), y)) == 0.0
    student.train()
    imp = layer_importance(student, [(x, y)])
    assert student.training  # its mode is left as it was
    ref = copy.deepcopy(student).eval()
    torch.nn.functional.cross_entropy(ref(x), y).backward()
    expect = [float((m.weight * m.weight.grad).abs().mean()) for m in prunable(ref)]
    assert imp == pytest.approx(expect, rel=1e-12)


def test_hire_with_attention_guidance_uses_the_periods_own_spikes_and_ce_noise(monkeypatch):
    """AGC + HIRE: no extra forward of the student (its maps come from the period's spikes),
    and the crafted noise follows the CE alone (the same variants as without guidance)."""
    teacher, _ = tiny_teacher_student()
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    variants = {}
    for guided in (False, True):
        m = snn(seed=1)
        seen = []

        def spy(inp, *a, seen=seen, window=m.window, **k):
            seen.append(inp.detach())
            return window(inp, *a, **k)

        monkeypatch.setattr(m, "window", spy)
        monkeypatch.setattr(m, "forward", lambda *a, **k: pytest.fail("a full forward"))
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        extra = attention_guidance(teacher, 10.0) if guided else None
        loss, _ = hire_step(m, opt.step, x, y, HireSchedule(periods=2, eps=0.1),
                            extra_loss=extra)
        assert loss > 0 and len(seen) == 2
        variants[guided] = seen[1]
    torch.testing.assert_close(variants[True], variants[False], rtol=0, atol=0)

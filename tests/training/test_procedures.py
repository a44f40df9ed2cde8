"""Conformance of every training procedure (``training.PROCEDURES``): each is a
``learning_rules.Learner`` that the one ``fit`` loop trains a conv SNN with, and each is
checked against an independent computation in float64 (plain autograd of its loss, or an
exact special case)."""

import copy

import pytest
import torch
import torch.nn.functional as F

from spikebench.engine.executor import Training, fit, learner_step, read_json
from spikebench.learning_rules import Learner
from spikebench.models import ConvNet
from spikebench.neurons import DLIFParams
from spikebench.training import PROCEDURES, Guided, Hire, Objective, Procedure
from spikebench.training.hire import HireSchedule
from spikebench.training.prune import Pruner, guided_loss, prunable


def snn(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return ConvNet("vgg-small", 1, 8, 3, DLIFParams(steps=4, threshold=0.3), steps=4).to(dtype)


def batch(n=8, dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 8, 8, generator=g).to(dtype), torch.arange(n) % 3


def _guided(model):
    teacher = copy.deepcopy(model).eval()
    pruner = Pruner(model, [0.5] * len(prunable(model)))
    return Guided(teacher, 10.0, pruner.apply)


# one example per registry entry (a new entry without one fails the first test)
EXAMPLES = {
    "objective": lambda model: Objective("mix", "fgsm", eps=0.05, rho=1.0),
    "hire": lambda model: Hire(HireSchedule(periods=2, eps=0.05)),
    "agc": _guided,
}


def test_every_registered_procedure_has_an_example():
    assert set(EXAMPLES) == set(PROCEDURES.names())
    for name, cls in PROCEDURES.items():
        assert issubclass(cls, Procedure) and cls.name == name


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_fit_trains_a_conv_snn_with_each_procedure(name, tmp_path):
    model = snn()
    procedure = EXAMPLES[name](model)
    assert isinstance(procedure, Learner)
    before = [p.detach().clone() for p in model.parameters()]
    x, y = batch(16)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    out = procedure.backward(model, x[:8], y[:8], update=opt.step)
    assert out.count == 8 and 0 <= out.correct <= 8 and out.loss > 0
    if not out.updated:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())

    tr = Training(model, opt, 2, lambda epoch: [(x[:8], y[:8]), (x[8:], y[8:])],
                  learner_step(procedure, model, opt.step), label=name)
    result = fit(tmp_path, {"p": name}, {"p": name}, lambda: tr, progress=False)
    assert result.status == "done"
    acc = [m["value"] for m in read_json(tmp_path / "metrics.json", "metrics") if m["metric"] ==
           "train_acc"]
    assert len(acc) == 2 and all(0 <= a <= 1 for a in acc)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert isinstance(procedure.config(), dict)


@pytest.mark.parametrize("name", ["hire", "agc"])
def test_a_procedure_that_steps_within_a_batch_needs_the_update(name):
    model = snn()
    with pytest.raises(ValueError, match="update"):
        EXAMPLES[name](model).backward(model, *batch())


def test_plain_objective_is_the_cross_entropy_gradient():
    model, (x, y) = snn(dtype=torch.float64), batch(dtype=torch.float64)
    out = Objective().backward(model, x, y)
    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    logits = model(x)
    F.cross_entropy(logits, y).backward()
    for a, p in zip(got, model.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad, rtol=1e-12, atol=0)
    assert out.correct == int((logits.argmax(-1) == y).sum())
    # chi = 1 leaves only the clean term: the same gradient whatever the perturbation
    Objective("mix", "gaussian", chi=1.0).backward(model, x, y)
    for a, p in zip(got, model.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad, rtol=1e-12, atol=0)


def test_one_period_of_hire_is_a_plain_step():
    a, b, (x, y) = snn(dtype=torch.float64), snn(dtype=torch.float64), batch(dtype=torch.float64)
    opt_a = torch.optim.SGD(a.parameters(), lr=0.1)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.1)
    out = Hire(HireSchedule(periods=1)).backward(a, x, y, update=opt_a.step)
    assert out.updated
    Objective().backward(b, x, y)
    opt_b.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=0)


def test_guided_step_is_sgd_on_the_guided_loss_then_the_masks():
    model, (x, y) = snn(dtype=torch.float64), batch(dtype=torch.float64)
    ref = copy.deepcopy(model)
    procedure = _guided(model)
    ref_pruner = Pruner(ref, [0.5] * len(prunable(ref)))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = procedure.backward(model, x, y, update=opt.step)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    loss, _ = guided_loss(ref, procedure.teacher, x, y, 10.0)
    loss.backward()
    ref_opt.step()
    ref_pruner.apply()
    assert out.updated and out.loss == pytest.approx(loss.item(), rel=1e-12)
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=0)
    assert all((m.weight == 0).any() for m in prunable(model))

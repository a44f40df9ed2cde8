"""Devices: the spec's device field, --device, and no tensor on an implicit device (every
rule's step runs with torch's default device set to "meta", where any tensor created
without an explicit device would fail to mix with the CPU ones)."""

from dataclasses import replace

import pytest
import torch

from spikebench.cli import main
from spikebench.engine import ExperimentSpec, load_trained, train_run
from spikebench.engine.train import evaluate, resolve_device
from spikebench.errors import ConfigError
from spikebench.learning_rules import make_rule
from spikebench.models import SpikingMLP
from spikebench.sparse import EventBatch
from tests.engine.test_harness import SPEC, toy_data

RULES = [("bptt", {}), ("bptt", {"fast": False}), ("eprop", {"chunk": 1}),
         ("eprop", {"chunk": 7, "carry": "trace"}), ("eprop", {"chunk": 7, "carry": "replay"}),
         ("decolle", {}), ("decolle", {"chunk": 1})]


@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize(("rule", "options"), RULES)
def test_no_tensor_is_created_on_an_implicit_device(rule, options, recurrent):
    torch.manual_seed(0)
    model = SpikingMLP((20, 8, 6, 3), recurrent=recurrent, weight_scale=4.0)
    x = (torch.rand(30, 5, 20) < 0.3).float()
    y = torch.randint(0, 3, (5,))
    r = make_rule(rule, **options)
    r.prepare(model)
    for inp in (x, EventBatch.from_dense(x)):
        torch.set_default_device("meta")
        try:
            out = r.backward(model, inp, y)
        finally:
            torch.set_default_device("cpu")
        assert out.count == 5
        assert all(p.grad.device.type == "cpu" for p in model.parameters())


def test_spec_device_field_and_its_id():
    spec = ExperimentSpec(seed=1)
    assert spec.device == "cpu" and replace(spec, device="cpu").run_id == spec.run_id
    assert replace(spec, device="cuda").run_id != spec.run_id  # float outcomes differ
    assert ExperimentSpec.from_dict(replace(spec, device="cuda:1").to_dict()).device == "cuda:1"
    for bad in ("gpu", "auto", "cuda:x", ""):
        with pytest.raises(ConfigError, match="device"):
            ExperimentSpec(device=bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a CPU-only torch")
def test_cuda_without_a_gpu_is_a_clear_error(tmp_path, capsys):
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="sees no CUDA"):
        resolve_device("cuda")
    assert main(["run", "--device", "cuda", "--out", str(tmp_path / "out")]) == 2
    assert "sees no CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # checked before anything is made


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("rule", ["bptt", "eprop", "decolle"])
def test_training_on_cuda_and_the_checkpoint_loads_on_the_cpu(tmp_path, rule):
    train, test = toy_data(96, 0), toy_data(48, 1)
    spec = replace(SPEC, rule=rule, device="cuda", epochs=3)
    res = train_run(spec, tmp_path / "run", train, test, progress=False)
    assert res.status == "done"
    model, _, loaded = load_trained(tmp_path / "run")  # onto the CPU
    assert next(model.parameters()).device.type == "cpu" and loaded.device == "cuda"
    assert evaluate(model, test, loaded)["acc"] > 0.9


# -- the conv and hybrid models, their training procedures and the attacks -----------------
def _on_meta(fn):
    """``fn()`` with torch's default device "meta": a tensor made without an explicit device
    lands there and fails to mix with the CPU ones."""
    torch.set_default_device("meta")
    try:
        return fn()
    finally:
        torch.set_default_device("cpu")


def _conv_snn(coding="direct", dynamic=False):
    from spikebench.models import ConvNet
    from spikebench.neurons import DLIFParams

    torch.manual_seed(0)
    return ConvNet("vgg-small", 1, 8, 3, DLIFParams(steps=3, threshold=0.3, dynamic=dynamic),
                   steps=3, coding=coding)


IMAGES = (torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 0]))


@pytest.fixture
def art_on_its_own_device(monkeypatch):
    """ART's estimators are told their device (``device_type``) and make their own tensors
    (its DataLoader) on torch's default one: inside ART the default is the CPU again, so what
    is checked is our code around it."""
    from spikebench.attacks.art import ARTAttack

    call = ARTAttack.__call__

    def on_cpu(self, *args):
        torch.set_default_device("cpu")
        try:
            return call(self, *args)
        finally:
            torch.set_default_device("meta")

    monkeypatch.setattr(ARTAttack, "__call__", on_cpu)


@pytest.mark.parametrize("objective", [
    {"kind": "mix"}, {"kind": "mix", "perturbation": "gaussian", "rho": 1.0},
    {"kind": "mix", "perturbation": "fgsm", "rho": 1.0}, {"kind": "pgd-at", "steps": 2},
    {"kind": "trades", "steps": 2}, {"kind": "finetune", "beta": 2.0}])
def test_robust_objectives_create_no_tensor_on_an_implicit_device(objective):
    from spikebench.training.robust import Objective, objective_loss

    model, (x, y) = _conv_snn(dynamic=True), IMAGES
    loss, logits = _on_meta(lambda: objective_loss(model, x, y, Objective(**objective)))
    loss.backward()
    assert loss.device.type == "cpu" and logits.shape == (4, 3)


@pytest.mark.parametrize("coding", ["direct", "bernoulli"])
def test_hire_agc_and_conversion_create_no_tensor_on_an_implicit_device(coding):
    from spikebench.models import ConvNet
    from spikebench.neurons import DLIFParams
    from spikebench.training.conversion import convert_conv
    from spikebench.training.hire import HireSchedule, hire_step
    from spikebench.training.prune import Pruner, guided_loss, layer_importance

    student, teacher, (x, y) = _conv_snn(coding), _conv_snn(coding), IMAGES
    opt = torch.optim.SGD(student.parameters(), lr=0.01)
    loss, _ = _on_meta(lambda: hire_step(student, opt.step, x, y, HireSchedule(periods=3)))
    imp = _on_meta(lambda: layer_importance(student, [(x, y)]))
    pruner = _on_meta(lambda: Pruner(student, [0.5] * len(imp)))
    _on_meta(pruner.apply)
    guided, _ = _on_meta(lambda: guided_loss(student, teacher, x, y, 10.0))
    torch.manual_seed(0)
    ann = ConvNet("vgg-small", 1, 8, 3)
    snn = _on_meta(lambda: convert_conv(ann, x, DLIFParams(leak=1.0, reset="zero", steps=3,
                                                           learn_threshold=True), 3))
    assert all(p.device.type == "cpu" for p in snn.parameters())
    assert float(loss) >= 0 and float(guided) >= 0 and len(imp) == len(pruner.masks)


@pytest.mark.parametrize("coding", ["direct", "bernoulli"])
def test_attack_ensemble_and_workload_create_no_tensor_on_an_implicit_device(
        coding, art_on_its_own_device):
    from spikebench.attacks.ensemble import robust_evaluation
    from spikebench.metrics.efficiency import conv_workload

    model, (x, y) = _conv_snn(coding).eval(), IMAGES
    from spikebench.attacks.diagnostics import masking_checks

    out = _on_meta(lambda: robust_evaluation(model, x, y, 0.1, routes=("surrogate", "bptr"),
                                             pgd_steps=2, square_queries=2, eot=2,
                                             pgd_restarts=2, apgd_steps=2))
    assert 0 <= out["ensemble"] <= min(out["clean"], out["fgsm"], out["square"],
                                       out["apgd-ce"])
    checks = _on_meta(lambda: masking_checks(model, x, y, 0.1, 2, eot=2))
    assert 0 <= checks["vanishing"] <= 1
    work = _on_meta(lambda: conv_workload(model, x))
    assert work["spikes"] >= 0


def test_hybrid_head_and_its_attacks_create_no_tensor_on_an_implicit_device(
        art_on_its_own_device):
    from spikebench.attacks.art import attack_accuracy
    from spikebench.metrics.efficiency import hybrid_workload
    from spikebench.models.hybrid import HybridNet, SpikingHead, build_encoder

    torch.manual_seed(0)
    encoder, info, size = build_encoder("lenet5", 3)
    head = SpikingHead(encoder.feature_dim, 3, "lif", steps=3)
    net = HybridNet(encoder, info, size, head, eot=2).eval()
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 0])
    for attack in ("fgsm", "deepfool", "square"):
        got = _on_meta(lambda a=attack: attack_accuracy(net, x, y, 0.05, a))
        assert 0 <= got["acc"] <= 1
    plain = HybridNet(encoder, info, size).eval()
    work = _on_meta(lambda: hybrid_workload(plain, {"default": None, "lif": head}, x))
    assert work["lif"]["synops_ac"] >= 0


def test_every_suite_takes_device_and_its_id_covers_it_off_the_cpu():
    from spikebench.suites import SUITES, SuiteOptions

    for name in ("hybrid-lenet", "robust", "compress-robust"):
        suite = SUITES.get(name)
        assert "device" in suite.kind.options, name
        specs, _ = suite.specs(SuiteOptions(device="cpu"))
        cuda, _ = suite.specs(SuiteOptions(device="cuda"))
        default, _ = suite.specs(SuiteOptions())
        assert [s.run_id for s in specs] == [s.run_id for s in default]  # ids kept
        assert all(c.device == "cuda" and c.run_id != s.run_id
                   for c, s in zip(cuda, specs, strict=True))
        with pytest.raises(ConfigError, match="device"):
            type(specs[0])(device="gpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("suite", ["hybrid-lenet", "robust", "compress-robust"])
def test_conv_and_hybrid_suites_train_and_attack_on_cuda(tmp_path, suite):
    from spikebench.suites import SuiteOptions, run_suite

    opts = SuiteOptions(device="cuda", epochs=1, n_train=64, n_test=32, n_eval=16,
                        n_steps=2, progress=False)
    result = run_suite(suite, tmp_path / "out", opts)
    assert [r.status for r in result.runs] == ["done"] * len(result.runs)
    assert set(result.table.status) == {"done"}

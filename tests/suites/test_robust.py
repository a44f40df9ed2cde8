"""The robust suite end to end on a few real Fashion-MNIST images (or the embedded digits),
its run identities, and its resume without retraining or re-attacking."""

from dataclasses import replace

import pandas as pd
import pytest
import torch

import spikebench.suites.robust as robust_mod
from spikebench.engine.results import COLUMNS
from spikebench.errors import ConfigError
from spikebench.registry import UnknownNameError
from spikebench.suites import SUITES, SuiteOptions, run_suite
from spikebench.suites.robust import METHODS, RobustSpec, robust_methods, robust_specs

ATTACKS = ("fgsm", "pgd", "square", "gaussian")


def test_robust_suite_end_to_end_and_resumes(tmp_path, monkeypatch):
    opts = SuiteOptions(n_train=192, n_test=40, epochs=1, n_eval=10, n_steps=2,
                        progress=False)
    result = run_suite("robust", tmp_path / "out", opts, runs_dir=tmp_path / "runs")
    assert [r.status for r in result.runs] == ["done"] * len(robust_methods())
    table = pd.read_csv(tmp_path / "out" / "robust.csv")
    assert list(table.model) == ["vanilla", "at", "gauss", "dlif-gauss", "dlif-at", "ann",
                                 "converted", "conversion"]
    for col in ("clean", "ensemble", *ATTACKS, "spikes_per_image"):
        assert table[col].notna().all(), col
    for col in ("fgsm", "pgd", "square", "clean"):  # the per-sample ensemble is the worst
        assert (table.ensemble <= table[col] + 1e-12).all(), col
    routes = [c for c in table.columns if c.startswith("pgd[")]
    assert len(routes) == 8 and (table.ensemble <= table[routes].min(axis=1) + 1e-12).all()
    assert (table.set_index("model").loc["ann", "spikes_per_image"] == 0)
    assert (table.set_index("model").drop("ann").spikes_per_image > 0).all()
    tidy = pd.read_csv(tmp_path / "out" / "results.csv")
    assert {"test_acc", "train_loss", "robust_ensemble", "robust_pgd@0.05"} <= set(tidy.metric)
    assert list(tidy.columns[:len(COLUMNS)]) == COLUMNS
    conv = tidy[tidy.method == "conversion"]
    assert set(conv.stage) == {"ann", "converted", "conversion"}
    assert {r.split("/")[-1] for r in conv.run_id} == {"ann", "finetune"}
    gains = pd.read_csv(tmp_path / "out" / "dlif_gains.csv")
    assert set(gains.model) == {"gauss", "dlif-gauss", "dlif-at"} and set(gains.t) == {0, 1}
    report = (tmp_path / "out" / "report.md").read_text()
    for needle in ("## Accuracy (%) under attack", "## Findings", "MS-MPPD beyond noise",
                   "strongest route (PGD %)",
                   "Conversion", "a_l[t]", "40 test images", "T = 2",
                   "Neurons in force: vanilla, at: lif (leak 0.99", "reset zero"):
        assert needle in report, needle
    for png in ("robust_eps.png", "dlif_gains.png"):
        assert (tmp_path / "out" / png).stat().st_size > 0

    def boom(*a, **k):
        raise AssertionError("recomputed")

    monkeypatch.setattr(robust_mod, "robust_evaluation", boom)
    monkeypatch.setattr(robust_mod, "evaluate_protocol", boom)
    monkeypatch.setattr(robust_mod, "learner_step", boom)
    again = run_suite("robust", tmp_path / "out", opts, runs_dir=tmp_path / "runs")
    assert all(r.skipped for r in again.runs)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "robust.csv"), table)


def test_the_baselines_train_at_reg_and_a_mart_conversion_end_to_end(tmp_path):
    """AT+Reg and the conversion from a MART ANN (robust-baselines' own methods, in a
    two-method suite of the same kind to keep the test short), the conversion's three
    models under their own names, every one attacked and reported."""
    from spikebench.suites.base import Suite
    from spikebench.suites.robust import RobustKind

    baselines, _ = SUITES.get("robust-baselines").specs(SuiteOptions(progress=False))
    assert [s.method for s in baselines] == ["dlif-at", "dlif-at-reg", "conversion",
                                             "conversion-trades", "conversion-mart"]
    assert [s.ann_objective for s in baselines[2:]] == ["pgd-at", "trades", "mart"]
    SUITES.register("test-baselines", Suite("test-baselines", "AT+Reg and MART conversion",
                                            RobustKind(methods=("dlif-at-reg",
                                                                "conversion-mart"))))
    try:
        opts = SuiteOptions(n_train=96, n_test=20, epochs=1, n_eval=6, n_steps=2,
                            progress=False)
        result = run_suite("test-baselines", tmp_path / "out", opts,
                           runs_dir=tmp_path / "runs")
    finally:
        SUITES.unregister("test-baselines")
    assert [r.status for r in result.runs] == ["done"] * 2
    table = pd.read_csv(tmp_path / "out" / "robust.csv")
    assert list(table.model) == ["dlif-at-reg", "conversion-mart-ann",
                                 "conversion-mart-converted", "conversion-mart"]
    assert table.ensemble.notna().all() and (table.ensemble <= table.clean + 1e-12).all()
    tidy = pd.read_csv(tmp_path / "out" / "results.csv")
    mart = tidy[tidy.method == "conversion-mart"]
    assert set(mart.stage) == {"ann", "converted", "conversion"}
    assert set(mart[mart.stage == "ann"].neuron) == {"none"}
    by = {r.spec.method: r.spec for r in result.runs}
    assert by["dlif-at-reg"].weight_decay == 0 and by["conversion-mart"].ann_objective == "mart"
    report = (tmp_path / "out" / "report.md").read_text()
    for needle in ("Conversion (conversion-mart)", "MART ANN (beta 4)", "AT+Reg"):
        assert needle in report, needle


def test_run_ids_cover_what_trains_and_nothing_else():
    base = RobustSpec(method="vanilla")
    assert replace(base, eps=0.2, n_attack=7, routes=("bptr",)).run_id == base.run_id
    assert replace(base, sigma=0.3, rho=0.0).run_id == base.run_id  # vanilla uses neither
    assert replace(base, epochs=9).run_id != base.run_id
    assert replace(base, data_dir="/elsewhere").run_id != base.run_id
    gauss = RobustSpec(method="dlif-gauss")
    assert replace(gauss, sigma=0.3).run_id != gauss.run_id
    assert replace(gauss, rho=0.5).run_id != gauss.run_id
    conv = RobustSpec(method="conversion")
    assert replace(conv, finetune_beta=1.0).run_id != conv.run_id
    assert len({RobustSpec(method=m).run_id for m in METHODS.names()}) == len(METHODS.names())


def test_bad_robust_settings_are_refused():
    with pytest.raises(UnknownNameError, match="robust method"):
        RobustSpec(method="bogus")
    with pytest.raises(ConfigError, match="route"):
        RobustSpec(routes=("surrogate", "wobbly:1"))
    with pytest.raises(ConfigError, match="ann_objective"):
        RobustSpec(ann_objective="madry")
    with pytest.raises(ConfigError, match="cutout"):
        RobustSpec(cutout=-1)
    with pytest.raises(ConfigError, match="does not use --rules"):
        run_suite("robust", "/nonexistent", SuiteOptions(rules=["bptt"], progress=False))


def test_specs_follow_the_options():
    specs, _ = robust_specs("robust", SuiteOptions(epochs=6, n_steps=8, seeds=[0, 1],
                                                   n_eval=50, progress=False))
    assert len(specs) == 2 * len(robust_methods())
    assert {(s.epochs, s.ann_epochs, s.finetune_epochs, s.steps, s.n_attack)
            for s in specs} == {(6, 6, 3, 8, 50)}
    paper, _ = robust_specs("robust", SuiteOptions(paper=True, data_dir="/data/cifar10",
                                                   progress=False))
    assert {(s.dataset, s.arch, s.steps) for s in paper} == {("cifar10", "vgg11-ref", 8)}
    assert paper[0].eps == pytest.approx(8 / 255)


@pytest.mark.parametrize("suite", ["robust", "compress-robust"])
def test_the_conv_suites_take_one_conv_arch(suite):
    from spikebench.suites.compress import compress_specs

    build = robust_specs if suite == "robust" else compress_specs
    specs, _ = build(suite, SuiteOptions(archs=["vgg16"], paper=True, data_dir="/d",
                                         progress=False))
    assert {s.arch for s in specs} == {"vgg16"}  # --archs wins over --paper's VGG-11
    specs, _ = build(suite, SuiteOptions(progress=False))
    assert {s.arch for s in specs} == {"vgg-small"}
    with pytest.raises(ConfigError, match="one conv net per invocation"):
        build(suite, SuiteOptions(archs=["vgg5", "vgg11"], progress=False))
    with pytest.raises(ConfigError, match="ff is not one.*vgg-small"):
        build(suite, SuiteOptions(archs=["ff"], progress=False))
    with pytest.raises(ConfigError, match="unknown arch 'wrn16'.*resnet12"):
        SuiteOptions(archs=["wrn16"])


def test_a_residual_net_runs_every_method_but_conversion_and_says_so():
    specs, notes = robust_specs("robust", SuiteOptions(archs=["resnet12"], progress=False))
    methods = {s.method for s in specs}
    converting = {m for m in robust_methods() if METHODS.get(m).neuron == "conversion"}
    assert converting and not methods & converting
    assert methods == set(robust_methods()) - converting
    assert any("conversion" in n and "resnet12" in n for n in notes)


def test_the_ablation_suite_varies_rho_at_a_fixed_neuron_and_shares_robusts_runs():
    from spikebench.suites.robust import build, snn_objective
    from spikebench.suites.robust_ablation import ABLATION

    ablation, _ = SUITES.get("robust-ablation").specs(SuiteOptions(progress=False))
    robust, _ = SUITES.get("robust").specs(SuiteOptions(progress=False))
    assert [s.method for s in ablation] == list(ABLATION)
    assert not {s.method for s in robust} & {m for m in ABLATION if METHODS.get(m).ablation}
    shared = {s.run_id for s in ablation} & {s.run_id for s in robust}
    assert len(shared) == 4  # at, gauss, dlif-gauss, dlif-at: trained once for both
    pairs = {(METHODS.get(m).neuron, METHODS.get(m).objective, METHODS.get(m).rho)
             for m in ABLATION}
    assert pairs == {(n, o, r) for n in ("lif", "dlif") for o in ("fgsm", "gaussian")
                     for r in (False, True)}
    # MS-MPPD acts on a LIF network too: rho 1 changes the gradient of the same batch
    spec = RobustSpec(method="lif-mppd-at", arch="vgg-small", steps=2)
    x, y = torch.rand(6, 1, 28, 28), torch.arange(6) % 10
    grads = []
    for method in ("at", "lif-mppd-at"):
        torch.manual_seed(0)
        net = build(spec, (1, 28), 10, "lif")
        torch.manual_seed(1)
        snn_objective(spec, METHODS.get(method)).backward(net, x, y)
        grads.append(net.body[0].weight.grad.clone())
    assert not torch.equal(grads[0], grads[1])


def test_augmentation_is_in_the_id_only_where_on():
    assert RobustSpec(augment=True).run_id != RobustSpec().run_id
    assert "augment" not in RobustSpec().identity() and RobustSpec(augment=True).identity()[
        "augment"] is True
    paper, _ = robust_specs("robust", SuiteOptions(paper=True, progress=False))
    assert all(s.augment for s in paper)


def test_the_at_reg_finding_calls_a_difference_by_two_standard_errors():
    from spikebench.suites.robust_report import findings

    def frame(reg_ensemble):
        rows = [{"model": m, "method": m, "clean": 0.8, "fgsm": 0.5, "pgd": 0.4,
                 "ensemble": e, "square": 0.6} for m, e in
                (("dlif-at", 0.30), ("dlif-at-reg", reg_ensemble))]
        return pd.DataFrame(rows)

    [up] = [f for f in findings(frame(0.45), 300) if "AT+Reg" in f]
    [same] = [f for f in findings(frame(0.32), 300) if "AT+Reg" in f]
    assert "raises" in up and "30.0 -> 45.0" in up and "does not change" in same


def test_the_converted_snn_is_made_once_and_read_back_equal(tmp_path, monkeypatch):
    from spikebench.models import ConvNet
    from spikebench.suites.robust import CONVERTED, converted

    spec = RobustSpec(method="conversion", n_calib=32, calib_steps=6)
    torch.manual_seed(0)
    ann = ConvNet("vgg-small", 1, 28, 10).eval()
    train = (torch.rand(40, 1, 28, 28), torch.zeros(40, dtype=torch.long), 10)
    first = converted(spec, ann, train, tmp_path)
    assert (tmp_path / CONVERTED).is_file()
    monkeypatch.setattr(robust_mod, "convert_conv", lambda *a, **k: 1 / 0)
    again = converted(spec, ann, train, tmp_path)
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(first(x), again(x))
    assert [float(n.threshold()) for n in first.neurons()] == [
        float(n.threshold()) for n in again.neurons()]
    with torch.no_grad():  # another ANN (retrained): made again, not read back
        ann.readout.weight.mul_(2)
    with pytest.raises(ZeroDivisionError):
        converted(spec, ann, train, tmp_path)

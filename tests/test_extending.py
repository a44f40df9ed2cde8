"""Adding a rule, a data set, a study, a suite and a neuron is one definition plus one
registry line each; here all are defined in the test only and run end to end through the
one pipeline (the neuron in an MLP trained by a suite, a conv SNN and a spiking head)."""

from dataclasses import dataclass
from typing import NamedTuple

import pandas as pd
import pytest
import torch

from spikebench.datasets import DATASETS, DatasetInfo, SampleData
from spikebench.errors import ConfigError
from spikebench.learning_rules import RULES, LearningRule, StepOutput, objective
from spikebench.learning_rules.base import count_correct
from spikebench.metrics.efficiency import conv_workload
from spikebench.neurons import NEURONS, Neuron, NeuronDynamics
from spikebench.neurons.surrogate import spike
from spikebench.registry import UnknownNameError
from spikebench.studies import STUDIES, StudyOutput
from spikebench.suites import SuiteOptions, run_suite
from spikebench.suites.base import SUITES, Suite
from spikebench.suites.locality import SNNKind, locality_grid
from spikebench.suites.robust import METHODS, Method, RobustSpec, build, snn_objective


class ReadoutOnly(LearningRule):
    """Trains the readout only (an extreme of locality): hidden weights get zero gradients."""

    name = "readout-only"

    def backward(self, model, x, y, update=None) -> StepOutput:
        model.zero_grad(set_to_none=True)
        with torch.no_grad():
            _, spikes = model(x, record=True)
        state_y = torch.zeros(x.shape[1], model.sizes[-1])
        outs = []
        for s_t in spikes[-1]:
            state_y = model.readout.step(s_t, state_y)
            outs.append(state_y)
        out = torch.stack(outs)
        loss = objective(out, y, self.burn_in, self.loss)
        loss.backward()
        for p in model.parameters():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        correct, count = count_correct(out.detach(), y, self.burn_in)
        return StepOutput(loss.item(), out.detach(), correct, count)


def toy_events(split, root, opts):
    g = torch.Generator().manual_seed(0 if split == "train" else 1)
    n, steps = 40, opts.get("n_steps", 6)
    y = torch.arange(n) % 10
    x = (torch.rand(n, steps, 2, 34, 34, generator=g) < 0.05).to(torch.uint8)
    for k in range(n):  # a class-dependent bar
        x[k, :, :, 3 * int(y[k]), :] = 1
    return SampleData(x, y, classes=10)


def count_study(ctx) -> StudyOutput:
    done = len(ctx.done)
    return StudyOutput(["## Count", "", f"{done} finished model(s).", ""],
                       {"count": pd.DataFrame([{"models": done}])})


@pytest.fixture()
def extensions():
    RULES.register("readout-only", ReadoutOnly)
    DATASETS.register("toy-events", DatasetInfo(
        "toy-events", "40 random event samples with a class bar", preset="nmnist",
        how_to_obtain="defined in the test", loader=toy_events, embedded=True))
    STUDIES.register("count", count_study)
    SUITES.register("toy", Suite("toy", "readout-only vs BPTT on toy events",
                                 SNNKind(locality_grid("toy", "toy-events", "toy-events",
                                                       rules=("bptt", "readout-only"),
                                                       epochs=1, n_steps=6, batch_size=20)),
                                 studies=("count",)))
    yield
    for registry, name in ((SUITES, "toy"), (STUDIES, "count"), (DATASETS, "toy-events"),
                           (RULES, "readout-only")):
        registry.unregister(name)


def test_a_rule_a_data_set_a_study_and_a_suite_defined_in_a_test(extensions, tmp_path):
    result = run_suite("toy", tmp_path / "out", SuiteOptions(progress=False))
    assert sorted({r.spec.rule for r in result.runs}) == ["bptt", "readout-only"]
    assert all(r.status == "done" for r in result.runs) and len(result.runs) == 4
    df = pd.read_csv(tmp_path / "out" / "results.csv")
    assert set(df.dataset) == {"toy-events"} and set(df.method) == {"bptt", "readout-only"}
    assert pd.read_csv(tmp_path / "out" / "count.csv").models.tolist() == [4]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Count" in report and "4 finished model(s)." in report
    again = run_suite("toy", tmp_path / "out", SuiteOptions(progress=False))
    assert all(r.skipped for r in again.runs)


# -- a study on a conv suite: one definition and one registry line -----------------------
def rate_study(ctx) -> StudyOutput:
    """The firing rate of each spiking layer of every trained model, of any suite kind."""
    rows = []
    for res, run_dir in ctx.done:
        for m in ctx.trained(res.spec, run_dir, 8):
            with torch.no_grad():
                _, layers = m.model.probe(m.model_input(m.x))
            rows += [{**m.columns, "layer": name, "rate": float(out.float().mean())}
                     for name, out in zip(m.model.layer_names(), layers, strict=True)]
    return StudyOutput(["## Rates", "", f"{len(rows)} layer(s).", ""],
                       {"rates": pd.DataFrame(rows)})


def test_a_study_defined_in_a_test_runs_on_a_conv_suite(tmp_path):
    STUDIES.register("rates", rate_study)
    try:
        opts = SuiteOptions(epochs=1, n_train=40, n_test=16, n_eval=8, n_steps=2,
                            studies=["rates", "fisher"], progress=False)
        run_suite("robust", tmp_path / "out", opts)
    finally:
        STUDIES.unregister("rates")
    df = pd.read_csv(tmp_path / "out" / "rates.csv")
    # every model of every method, conversion's three included, each conv SNN layer
    assert set(df.stage) == {"train", "ann", "converted", "conversion"}
    assert {"vanilla", "at", "dlif-at", "conversion"} <= set(df.method)
    assert set(df.layer) == {"conv1", "conv2", "fc1"} and set(df.model) == {"vgg-small"}
    spiking = df[df.neuron != "none"]
    assert spiking.rate.between(0, 1).all()
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Rates" in report and "## Fisher information" in report
    # the registered Fisher study takes the conv models through the same interface
    fi = pd.read_csv(tmp_path / "out" / "fisher.csv")
    assert set(fi.layer) == {"conv1", "conv2", "fc1", "out"} and set(fi.kind) == {"LW"}
    for _, g in fi.groupby(["run_id", "stage"]):  # NaN: a model without any gradient
        assert g.share.isna().all() or g.share.sum() == pytest.approx(1.0)
    assert fi[fi.neuron == "none"].share.notna().all()  # the ANN always has one


def test_a_study_of_spiking_mlps_on_a_conv_suite_is_refused_with_the_reason():
    with pytest.raises(ConfigError, match="analyses spiking MLPs.*fisher"):
        SUITES.get("robust").check_options(SuiteOptions(studies=["fgsm"]))
    with pytest.raises(UnknownNameError, match="unknown study 'nope'; known studies"):
        SUITES.get("robust").check_options(SuiteOptions(studies=["nope"]))


# -- a neuron: one definition (its weightless dynamics) and one registry line -------------
@dataclass(frozen=True)
class ALIFParams:
    beta: float = 0.9  # membrane decay
    rho: float = 0.95  # decay of the threshold's adaptation
    threshold: float = 0.5
    adapt: float = 0.5  # how much each spike raises the threshold
    surrogate: str = "fast_sigmoid"
    slope: float = 5.0


class ALIFState(NamedTuple):
    u: torch.Tensor
    a: torch.Tensor  # threshold adaptation
    s: torch.Tensor


class ALIFDynamics(NeuronDynamics):
    """Adaptive-threshold LIF (Bellec et al. 2018): u[t] = beta u[t-1] (1 - s[t-1]) + I[t],
    a[t] = rho a[t-1] + s[t-1], s[t] = H(u[t] - threshold - adapt a[t])."""

    description = "adaptive-threshold LIF (a test neuron)"

    def __init__(self, params=None, n=1):
        super().__init__(params or ALIFParams(), n)

    def initial_state(self, like):
        z = torch.zeros_like(like)
        return ALIFState(z, z, z)

    def step(self, current, state):
        p = self.params
        u = p.beta * state.u * (1 - state.s) + current
        a = p.rho * state.a + state.s
        s = spike(u - p.threshold - p.adapt * a, p.surrogate, p.slope)
        return s, ALIFState(u, a, s)


@pytest.fixture()
def alif():
    # a user's own adaptive neuron (the suite ships one as "alif"; this one has no current)
    NEURONS.register("user-alif", Neuron(ALIFParams, ALIFDynamics, ALIFDynamics.description))
    yield "user-alif"
    NEURONS.unregister("user-alif")


def test_an_adaptive_lif_runs_in_an_mlp_a_conv_snn_and_a_spiking_head(alif, extensions,
                                                                      tmp_path):
    # an MLP, trained end to end by a suite (--neuron alif), FF and REC
    result = run_suite("toy", tmp_path / "out", SuiteOptions(neuron=alif, rules=["bptt"],
                                                              progress=False))
    assert [r.status for r in result.runs] == ["done", "done"]
    assert set(pd.read_csv(tmp_path / "out" / "results.csv").neuron) == {alif}
    # a conv SNN: the same dynamics after every convolution, per channel; one line in the
    # robust suites' methods gives it a defence, trained by the registered procedure
    METHODS.register("alif-gauss", Method("ALIF SNN, Gaussian noise", alif, "gaussian"))
    try:
        spec = RobustSpec(method="alif-gauss", arch="vgg-small", steps=4)
        net = build(spec, (1, 8), 3, METHODS.get("alif-gauss").neuron)
        objective = snn_objective(spec, METHODS.get("alif-gauss"))
    finally:
        METHODS.unregister("alif-gauss")
    assert len(net.neurons()) == 3 and all(isinstance(m, ALIFDynamics) for m in net.neurons())
    x, y = torch.rand(6, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    out = objective.backward(net, x, y)
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert out.count == 6 and grads and all(torch.isfinite(g).all() for g in grads)
    assert net.body[0].weight.grad.abs().sum() > 0
    assert conv_workload(net.eval(), x)["spikes"] >= 0  # efficiency asks the interface
    # a spiking head: the hybrid suite trains it end to end (--neuron alif), and the
    # studies take it
    hybrid = run_suite("hybrid-lenet", tmp_path / "hybrid", SuiteOptions(
        dataset="mnist5k", n_train=64, n_test=32, epochs=1, n_eval=8, neuron=alif,
        seeds=[0, 1], studies=["cka"], progress=False), runs_dir=tmp_path / "runs")
    assert [r.status for r in hybrid.runs] == ["done", "done"]
    tidy = pd.read_csv(tmp_path / "hybrid" / "results.csv")
    assert set(tidy.neuron) == {"none", alif} and set(tidy.stage) == {"encoder", f"head-{alif}"}
    cka = pd.read_csv(tmp_path / "hybrid" / "cka.csv")
    assert set(cka.a) == {f"bptt/head-{alif}"}
    assert set(zip(cka.seed_a, cka.seed_b, strict=True)) == {(0, 1)}
    assert f"## Test accuracy (%): default / {alif} head" in (tmp_path / "hybrid" /
                                                          "report.md").read_text()

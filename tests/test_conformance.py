"""Conformance: every registered rule, neuron, data set, study and suite goes through the
shared interface, so a new entry that breaks the contract fails here at once. A neuron
defined only in this file shows that adding one is one file plus a registry line."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import pytest
import torch

from spikebench.analysis.fisher import fisher_traces
from spikebench.attacks.art import ANNCounterpart
from spikebench.datasets import DATASETS, DataNotFoundError
from spikebench.engine import ExperimentSpec, load_trained, train_run
from spikebench.engine.train import build_model
from spikebench.learning_rules import RULES, StepOutput, make_rule
from spikebench.models import PRESETS, ConvNet, SpikingMLP
from spikebench.models.hybrid import SpikingHead
from spikebench.neurons import NEURONS, DynamicsLayer, Neuron, NeuronDynamics
from spikebench.neurons.surrogate import spike
from spikebench.studies import STUDIES, StudyContext, StudyOutput
from spikebench.suites import SuiteOptions
from spikebench.suites.base import OPTION_FLAGS, SUITES
from spikebench.suites.locality import SNNKind


# -- a neuron defined only here: integrate-and-fire with a hard reset --------------------
@dataclass(frozen=True)
class IFParams:
    threshold: float = 1.0
    surrogate: str = "fast_sigmoid"
    slope: float = 5.0


class IFState(NamedTuple):
    u: torch.Tensor
    s: torch.Tensor


class IFDynamics(NeuronDynamics):
    """u[t] = (1 - s[t-1]) u[t-1] + I[t]; s = H(u - threshold): no weights, any shape."""

    description = "integrate-and-fire, hard reset (a test neuron)"

    def __init__(self, params=None, n=1):
        super().__init__(params or IFParams(), n)

    def initial_state(self, like):
        z = torch.zeros_like(like)
        return IFState(z, z)

    def step(self, current, state):
        u = state.u * (1 - state.s) + current
        s = spike(u - self.params.threshold, self.params.surrogate, self.params.slope)
        return s, IFState(u, s)


@pytest.fixture()
def if_neuron():
    NEURONS.register("if-test", Neuron(IFParams, IFDynamics, IFDynamics.description,
                                       spec_fields=("threshold", "surrogate", "slope")))
    yield "if-test"
    NEURONS.unregister("if-test")


def all_neurons():
    return NEURONS.names()


def tiny_batch(t=6, b=5, n_in=12, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(t, b, n_in, generator=g) < 0.3).float()
    return x, torch.arange(b) % classes


def check_neuron(name: str) -> None:
    entry = NEURONS.get(name)
    assert issubclass(entry.dynamics, NeuronDynamics) and entry.description
    params = entry.make_params()
    x, y = tiny_batch()
    for recurrent in (False, True):
        torch.manual_seed(0)
        model = SpikingMLP((12, 16, 3), recurrent=recurrent, neuron=name, params=params,
                           weight_scale=3.0).double()
        out, spikes = model(x.double(), record=True)
        assert out.shape == (6, 5, 3) and spikes[0].shape == (6, 5, 16)
        layer = model.hidden[0]
        assert (layer.recurrent_matrix() is None) == (not recurrent)
        torch.nn.functional.cross_entropy(out.mean(0), y).backward()
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
        if entry.stepwise:  # the pure step unrolled by hand equals forward
            state = layer.initial_state(5, x.double())
            steps = []
            for x_t in x.double():
                s, state = layer.dynamics(layer.input_current(x_t, state), state)
                steps.append(s)
            assert torch.equal(torch.stack(steps), spikes[0])
            assert torch.equal(state.s, steps[-1])
        # the ANN counterpart uses the interface too (weights, recurrent_matrix)
        assert ANNCounterpart(model).eval()(x.transpose(0, 1)).shape == (5, 3)
    head = SpikingHead(8, 3, name, steps=4)
    assert head(torch.rand(5, 8)).shape == (5, 3)
    check_dynamics(entry, params)


def check_dynamics(entry, params) -> None:
    """The weightless dynamics: currents of any shape, per-channel parameters, after a
    convolution (a conv SNN that trains), its step unrolled equal to its forward."""
    torch.manual_seed(0)
    dyn = entry.make_dynamics(params, 4).double().eval()  # eval: stochastic codes decide
    current = 3 * torch.rand(5, 2, 4, 3, 3, dtype=torch.float64)
    s = dyn(current)
    assert s.shape == current.shape and set(s.unique().tolist()) <= {0.0, 1.0}
    # every neuron is its own: a neuron's spikes depend on its own current only
    flat = dyn(current.reshape(5, 2, 4, 9))
    assert torch.equal(flat.reshape(current.shape), s)
    if entry.dynamics.stepwise:
        state, steps = dyn.initial_state(current[0]), []
        for c in current:
            out, state = dyn.step(c, state)
            steps.append(out)
        assert torch.equal(torch.stack(steps), s)
    torch.manual_seed(0)
    net = ConvNet("vgg-small", 1, 8, 3, params, steps=3)
    assert all(isinstance(m, entry.dynamics) for m in net.neurons()) and net.neurons()
    logits = net(torch.rand(4, 1, 8, 8))
    assert logits.shape == (4, 3)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 0])).backward()
    assert net.body[0].weight.grad.abs().sum() > 0  # the gradient reaches the first conv


@pytest.mark.parametrize("name", all_neurons())
def test_every_neuron_follows_the_interface(name):
    check_neuron(name)


def test_a_neuron_defined_in_a_test_needs_one_registry_line(if_neuron, tmp_path):
    check_neuron(if_neuron)
    spec = ExperimentSpec(neuron=if_neuron, epochs=1, batch_size=4, n_steps=5, hidden=(8,))
    model = build_model(spec)
    assert isinstance(model.hidden[0], DynamicsLayer) and model.hidden[0].params == IFParams()
    assert isinstance(model.hidden[0].neuron, IFDynamics)
    g = torch.Generator().manual_seed(0)
    from spikebench.datasets import SampleData

    data = SampleData((torch.rand(8, 5, 2, 34, 34, generator=g) < 0.1).to(torch.uint8),
                      torch.arange(8) % 10, classes=10)
    result = train_run(spec, tmp_path / "run", data, data, progress=False)
    assert result.status == "done"
    loaded, _, _ = load_trained(tmp_path / "run")  # rebuilt from the registry entry
    assert isinstance(loaded.hidden[0].neuron, IFDynamics)
    x = data.x[:4].float().transpose(0, 1)
    traces = fisher_traces(loaded.double(), x.double(), data.y[:4])  # step-wise: probes work
    assert traces


@pytest.mark.parametrize("name", RULES.names())
def test_every_rule_fills_gradients_and_keeps_its_state(name):
    rule = make_rule(name)
    assert rule.name == name and rule.losses
    torch.manual_seed(0)
    neuron = "lif" if rule.neurons is None else rule.neurons[0]
    model = SpikingMLP((12, 10, 8, 3), recurrent=True, neuron=neuron, weight_scale=3.0)
    rule.prepare(model)
    x, y = tiny_batch()
    out = rule.backward(model, x, y)
    assert isinstance(out, StepOutput) and math.isfinite(out.loss) and out.count == 5
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    again = make_rule(name, **rule.config())
    again.prepare(model)
    again.load_state_dict(rule.state_dict())
    for k, v in rule.state_dict().items():
        assert torch.equal(v, again.state_dict()[k])


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_data_set_says_where_it_is_and_how_to_obtain_it(name, tmp_path, monkeypatch):
    info = DATASETS.get(name)
    assert info.name == name and info.description and info.how_to_obtain
    assert info.preset in PRESETS
    if info.embedded:
        assert info.identity(None) == (None, None)
        return
    missing = tmp_path / "absent"
    with pytest.raises(DataNotFoundError) as err:
        info.identity(missing)
    assert str(missing) in str(err.value) and info.how_to_obtain in str(err.value)
    with pytest.raises(DataNotFoundError):
        info.load("train", missing)


@pytest.mark.parametrize("name", STUDIES.names())
def test_every_study_handles_a_suite_without_finished_runs(name, tmp_path):
    ctx = StudyContext("conformance", tmp_path, [], lambda spec: None, progress=False)
    output = STUDIES.get(name)(ctx)
    assert isinstance(output, StudyOutput) and output.sections


@pytest.mark.parametrize("name", SUITES.names())
def test_every_suite_builds_its_runs(name):
    suite = SUITES.get(name)
    assert suite.name == name and suite.description
    for study in suite.studies:
        STUDIES.get(study)
    for field in suite.accepted():  # every option a suite takes is one the CLI knows
        assert field in OPTION_FLAGS, field
    specs, notes = suite.specs(SuiteOptions(progress=False))
    assert specs and all(s.suite == name and s.run_id for s in specs)
    if isinstance(suite.kind, SNNKind):
        assert all(isinstance(s, ExperimentSpec) for s in specs)
    assert len({s.run_id for s in specs}) == len(specs)  # no duplicate runs

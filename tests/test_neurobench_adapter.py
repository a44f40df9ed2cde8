"""The NeuroBench adapter (spikebench.neurobench_adapter): the snnTorch network it builds
gives our readout at every step (FF and REC, subtractive reset; FF, zero reset), and
NeuroBench's own Benchmark and metric code on it gives our counts exactly (SynOps,
activation sparsity, membrane updates, neuron operations = updates x 6 or x 8) and our
accuracy; what NeuroBench cannot run is refused with the reason; the energy estimate is
the stated sum."""

import json
from dataclasses import replace

import pytest
import torch

from spikebench.cli import main
from spikebench.engine import train_run
from spikebench.errors import ConfigError
from spikebench.metrics.efficiency import (
    E_AC,
    E_MAC,
    E_NEURON_OP,
    EfficiencyCounter,
    energy_joules,
    neuron_operations,
)
from spikebench.models import SpikingMLP
from spikebench.neurons import LIFParams
from tests.engine.test_harness import SPEC, toy_data

pytest.importorskip("neurobench", reason="neurobench not installed (make setup installs it)")
pytest.importorskip("snntorch", reason="snntorch not installed (make setup installs it)")
pytestmark = pytest.mark.filterwarnings("ignore")


def model(reset="zero", recurrent=False):
    torch.manual_seed(0)
    return SpikingMLP((20, 8, 6, 3), recurrent=recurrent, weight_scale=4.0, kappa=0.85,
                      params=LIFParams(alpha=0.8, beta=0.9, threshold=0.5, reset=reset))


CASES = [("zero", False), ("subtract", False), ("subtract", True)]


@pytest.mark.parametrize("reset, recurrent", CASES)
def test_the_snntorch_network_gives_our_readout_at_every_step(reset, recurrent):
    from spikebench.neurobench_adapter import ReadoutNet, snntorch_network

    m = model(reset, recurrent)
    x = (torch.rand(6, 50, 20, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    theirs = ReadoutNet(snntorch_network(m), m.readout.kappa)(x)
    with torch.no_grad():
        ours, spikes = m(x.transpose(0, 1), record=True)
    assert 0.05 < float(spikes[0].mean()) < 0.9
    torch.testing.assert_close(theirs.detach(), ours, rtol=0, atol=1e-5)


@pytest.mark.parametrize("reset, recurrent", CASES)
def test_neurobench_counts_what_we_count_on_our_network(reset, recurrent):
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.workload import (
        ActivationSparsity,
        ClassificationAccuracy,
        MembraneUpdates,
        NeuronOperations,
        SynapticOperations,
    )

    from spikebench.neurobench_adapter import decision, neurobench_model

    m = model(reset, recurrent)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(16, 40, 20, generator=g) < 0.3).float()
    y = torch.randint(0, 3, (16,), generator=g)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    theirs = Benchmark(neurobench_model(m), loader, [], [decision(0)],
                       [[], [ClassificationAccuracy, ActivationSparsity, SynapticOperations,
                             MembraneUpdates, NeuronOperations]]).run(quiet=True)
    counter = EfficiencyCounter()
    with torch.no_grad():
        for xb, _ in loader:
            _, spikes = m(xb.transpose(0, 1), record=True)
            counter.update(m, xb.transpose(0, 1), spikes)
        out = m(x.transpose(0, 1))
    ours = counter.result()
    assert 0.05 < 1 - ours["activation_sparsity"] < 0.9  # neither silent nor saturated
    assert theirs["SynapticOperations"]["Effective_ACs"] == ours["synops_ac"]
    assert theirs["SynapticOperations"]["Dense"] == ours["synops_dense"]
    assert theirs["ActivationSparsity"] == pytest.approx(ours["activation_sparsity"], 1e-12)
    assert theirs["MembraneUpdates"] == pytest.approx(ours["membrane_updates"], 1e-12)
    if recurrent:  # NeuroBench 2.3 has no figure for RSynaptic: its manager reports 0.0
        assert theirs["NeuronOperations"] == 0.0
    else:
        assert theirs["NeuronOperations"]["Effective Neuron Ops"] == pytest.approx(
            neuron_operations(ours["membrane_updates"], "lif", reset), 1e-12)
    assert theirs["ClassificationAccuracy"] == pytest.approx(
        float((out.mean(0).argmax(-1) == y).float().mean()), 1e-12)


@pytest.mark.parametrize("m, match", [
    (lambda: model("zero", recurrent=True), "twice per step"),
    (lambda: SpikingMLP((20, 8, 3), neuron="paralif"), "ParaLIF"),
    (lambda: torch.nn.Linear(3, 2), "SpikingMLP"),
])
def test_what_neurobench_cannot_run_is_refused(m, match):
    from spikebench.neurobench_adapter import neurobench_model

    with pytest.raises(ConfigError, match=match):
        neurobench_model(m())


def test_the_energy_estimate_is_the_stated_sum():
    assert energy_joules(1, 1, 1) == pytest.approx(E_AC + E_MAC + E_NEURON_OP)
    assert E_AC + E_MAC + E_NEURON_OP == pytest.approx(6.4e-12)  # Horowitz 2014, 45 nm
    assert energy_joules(10, 0, 0, e_ac=1.0) == 10.0
    with pytest.raises(ConfigError, match="e_mac"):
        energy_joules(1, 1, e_mac=float("nan"))
    assert neuron_operations(10, "paralif", "subtract") != neuron_operations(10, "paralif",
                                                                           "subtract")  # NaN


def test_the_neurobench_command_on_a_trained_run(tmp_path, capsys):
    spec = replace(SPEC, epochs=1, neuron_options={"reset": "zero"})
    run = tmp_path / "run"
    assert train_run(spec, run, toy_data(64, 0), toy_data(32, 1), progress=False).status \
        == "done"
    capsys.readouterr()
    assert main(["neurobench", str(run), "--n", "16"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"Footprint", "ClassificationAccuracy", "SynapticOperations", "MembraneUpdates",
            "NeuronOperations", "spikebench_energy_J_per_sample"} <= set(result)
    ops = result["SynapticOperations"]
    assert result["spikebench_energy_J_per_sample"] == pytest.approx(
        energy_joules(ops["Effective_ACs"], ops["Effective_MACs"],
                      result["NeuronOperations"]["Effective Neuron Ops"]))
    assert main(["neurobench", str(tmp_path / "none")]) == 2
    assert "no checkpoint.pt" in capsys.readouterr().err

"""Our efficiency metrics against NeuroBench's own metric code, on an snnTorch network that
NeuroBench runs (Linear -> Leaky x 3): the same spikes and membranes, counted by both.

NeuroBench (2.3.0) is installed by `make setup` without its dependencies: with them pip would
add torchaudio 2.11.1, whose compiled library does not load with torch 2.13.0 (OSError).
Its metrics need neither. The test skips where neurobench or snntorch is absent."""

import pytest
import torch
from torch import nn

from spikebench.metrics.efficiency import EfficiencyCounter, membrane_updates, static_metrics
from spikebench.models import SpikingMLP

snn = pytest.importorskip("snntorch", reason="snntorch (NeuroBench's SNN backend) absent")
pytest.importorskip("neurobench", reason="neurobench not installed (make setup installs it)")


def test_synops_sparsity_and_membrane_updates_equal_neurobench():
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.static import ConnectionSparsity
    from neurobench.metrics.workload import (
        ActivationSparsity,
        MembraneUpdates,
        SynapticOperations,
    )
    from neurobench.models import SNNTorchModel

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5, bias=False), snn.Leaky(beta=0.9, init_hidden=True),
                        nn.Linear(5, 4, bias=False), snn.Leaky(beta=0.9, init_hidden=True),
                        nn.Linear(4, 3), snn.Leaky(beta=0.9, init_hidden=True, output=True))
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Linear):
                m.weight.mul_(4.0)
        net[0].weight[1, :3] = 0  # zero weights: effective < dense
    x = (torch.rand(8, 12, 6) < 0.4).float()  # NeuroBench's layout [B, T, features]
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, torch.zeros(8, dtype=torch.long)), batch_size=4)
    theirs = Benchmark(SNNTorchModel(net), loader, [], [],
                       [[ConnectionSparsity],
                        [SynapticOperations, ActivationSparsity, MembraneUpdates]]).run(
        quiet=True)

    # ours, on the same spikes and membranes (recorded from the same network, per batch)
    spikes, mems = {}, {}

    def record(k):
        def hook(module, inp, out):
            spikes.setdefault(k, []).append((out[0] if isinstance(out, tuple) else out).detach())
            mems.setdefault(k, []).append(module.mem.detach().clone())
        return hook

    for k, i in enumerate((1, 3, 5)):
        net[i].register_forward_hook(record(k))
    mirror = SpikingMLP((6, 5, 4, 3))  # the same connections: W1, W2 and the readout W3
    with torch.no_grad():
        mirror.hidden[0].weight.copy_(net[0].weight)
        mirror.hidden[1].weight.copy_(net[2].weight)
        mirror.readout.weight.copy_(net[4].weight)
    three = SpikingMLP((6, 5, 4, 3, 2))  # all three spiking layers hidden: their sparsity
    counter, all_layers, updates = EfficiencyCounter(), EfficiencyCounter(), 0
    for xb, _ in loader:
        spikes.clear()
        mems.clear()
        SNNTorchModel(net)(xb)
        s = [torch.stack(spikes[k]) for k in range(3)]  # [T, B, n]
        counter.update(mirror, xb.transpose(0, 1), s[:2])
        all_layers.update(three, xb.transpose(0, 1), s)
        updates += sum(membrane_updates(torch.stack(mems[k])) for k in range(3))
    ours = counter.result()
    ops = theirs["SynapticOperations"]
    assert ours["synops_ac"] == ops["Effective_ACs"] > 0
    assert ours["synops_mac"] == ops["Effective_MACs"] == 0
    assert ours["synops_dense"] == ops["Dense"]
    # NeuroBench's sparsity also covers the last spiking layer (our readout is not spiking)
    assert all_layers.result()["activation_sparsity"] == pytest.approx(
        theirs["ActivationSparsity"], rel=1e-12)
    assert updates / 8 == pytest.approx(theirs["MembraneUpdates"], rel=1e-12)
    assert static_metrics(mirror)["connection_sparsity"] == pytest.approx(
        theirs["ConnectionSparsity"], abs=1e-4)  # NeuroBench rounds to 4 digits


@pytest.mark.parametrize("binary", [False, True])
def test_conv_and_linear_operations_equal_neurobench(binary):
    """ModuleCounter (the hybrids' encoders) against NeuroBench's per-layer count."""
    from neurobench.metrics.utils.layers import single_layer_MACs

    from spikebench.metrics.efficiency import ModuleCounter

    torch.manual_seed(1)
    conv, lin = nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.Linear(4 * 4 * 4, 6)
    with torch.no_grad():
        conv.weight[1] = 0
        lin.weight[:, ::3] = 0
    x = torch.relu(torch.randn(2, 3, 8, 8))
    if binary:
        x = (x > 0).float()
    h = torch.relu(conv(x)).flatten(1)
    if binary:
        h = (h > 0).float()
    want_eff = single_layer_MACs(x, conv)[0] + single_layer_MACs(h, lin)[0]
    want_dense = (single_layer_MACs(x, conv, total=True)[0]
                  + single_layer_MACs(h, lin, total=True)[0])
    counter = EfficiencyCounter()
    with ModuleCounter(nn.Sequential(conv, lin), counter):
        conv(x)
        lin(h)
    assert (counter.ac if binary else counter.mac) == want_eff
    assert counter.dense == want_dense


def test_rec_synops_equal_neurobench_on_a_recurrent_snntorch_network():
    """NeuroBench hooks RSynaptic's recurrent Linear like any connection: its input is the
    previous step's spikes. Our counter's V s[t-1] on the same spikes gives the same
    effective and dense counts. (With reset_mechanism="zero", snnTorch 1.0's RSynaptic calls
    its recurrent Linear twice per step, once more for the reset term, and NeuroBench then
    counts its SynOps twice; the subtractive reset calls it once.)"""
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.workload import SynapticOperations
    from neurobench.models import SNNTorchModel
    from snntorch import utils

    torch.manual_seed(0)
    n = 6
    rsyn = snn.RSynaptic(alpha=0.8, beta=0.9, threshold=0.5, init_hidden=True,
                         linear_features=n, all_to_all=True, reset_mechanism="subtract")
    net = nn.Sequential(nn.Linear(5, n, bias=False), rsyn, nn.Linear(n, 3),
                        snn.Leaky(beta=0.9, init_hidden=True, output=True))
    with torch.no_grad():
        net[0].weight.mul_(4.0)
        rsyn.recurrent.weight.fill_diagonal_(0.0)  # our V has no self-connections
        rsyn.recurrent.weight[0, 1:3] = 0.0  # zero weights: effective < dense
        rsyn.recurrent.bias.zero_()
    x = (torch.rand(8, 15, 5) < 0.4).float()
    # one batch: snnTorch's reset leaves RSynaptic's last spikes in place, so a second
    # batch would start from the first one's spikes (V s[-1] != 0) in both simulations
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, torch.zeros(8, dtype=torch.long)), batch_size=8)
    theirs = Benchmark(SNNTorchModel(net), loader, [], [],
                       [[], [SynapticOperations]]).run(quiet=True)["SynapticOperations"]
    utils.reset(net)
    rsyn.spk = torch.zeros_like(rsyn.spk)
    spikes = []
    net[1].register_forward_hook(lambda m, i, o: spikes.append(
        (o[0] if isinstance(o, tuple) else o).detach()))
    mirror = SpikingMLP((5, n, 3), recurrent=True)
    with torch.no_grad():
        mirror.hidden[0].weight.copy_(net[0].weight)
        mirror.hidden[0].rec_weight.copy_(rsyn.recurrent.weight)
        mirror.readout.weight.copy_(net[2].weight)
    counter = EfficiencyCounter()
    for xb, _ in loader:
        spikes.clear()
        SNNTorchModel(net)(xb)
        counter.update(mirror, xb.transpose(0, 1), [torch.stack(spikes)])
    ours = counter.result()
    assert float(torch.stack(spikes).mean()) > 0.05  # the recurrent input is not all zero
    assert ours["synops_ac"] == theirs["Effective_ACs"] > 0
    assert ours["synops_dense"] == theirs["Dense"]

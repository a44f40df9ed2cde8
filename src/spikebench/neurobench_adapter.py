"""Hand a trained run to NeuroBench (``neurobench.benchmarks.Benchmark``): its own metric
code and output, on the run's own test data.

The network goes over as an snnTorch network built from ours (``snntorch_network``):
per hidden layer a ``Linear`` W and a ``Synaptic`` (REC: an all-to-all ``RSynaptic`` with
V), the layers NeuroBench hooks, then the readout's ``Linear``; the gain is folded into
W and V (snnTorch's membrane adds the current unscaled). snnTorch's reset equals ours with
``reset_mechanism="subtract", reset_delay=True`` (U[t] = beta U[t-1] + I[t] - theta
s[t-1]) and ``"zero", reset_delay=False`` (the membrane zeroed right after the spike);
the tests check the spikes are ours. The readout's kappa filter runs after it, so the
predictions NeuroBench sees are our readout y[t]; the postprocessor takes our decision
(argmax of y averaged over the steps after burn-in). Refused, with the reason: ParaLIF and
DLIF layers (no snnTorch counterpart NeuroBench counts) and REC with the zero reset
(snnTorch 1.0's RSynaptic calls its recurrent Linear twice per step there, so NeuroBench
would count V twice).

``metrics.efficiency.neuron_operations`` and ``energy_joules`` are our own counts from
the efficiency metrics, cross-checked against NeuroBench's ``NeuronOperations`` in the
tests; ``run_neurobench`` adds them beside NeuroBench's result.
"""

from __future__ import annotations

from pathlib import Path

import torch

from spikebench.errors import ConfigError
from spikebench.metrics.efficiency import energy_joules, neuron_operations


class ReadoutNet(torch.nn.Module):
    """An snnTorch network of a SpikingMLP run step by step over [B, T, features], with our
    readout's kappa filter after its last Linear: returns y as [T, B, classes] (what
    NeuroBench's ``custom_forward`` expects). Every state starts at zero for each batch
    (``snntorch.utils.reset`` leaves RSynaptic's last spikes in place; cleared here)."""

    def __init__(self, net: torch.nn.Module, kappa: float) -> None:
        super().__init__()
        self.net, self.kappa = net, kappa

    def forward(self, data: torch.Tensor) -> torch.Tensor:
        import snntorch
        from snntorch import utils

        utils.reset(self.net)
        for m in self.net.modules():
            if isinstance(m, snntorch.RSynaptic):
                m.spk = torch.zeros(())  # the first step's V s[-1] is zero, as ours
        ys, y = [], None
        for t in range(data.shape[1]):
            drive = self.net(data[:, t])
            if isinstance(drive, tuple):
                drive = drive[0]
            y = drive if y is None else self.kappa * y + drive
            ys.append(y)
        return torch.stack(ys)


def snntorch_network(model) -> torch.nn.Sequential:
    """The snnTorch network with our model's spikes and readout drive (module doc)."""
    import snntorch as snn
    from torch import nn

    from spikebench.models import SpikingMLP
    from spikebench.neurons import LIFLayer

    if not isinstance(model, SpikingMLP):
        raise ConfigError(f"NeuroBench takes a trained SpikingMLP; got {type(model).__name__}")
    layers: list[nn.Module] = []
    for k, layer in enumerate(model.hidden):
        if not isinstance(layer, LIFLayer):
            raise ConfigError(f"hidden layer {k} is {type(layer).__name__}: ParaLIF and DLIF "
                              "have no snnTorch layer NeuroBench counts; LIF runs only")
        p = layer.params
        if layer.recurrent and p.reset == "zero":
            raise ConfigError("a REC network with the zero reset: snnTorch 1.0's RSynaptic "
                              "calls its recurrent Linear twice per step there, so "
                              "NeuroBench would count V s[t-1] twice; REC runs with the "
                              "subtractive reset (the default) go over")
        fc = nn.Linear(layer.n_in, layer.n_out, bias=False)
        kw = {"alpha": p.alpha, "beta": p.beta, "threshold": p.threshold, "init_hidden": True,
              "reset_mechanism": p.reset, "reset_delay": p.reset == "subtract"}
        with torch.no_grad():
            fc.weight.copy_(layer.weight * p.gain)
            if layer.recurrent:
                neuron = snn.RSynaptic(**kw, all_to_all=True, linear_features=layer.n_out)
                neuron.recurrent.weight.copy_(layer.recurrent_matrix() * p.gain)
                neuron.recurrent.bias.zero_()
            else:
                neuron = snn.Synaptic(**kw)
        layers += [fc, neuron]
    readout = nn.Linear(model.readout.n_in, model.readout.n_out)
    with torch.no_grad():
        readout.weight.copy_(model.readout.weight)
        readout.bias.copy_(model.readout.bias)
    return nn.Sequential(*layers, readout)


def neurobench_model(model):
    """NeuroBench's ``SNNTorchModel`` of a trained SpikingMLP (module doc)."""
    from neurobench.models import SNNTorchModel

    net = snntorch_network(model).to(next(model.parameters()).device)
    return SNNTorchModel(ReadoutNet(net, model.readout.kappa), custom_forward=True)


def decision(burn_in: int = 0):
    """NeuroBench postprocessor: our decision from y [B, T, C]: argmax of y averaged over
    the steps after ``burn_in``."""
    def post(preds: torch.Tensor) -> torch.Tensor:
        return preds[:, burn_in:].mean(1).argmax(-1)
    return post


DEFAULT_METRICS = (("Footprint", "ConnectionSparsity"),
                   ("ClassificationAccuracy", "ActivationSparsity", "SynapticOperations",
                    "MembraneUpdates", "NeuronOperations"))


def run_neurobench(run_dir: str | Path, n: int | None = None, batch_size: int = 64,
                   metrics=DEFAULT_METRICS) -> dict:
    """NeuroBench's ``Benchmark`` on a trained locality run: its test data (the first
    ``n`` samples), the run's model, NeuroBench's own metric classes named in ``metrics``
    (static, workload); returns NeuroBench's result dictionary with our energy estimate
    beside it (``with_energy``)."""
    import neurobench.metrics.static as static
    import neurobench.metrics.workload as workload
    from neurobench.benchmarks import Benchmark

    from spikebench.engine.data import spec_data
    from spikebench.engine.train import load_trained

    model, _, spec = load_trained(Path(run_dir))
    _, test = spec_data(spec, progress=False)
    if test.task != "sample" or test.encode is not None:
        raise ConfigError(f"{run_dir}: NeuroBench classification takes one label per "
                          f"sample of event frames; this run's data ({spec.dataset}) is "
                          f"task {test.task!r}")
    k = len(test) if n is None else min(n, len(test))
    x = test.x[:k].float().flatten(2)  # [N, T, features], NeuroBench's layout
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, test.y[:k]),
                                         batch_size=batch_size)
    try:
        static_m = [getattr(static, m) for m in metrics[0]]
        workload_m = [getattr(workload, m) for m in metrics[1]]
    except AttributeError as err:
        raise ConfigError(f"NeuroBench has no metric {err.name!r}") from None
    bench = Benchmark(neurobench_model(model), loader, [], [decision(spec.burn_in)],
                      [static_m, workload_m])
    return with_energy(bench.run(quiet=True), "lif", model.hidden[0].params.reset)


def with_energy(result: dict, neuron: str = "lif", reset: str = "zero", **energies) -> dict:
    """NeuroBench's result with our energy estimate per sample beside it
    (``metrics.efficiency.energy_joules`` of its SynOps and neuron operations; the
    per-operation energies as keyword arguments)."""
    ops = result.get("SynapticOperations", {})
    theirs = result.get("NeuronOperations")
    # NeuroBench 2.3 has no figure for RSynaptic: its manager catches the KeyError and
    # reports 0.0, so REC runs use ours (the Synaptic figure: V s[t-1] is in the SynOps)
    neuron_ops = theirs.get("Effective Neuron Ops") if isinstance(theirs, dict) else None
    if neuron_ops is None and "MembraneUpdates" in result:
        neuron_ops = neuron_operations(result["MembraneUpdates"], neuron, reset)
    joules = energy_joules(ops.get("Effective_ACs", 0.0), ops.get("Effective_MACs", 0.0),
                           neuron_ops or 0.0, **energies)
    return {**result, "spikebench_energy_J_per_sample": joules}

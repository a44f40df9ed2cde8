"""Hand a trained run to NeuroBench (``neurobench.benchmarks.Benchmark``): its own metric
code and output, on the run's own test data.

The network goes over as the snnTorch network of our snnTorch NIR export
(``nir_io.to_nir(target="snntorch")`` read by snnTorch's ``import_from_nir``): snnTorch
``Synaptic`` layers, the ones NeuroBench hooks, with our spikes at every step. The
readout's kappa filter runs after the snnTorch graph (snnTorch has no LI node), so the
predictions NeuroBench sees are our readout y[t]; the postprocessor takes our decision
(argmax of y averaged over the steps after burn-in). LIF networks with the zero reset
only: NeuroBench runs snnTorch's reset, which is ours only for ``reset="zero"``, and
snnTorch 1.0 cannot build recurrent NIR graphs (docs/nir.md), so REC runs are refused
with that reason.

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
    """The snnTorch network of a SpikingMLP run step by step over [B, T, features], with
    our readout's kappa filter after its last Affine: returns y as [T, B, classes] (what
    NeuroBench's ``custom_forward`` expects)."""

    def __init__(self, graph_module: torch.nn.Module, kappa: float) -> None:
        super().__init__()
        self.net, self.kappa = graph_module, kappa

    def forward(self, data: torch.Tensor) -> torch.Tensor:
        from snntorch import utils

        utils.reset(self.net)
        ys, y = [], None
        for t in range(data.shape[1]):
            drive = self.net(data[:, t])
            if isinstance(drive, tuple):  # nirtorch's graphs may return (output, state)
                drive = drive[0]
            y = drive if y is None else self.kappa * y + drive
            ys.append(y)
        return torch.stack(ys)


def neurobench_model(model):
    """NeuroBench's ``SNNTorchModel`` of a trained SpikingMLP (module doc)."""
    from neurobench.models import SNNTorchModel
    from snntorch.import_nir import import_from_nir

    from spikebench.nir_io import SNNTORCH_DT, to_nir

    if model.recurrent:
        raise ConfigError("a REC network cannot go to NeuroBench: snnTorch 1.0 cannot build "
                          "recurrent NIR graphs (upstream; docs/nir.md); FF runs only")
    graph = to_nir(model, SNNTORCH_DT, target="snntorch")  # refuses ParaLIF, DLIF
    resets = {layer.params.reset for layer in model.hidden}
    if resets != {"zero"}:
        raise ConfigError(f"reset {', '.join(sorted(resets))}: NeuroBench runs snnTorch's "
                          "reset, which is ours only for reset='zero'; train with "
                          "--neuron-option reset=zero")
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # snnTorch prints while it imports
        net = import_from_nir(graph)
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
    (static, workload); returns NeuroBench's result dictionary."""
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
    return bench.run(quiet=True)


def with_energy(result: dict, neuron: str = "lif", reset: str = "zero", **energies) -> dict:
    """NeuroBench's result with our energy estimate per sample beside it
    (``metrics.efficiency.energy_joules`` of its SynOps and neuron operations; the
    per-operation energies as keyword arguments)."""
    ops = result.get("SynapticOperations", {})
    neuron_ops = result.get("NeuronOperations", {}).get("Effective Neuron Ops")
    if neuron_ops is None and "MembraneUpdates" in result:
        neuron_ops = neuron_operations(result["MembraneUpdates"], neuron, reset)
    joules = energy_joules(ops.get("Effective_ACs", 0.0), ops.get("Effective_MACs", 0.0),
                           neuron_ops or 0.0, **energies)
    return {**result, "spikebench_energy_J_per_sample": joules}

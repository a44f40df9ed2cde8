r"""NIR export and import of trained ``SpikingMLP``s (LIF, FF and REC).

NIR (the Neuromorphic Intermediate Representation) describes networks as continuous-time
nodes; a simulator integrates them with its own step ``dt``. Our networks are discrete. With
forward-Euler steps of ``dt`` (norse's and nirtorch's convention) the nodes below reproduce
our step equations exactly:

- a hidden layer: ``Linear`` W (no bias) -> ``CubaLIF``. CubaLIF integrates
  tau_syn dI/dt = -I + w_in x and tau_mem dv/dt = (v_leak - v) + r I. One Euler step is
  I[t] = (1 - dt/tau_syn) I[t-1] + (dt/tau_syn) w_in x[t]. So
      tau_syn = dt / (1 - alpha),  w_in = tau_syn / dt = 1 / (1 - alpha),
      tau_mem = dt / (1 - beta),   r = gain / (1 - beta),   v_leak = 0,
      v_threshold = theta,         v_reset = 0.
  This needs alpha, beta < 1 (a leak); a perfect integrator is refused.
- REC: a second ``Linear`` V (diagonal zero) from the layer's output back to its CubaLIF:
  a graph cycle, read by simulators as the spikes of the previous step.
- the readout: ``Affine`` (W, b) -> ``LI``, with tau = dt / (1 - kappa), r = 1 / (1 - kappa)
  and v_leak = 0 (y[t] = kappa y[t-1] + W s[t] + b).

Reset: NIR's CubaLIF resets to v_reset, which is our ``reset="zero"``. Our subtractive reset
(U[t] = beta U[t-1] + gain I[t] - theta s[t-1]) has no NIR node. Such a network is exported
with the same nodes, and its graph's metadata says ``reset: subtract``. ``from_nir`` restores
it exactly, but another simulator runs it with its own reset.

The graph's metadata (``spikebench``: a JSON string) also holds our discrete constants, so
that ``from_nir`` rebuilds the very same model. A graph that does not come from spikebench
is imported from its continuous constants (with the same ``dt``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from spikebench.errors import ConfigError
from spikebench.models import SpikingMLP
from spikebench.neurons import LIFLayer, LIFParams

FORMAT = "spikebench-nir-1"


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def _check_exportable(model) -> None:
    if not isinstance(model, SpikingMLP):
        raise ConfigError(f"NIR export takes a trained SpikingMLP; got {type(model).__name__} "
                          "(the hybrids' ANN encoders with spiking heads are not exported)")
    for k, layer in enumerate(model.hidden):
        if not isinstance(layer, LIFLayer):
            raise ConfigError(
                f"hidden layer {k} is {type(layer).__name__}: NIR has no node for it (ParaLIF "
                "has no reset and computes its membrane over the whole sequence with "
                "learnable per-neuron decays); only LIF networks are exported")
        p = layer.params
        if p.alpha >= 1.0 or p.beta >= 1.0:
            raise ConfigError(f"hidden layer {k} has alpha={p.alpha}, beta={p.beta}: NIR's "
                              "CubaLIF needs finite time constants (alpha, beta < 1)")


def to_nir(model: SpikingMLP, dt: float = 1e-3):
    """The NIR graph of ``model`` (module doc)."""
    import nir

    _check_exportable(model)
    if not dt > 0:
        raise ConfigError(f"dt must be positive, got {dt}")
    nodes: dict = {"input": nir.Input(input_type={"input": np.array([model.sizes[0]])})}
    edges: list[tuple[str, str]] = []
    prev = "input"
    for k, layer in enumerate(model.hidden):
        p = layer.params
        n = layer.n_out
        ones = np.ones(n, dtype=np.float32)
        nodes[f"fc{k}"] = nir.Linear(weight=_np(layer.weight))
        nodes[f"lif{k}"] = nir.CubaLIF(
            tau_syn=ones * dt / (1 - p.alpha), tau_mem=ones * dt / (1 - p.beta),
            r=ones * p.gain / (1 - p.beta), v_leak=ones * 0.0,
            v_threshold=ones * p.threshold, v_reset=ones * 0.0,
            w_in=ones / (1 - p.alpha))
        edges += [(prev, f"fc{k}"), (f"fc{k}", f"lif{k}")]
        if layer.recurrent:
            nodes[f"rec{k}"] = nir.Linear(weight=_np(layer.recurrent_matrix()))
            edges += [(f"lif{k}", f"rec{k}"), (f"rec{k}", f"lif{k}")]
        prev = f"lif{k}"
    kappa, c = model.readout.kappa, model.sizes[-1]
    nodes["fc_out"] = nir.Affine(weight=_np(model.readout.weight), bias=_np(model.readout.bias))
    nodes["readout"] = nir.LI(tau=np.full(c, dt / (1 - kappa), dtype=np.float32),
                              r=np.full(c, 1 / (1 - kappa), dtype=np.float32),
                              v_leak=np.zeros(c, dtype=np.float32))
    nodes["output"] = nir.Output(output_type={"output": np.array([c])})
    edges += [(prev, "fc_out"), ("fc_out", "readout"), ("readout", "output")]
    meta = {"format": FORMAT, "dt": dt, "config": model.config(),
            "note": "discrete-time LIF of spikebench; see spikebench.nir_io for the mapping"}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"spikebench": json.dumps(meta)})


def write_nir(model: SpikingMLP, path: str | Path, dt: float = 1e-3) -> None:
    import nir

    nir.write(str(path), to_nir(model, dt))


def read_nir(path: str | Path) -> SpikingMLP:
    """A SpikingMLP from a NIR file (``from_nir``), with a one-line error for a bad file."""
    import nir

    try:
        graph = nir.read(str(path))
    except Exception as err:  # h5py / format errors: the file is not a NIR graph
        raise ConfigError(f"{path}: not a readable NIR file ({type(err).__name__}: {err})"
                          ) from None
    return from_nir(graph)


def from_nir(graph, dt: float | None = None) -> SpikingMLP:
    """Rebuild a SpikingMLP from a NIR graph: exactly, from our metadata, for graphs that
    spikebench wrote; else from the continuous constants (Euler with ``dt``, default
    1e-3) for a chain Input -> (Linear -> CubaLIF [<-> Linear])+ -> Affine -> LI -> Output."""
    raw = graph.metadata.get("spikebench") if isinstance(graph.metadata, dict) else None
    meta = json.loads(raw) if isinstance(raw, str | bytes) else None
    nodes = graph.nodes
    hidden = sorted((k for k in nodes if k.startswith("lif")), key=lambda k: int(k[3:]))
    if not hidden or "fc_out" not in nodes or "readout" not in nodes:
        raise ConfigError("NIR graph is not a spiking MLP this version imports (expected "
                          "nodes fc0, lif0, ..., fc_out, readout)")
    if meta is not None and meta.get("format") == FORMAT:
        model = SpikingMLP.from_config(meta["config"])
    else:
        dt = dt or 1e-3
        sizes = [int(nodes["fc0"].weight.shape[1])]
        sizes += [int(nodes[f"fc{k}"].weight.shape[0]) for k in range(len(hidden))]
        sizes.append(int(nodes["fc_out"].weight.shape[0]))
        lif = nodes["lif0"]
        alpha = 1 - dt / float(np.mean(lif.tau_syn))
        beta = 1 - dt / float(np.mean(lif.tau_mem))
        params = LIFParams(alpha=alpha, beta=beta, threshold=float(np.mean(lif.v_threshold)),
                           gain=float(np.mean(lif.r)) * (1 - beta), reset="zero")
        kappa = 1 - dt / float(np.mean(nodes["readout"].tau))
        model = SpikingMLP(sizes, recurrent="rec0" in nodes, params=params, kappa=kappa)
    with torch.no_grad():
        for k, layer in enumerate(model.hidden):
            layer.weight.copy_(torch.from_numpy(np.asarray(nodes[f"fc{k}"].weight)))
            if layer.recurrent:
                layer.rec_weight.copy_(torch.from_numpy(np.asarray(nodes[f"rec{k}"].weight)))
        model.readout.weight.copy_(torch.from_numpy(np.asarray(nodes["fc_out"].weight)))
        model.readout.bias.copy_(torch.from_numpy(np.asarray(nodes["fc_out"].bias)))
    return model

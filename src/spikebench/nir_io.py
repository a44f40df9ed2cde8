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
that ``from_nir`` rebuilds the very same model.

``target="snntorch"`` writes the graph snnTorch 1.0's ``import_from_nir`` maps as it is: dt
must be its fixed 1e-4; the gain is folded into W and V (I' = gain I, so r = tau_mem / dt
as snnTorch asserts); the readout is the ``Affine`` alone (snnTorch has no LI), so
snnTorch's network outputs W s[t] + b per step, and our readout is that drive filtered
with kappa (``readout_kappa`` in the metadata). snnTorch resets to zero after the spike in
the same step (``reset_delay=False``), which gives the spikes of our ``reset="zero"``.

A graph from elsewhere (norse's ``to_nir``, snnTorch's ``export_to_nir``) is imported from
its topology and continuous constants (``from_nir``): a chain Input -> (Linear | Affine ->
CubaLIF | LIF, optionally with a recurrent Linear back into it)+ -> Linear | Affine ->
[LI] -> Output, nested subgraphs opened, torch tensors or numpy arrays in the nodes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from spikebench.errors import ConfigError
from spikebench.models import SpikingMLP
from spikebench.neurons import LIFLayer, LIFParams

FORMAT = "spikebench-nir-1"
TARGETS = ("nir", "snntorch")
# snnTorch 1.0's import_from_nir (and export_to_nir) take dt = 1e-4 as given; its CubaLIF
# mapping asserts r = tau_mem / dt and it has no node for LI
SNNTORCH_DT = 1e-4
SNNTORCH_FORMAT = FORMAT + "-snntorch"


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


def to_nir(model: SpikingMLP, dt: float = 1e-3, target: str = "nir"):
    """The NIR graph of ``model`` for ``target`` (module doc)."""
    import nir

    _check_exportable(model)
    if target not in TARGETS:
        raise ConfigError(f"unknown NIR target {target!r}; known: {', '.join(TARGETS)}")
    if not (dt > 0 and math.isfinite(dt)):
        raise ConfigError(f"dt must be a positive number of seconds, got {dt}")
    snntorch = target == "snntorch"
    if snntorch and not math.isclose(dt, SNNTORCH_DT, rel_tol=1e-12):
        raise ConfigError(f"dt {dt:g}: snnTorch 1.0 reads NIR graphs with its fixed dt of "
                          f"{SNNTORCH_DT:g} s; drop --dt or use --target nir")
    nodes: dict = {"input": nir.Input(input_type={"input": np.array([model.sizes[0]])})}
    edges: list[tuple[str, str]] = []
    prev = "input"
    for k, layer in enumerate(model.hidden):
        p = layer.params
        n = layer.n_out
        ones = np.ones(n, dtype=np.float32)
        gain = p.gain if snntorch else 1.0  # snnTorch: r = tau_mem / dt, the gain in W, V
        nodes[f"fc{k}"] = nir.Linear(weight=_np(layer.weight * gain))  # x 1.0 is exact
        nodes[f"lif{k}"] = nir.CubaLIF(
            tau_syn=ones * dt / (1 - p.alpha), tau_mem=ones * dt / (1 - p.beta),
            r=ones * (p.gain / gain) / (1 - p.beta), v_leak=ones * 0.0,
            v_threshold=ones * p.threshold, v_reset=ones * 0.0,
            w_in=ones / (1 - p.alpha))
        edges += [(prev, f"fc{k}"), (f"fc{k}", f"lif{k}")]
        if layer.recurrent:
            nodes[f"rec{k}"] = nir.Linear(weight=_np(layer.recurrent_matrix() * gain))
            edges += [(f"lif{k}", f"rec{k}"), (f"rec{k}", f"lif{k}")]
        prev = f"lif{k}"
    kappa, c = model.readout.kappa, model.sizes[-1]
    nodes["fc_out"] = nir.Affine(weight=_np(model.readout.weight), bias=_np(model.readout.bias))
    nodes["output"] = nir.Output(output_type={"output": np.array([c])})
    if snntorch:
        edges += [(prev, "fc_out"), ("fc_out", "output")]
    else:
        nodes["readout"] = nir.LI(tau=np.full(c, dt / (1 - kappa), dtype=np.float32),
                                  r=np.full(c, 1 / (1 - kappa), dtype=np.float32),
                                  v_leak=np.zeros(c, dtype=np.float32))
        edges += [(prev, "fc_out"), ("fc_out", "readout"), ("readout", "output")]
    meta = {"format": SNNTORCH_FORMAT if snntorch else FORMAT, "dt": dt,
            "config": model.config(), "readout_kappa": kappa,
            "note": "discrete-time LIF of spikebench; see spikebench.nir_io for the mapping"}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"spikebench": json.dumps(meta)})


def write_nir(model: SpikingMLP, path: str | Path, dt: float = 1e-3,
              target: str = "nir") -> None:
    import nir

    nir.write(str(path), to_nir(model, dt, target))


def read_nir(path: str | Path) -> SpikingMLP:
    """A SpikingMLP from a NIR file (``from_nir``), with a one-line error for a bad file."""
    import nir

    try:
        graph = nir.read(str(path))
    except Exception as err:  # h5py / format errors: the file is not a NIR graph
        raise ConfigError(f"{path}: not a readable NIR file ({type(err).__name__}: {err})"
                          ) from None
    return from_nir(graph)


def _meta(graph) -> dict | None:
    raw = graph.metadata.get("spikebench") if isinstance(graph.metadata, dict) else None
    try:
        meta = json.loads(raw) if isinstance(raw, str | bytes) else None
    except ValueError:
        return None
    return meta if isinstance(meta, dict) else None


def from_nir(graph, dt: float | None = None) -> SpikingMLP:
    """A SpikingMLP from a NIR graph: exactly, from our metadata, for graphs spikebench
    wrote with ``target="nir"``; else from the graph's topology and continuous constants
    (forward Euler with ``dt``: the metadata's, else 1e-3), module doc. What our model
    cannot hold (per-neuron constants, hidden biases, self-connections, a spiking output
    layer, ...) is a ``ConfigError`` naming the node."""
    meta = _meta(graph)
    if meta is not None and meta.get("format") == FORMAT:
        return _from_own(graph, meta)
    if dt is None:
        dt = float(meta["dt"]) if meta is not None and "dt" in meta else 1e-3
    kappa = float(meta["readout_kappa"]) if meta is not None and "readout_kappa" in meta \
        else None
    keep = {}
    if meta is not None and meta.get("format") == SNNTORCH_FORMAT:
        # our own snnTorch export: the neuron settings that NIR does not carry come back
        own = meta["config"]["params"]
        keep = {k: own[k] for k in ("reset", "detach_reset", "surrogate", "slope") if k in own}
    return _from_topology(graph, dt, kappa, keep)


def _from_own(graph, meta: dict) -> SpikingMLP:
    nodes = graph.nodes
    model = SpikingMLP.from_config(meta["config"])
    n = len(model.hidden)
    return _with_weights(model, [_arr(nodes[f"fc{k}"].weight) for k in range(n)],
                         [_arr(nodes[f"rec{k}"].weight) for k in range(n)]
                         if model.recurrent else [],
                         _arr(nodes["fc_out"].weight), _arr(nodes["fc_out"].bias))


def _with_weights(model: SpikingMLP, ws, recs, w_out, b_out) -> SpikingMLP:
    """``model`` with its hidden W (and, in REC, V), readout W and bias copied in."""
    with torch.no_grad():
        for k, layer in enumerate(model.hidden):
            layer.weight.copy_(torch.from_numpy(ws[k]))
            if recs:
                layer.rec_weight.copy_(torch.from_numpy(recs[k]))
        model.readout.weight.copy_(torch.from_numpy(w_out))
        model.readout.bias.copy_(torch.from_numpy(b_out))
    return model


def _arr(x) -> np.ndarray:
    """A node's field as a float64 numpy array: numpy arrays, torch tensors, scalars."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _one(node_name: str, field: str, value) -> float:
    """The single value of a per-neuron field (our layers share their constants)."""
    v = _arr(value).ravel()
    if v.size == 0:
        raise ConfigError(f"NIR node {node_name!r}: {field} is empty")
    if not np.allclose(v, v[0], rtol=1e-6, atol=0.0):
        raise ConfigError(f"NIR node {node_name!r}: {field} differs between neurons "
                          f"({v.min():g} .. {v.max():g}); spikebench's layers share one value")
    return float(v[0])


def _flattened(graph) -> tuple[dict, list[tuple[str, str]]]:
    """Nodes and edges with every nested NIRGraph opened (its nodes named OUTER.INNER;
    edges into it go to its Input's successors, edges out of it leave from its Output's
    predecessors)."""
    import nir

    nodes, edges = dict(graph.nodes), list(graph.edges)
    while True:
        inner_key = next((k for k, v in nodes.items() if isinstance(v, nir.NIRGraph)), None)
        if inner_key is None:
            return nodes, edges
        sub = nodes.pop(inner_key)
        sub_nodes, sub_edges = _flattened(sub)
        ins = [k for k, v in sub_nodes.items() if isinstance(v, nir.Input)]
        outs = [k for k, v in sub_nodes.items() if isinstance(v, nir.Output)]
        name = {k: k if k.startswith(f"{inner_key}.") else f"{inner_key}.{k}"
                for k in sub_nodes}
        entry = [name[b] for a, b in sub_edges if a in ins]
        exit_ = [name[a] for a, b in sub_edges if b in outs]
        for k, v in sub_nodes.items():
            if k not in ins and k not in outs:
                nodes[name[k]] = v
        edges = [e for e in edges if inner_key not in e] + [
            (name[a], name[b]) for a, b in sub_edges if a not in ins and b not in outs
        ] + [(a, t) for a, b in edges if b == inner_key for t in entry] + [
            (src, b) for a, b in edges if a == inner_key for src in exit_]


def _chain(graph) -> tuple[list[str], dict[str, str], dict]:
    """(the forward path of node names from the Input's successor to the Output's
    predecessor, {spiking node: its recurrent Linear}, nodes)."""
    import nir

    nodes, edges = _flattened(graph)
    edges = list(dict.fromkeys(tuple(e) for e in edges))
    succ: dict[str, list[str]] = {}
    pred: dict[str, list[str]] = {}
    for a, b in edges:
        succ.setdefault(a, []).append(b)
        pred.setdefault(b, []).append(a)
    spiking = (nir.CubaLIF, nir.LIF)
    rec = {}
    for k, v in nodes.items():  # a Linear whose only neighbour, both ways, is one LIF
        if isinstance(v, nir.Linear | nir.Affine) and len(succ.get(k, [])) == 1 \
                and succ[k] == pred.get(k) and isinstance(nodes[succ[k][0]], spiking):
            rec[succ[k][0]] = k
    inputs = [k for k, v in nodes.items() if isinstance(v, nir.Input)]
    if len(inputs) != 1:
        raise ConfigError(f"NIR graph has {len(inputs)} Input nodes; spikebench imports a "
                          "chain with one input")
    path, here = [], inputs[0]
    while True:
        nxt = [b for b in succ.get(here, []) if b != rec.get(here)]
        if not nxt:
            raise ConfigError(f"NIR graph: node {here!r} leads nowhere (no Output)")
        if len(nxt) > 1:
            raise ConfigError(f"NIR graph: node {here!r} branches to {nxt}; spikebench "
                              "imports a chain of layers")
        here = nxt[0]
        if isinstance(nodes[here], nir.Output):
            return path, rec, nodes
        if here in path:
            raise ConfigError(f"NIR graph: a cycle through {here!r} that is not a recurrent "
                              "Linear into one spiking layer")
        path.append(here)


def _hidden_params(key: str, node, dt: float) -> tuple[dict, float]:
    """(LIF parameters, the input scale folded into W and V) of a CubaLIF or LIF node."""
    import nir

    if _one(key, "v_leak", node.v_leak) != 0.0:
        raise ConfigError(f"NIR node {key!r}: v_leak is not 0; spikebench's LIF rests at 0")
    if getattr(node, "v_reset", None) is not None and _one(key, "v_reset", node.v_reset) != 0:
        raise ConfigError(f"NIR node {key!r}: v_reset is not 0; spikebench's zero reset is 0")
    if isinstance(node, nir.CubaLIF):
        tau_syn, tau_mem = _one(key, "tau_syn", node.tau_syn), _one(key, "tau_mem", node.tau_mem)
        scale = _one(key, "w_in", node.w_in) * dt / tau_syn
        alpha = 1 - dt / tau_syn
    else:
        tau_mem, scale, alpha = _one(key, "tau", node.tau), 1.0, 0.0
    beta = 1 - dt / tau_mem
    if not (0 <= alpha < 1 and 0 <= beta < 1):
        raise ConfigError(f"NIR node {key!r}: time constants shorter than dt={dt:g} "
                          f"(alpha {alpha:g}, beta {beta:g}); pass the graph's dt")
    return {"alpha": alpha, "beta": beta, "threshold": _one(key, "v_threshold",
            node.v_threshold), "gain": _one(key, "r", node.r) * dt / tau_mem,
            "reset": "zero"}, scale


def _weights(key: str, node, n_in: int | None, hidden: bool) -> np.ndarray:
    import nir

    w = _arr(node.weight)
    if w.ndim != 2 or (n_in is not None and w.shape[1] != n_in):
        raise ConfigError(f"NIR node {key!r}: weight of shape {w.shape} does not take the "
                          f"{n_in} inputs before it")
    if hidden and isinstance(node, nir.Affine) and np.any(_arr(node.bias) != 0):
        raise ConfigError(f"NIR node {key!r}: a bias into a spiking layer; spikebench's "
                          "hidden layers have none")
    return w


def _from_topology(graph, dt: float, kappa: float | None, keep: dict) -> SpikingMLP:
    import nir

    path, rec, nodes = _chain(graph)
    path = [k for k in path if not isinstance(nodes[k], nir.Flatten)]
    kinds = [type(nodes[k]).__name__ for k in path]
    dense, spiking = (nir.Linear, nir.Affine), (nir.CubaLIF, nir.LIF)
    layers, i = [], 0
    while i + 1 < len(path) and isinstance(nodes[path[i]], dense) \
            and isinstance(nodes[path[i + 1]], spiking):
        layers.append((path[i], path[i + 1]))
        i += 2
    tail = path[i:]
    ok_tail = (len(tail) == 1 and isinstance(nodes[tail[0]], dense)) or (
        len(tail) == 2 and isinstance(nodes[tail[0]], dense)
        and isinstance(nodes[tail[1]], nir.LI))
    if not layers or not ok_tail:
        raise ConfigError(f"NIR graph {' -> '.join(kinds)}: spikebench imports (Linear -> "
                          "CubaLIF | LIF)+ -> Linear | Affine [-> LI]; a spiking or other "
                          "output layer has no counterpart in its non-spiking readout")
    if len({k in rec for _, k in layers}) > 1:
        raise ConfigError("NIR graph: some spiking layers are recurrent and some are not; "
                          "spikebench's REC networks are recurrent in every layer")
    found = [_hidden_params(k, nodes[k], dt) for _, k in layers]
    params = found[0][0]
    for (_, k), (p, _) in zip(layers, found, strict=True):
        if any(not math.isclose(p[f], params[f], rel_tol=1e-6) for f in
               ("alpha", "beta", "threshold", "gain")):
            raise ConfigError(f"NIR node {k!r}: constants differ from the first spiking "
                              "layer's; spikebench's layers share one neuron setting")
    ws, recs, n_in = [], [], None
    for (fc, lif), (_, scale) in zip(layers, found, strict=True):
        w = _weights(fc, nodes[fc], n_in, hidden=True)
        ws.append(w * scale)
        n_in = w.shape[0]
        if lif in rec:
            v = _weights(rec[lif], nodes[rec[lif]], n_in, hidden=True)
            if v.shape != (n_in, n_in) or np.any(np.diag(v) != 0):
                raise ConfigError(f"NIR node {rec[lif]!r}: a recurrent weight with "
                                  "self-connections (a nonzero diagonal) or of another "
                                  "shape; spikebench's V has none")
            recs.append(v * scale)
    out = nodes[tail[0]]
    w_out = _weights(tail[0], out, n_in, hidden=False)
    b_out = _arr(out.bias) if isinstance(out, nir.Affine) else np.zeros(w_out.shape[0])
    if len(tail) == 2:
        li = nodes[tail[1]]
        if _one(tail[1], "v_leak", li.v_leak) != 0.0:
            raise ConfigError(f"NIR node {tail[1]!r}: v_leak is not 0")
        tau = _one(tail[1], "tau", li.tau)
        kappa, scale = 1 - dt / tau, _one(tail[1], "r", li.r) * dt / tau
        w_out, b_out = w_out * scale, b_out * scale
    kappa = 0.0 if kappa is None else kappa
    sizes = [ws[0].shape[1]] + [w.shape[0] for w in ws] + [w_out.shape[0]]
    model = SpikingMLP(sizes, recurrent=bool(recs), params=LIFParams(**{**params, **keep}),
                       kappa=kappa)
    return _with_weights(model, ws, recs, w_out, b_out)

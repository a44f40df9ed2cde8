"""Spiking multi-layer perceptron: FF or REC hidden layers of spiking neurons and a
non-spiking leaky readout.

The model exposes its layers (``hidden``: each with ``weight`` W and, in REC, ``rec_weight``
V; ``readout`` with ``weight`` and ``bias``) and a single-step function ``step`` so that
online rules can drive it step by step; ``forward`` unrolls the very same ``step``.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import NamedTuple

import torch
from torch import nn

from spikebench.models.contracts import layer_weight_groups
from spikebench.neurons import NEURONS, LIFLayer
from spikebench.sparse import EventBatch, dense, sequence_linear


def time_major(x: torch.Tensor, n_in: int) -> torch.Tensor:
    """Batch-first inputs that carry their time steps, ``[B, ...]``, as ``[T, B, n_in]``."""
    per_sample = x[0].numel() if len(x) else 0
    if per_sample % n_in:
        raise ValueError(f"input of shape {tuple(x.shape)} does not split into time "
                         f"steps of {n_in} features")
    return x.reshape(x.shape[0], -1, n_in).transpose(0, 1)

class LeakyReadout(nn.Module):
    """Non-spiking leaky integrator: y[t] = kappa y[t-1] + W s[t] + b."""

    def __init__(self, n_in: int, n_out: int, kappa: float = 0.9) -> None:
        super().__init__()
        if not 0.0 <= kappa < 1.0:
            raise ValueError(f"readout kappa must lie in [0, 1), got {kappa}")
        self.n_in, self.n_out, self.kappa = n_in, n_out, kappa
        self.weight = nn.Parameter(torch.empty(n_out, n_in))
        self.bias = nn.Parameter(torch.zeros(n_out))
        bound = 1.0 / math.sqrt(n_in)
        nn.init.uniform_(self.weight, -bound, bound)

    def step(self, s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.kappa * y + s @ self.weight.t() + self.bias


class MLPState(NamedTuple):
    layers: tuple  # one neuron state per hidden layer
    y: torch.Tensor  # readout value


class SpikingMLP(nn.Module):
    """``sizes`` = (n_in, hidden..., n_classes)."""

    def __init__(
        self,
        sizes: tuple[int, ...] | list[int],
        recurrent: bool = False,
        neuron: str = "lif",
        params=None,
        kappa: float = 0.9,
        weight_scale: float = 1.0,
        rec_scale: float = 1.0,
    ) -> None:
        super().__init__()
        sizes = tuple(int(s) for s in sizes)
        if len(sizes) < 3 or min(sizes) < 1:
            raise ValueError(
                f"sizes must be (n_in, hidden..., n_out) with at least one hidden layer, "
                f"got {sizes}"
            )
        self.sizes, self.recurrent, self.neuron = sizes, recurrent, neuron
        entry = NEURONS.get(neuron)
        self.params = params or entry.params()
        if not isinstance(self.params, entry.params):
            raise TypeError(f"neuron {neuron!r} takes {entry.params.__name__}, "
                            f"got {type(self.params).__name__}")
        self.kappa, self.weight_scale, self.rec_scale = kappa, weight_scale, rec_scale
        self.parallel = not entry.stepwise  # whole sequences at once, no step function
        self.hidden = nn.ModuleList(
            entry.make_layer(a, b, recurrent=recurrent, params=self.params,
                             weight_scale=weight_scale, rec_scale=rec_scale)
            for a, b in zip(sizes[:-2], sizes[1:-1], strict=True)
        )
        self.readout = LeakyReadout(sizes[-2], sizes[-1], kappa)

    # -- configuration, so that analyses can rebuild any saved model ------------------
    def config(self) -> dict:
        return {
            "sizes": list(self.sizes),
            "recurrent": self.recurrent,
            "neuron": self.neuron,
            "params": asdict(self.params),
            "kappa": self.kappa,
            "weight_scale": self.weight_scale,
            "rec_scale": self.rec_scale,
        }

    @classmethod
    def from_config(cls, cfg: dict) -> SpikingMLP:
        cfg = dict(cfg)
        cfg["params"] = NEURONS.get(cfg.get("neuron", "lif")).params(**cfg["params"])
        return cls(**cfg)

    # -- dynamics --------------------------------------------------------------------
    def flatten_input(self, x: torch.Tensor | EventBatch) -> torch.Tensor | EventBatch:
        """[T, B, ...] -> [T, B, n_in], with a clear error on a shape mismatch (an
        ``EventBatch`` stays sparse, in the model's dtype)."""
        if isinstance(x, EventBatch):
            if x.shape[2] != self.sizes[0]:
                raise ValueError(f"input has {x.shape[2]} features per time step, but the "
                                 f"model expects {self.sizes[0]} (sizes {self.sizes})")
            return x.to(self.readout.weight.dtype)
        if x.dim() < 3:
            raise ValueError(f"input must be time-major [T, B, ...], got shape {tuple(x.shape)}")
        flat = x.reshape(x.shape[0], x.shape[1], -1)
        if flat.shape[-1] != self.sizes[0]:
            raise ValueError(
                f"input has {flat.shape[-1]} features per time step (shape {tuple(x.shape)}), "
                f"but the model expects {self.sizes[0]} (sizes {self.sizes})"
            )
        return flat.to(self.readout.weight.dtype)

    def initial_state(self, batch: int, like: torch.Tensor) -> MLPState:
        layers = tuple(layer.initial_state(batch, like) for layer in self.hidden)
        y = torch.zeros(batch, self.sizes[-1], dtype=like.dtype, device=like.device)
        return MLPState(layers, y)

    def step(self, x_t: torch.Tensor, state: MLPState) -> tuple[torch.Tensor, MLPState]:
        """One time step: ``x_t`` [B, n_in] -> readout [B, C] and the new state."""
        if self.parallel:
            raise TypeError(f"{self.neuron!r} layers compute whole sequences; they have no "
                            "single-step function (use forward)")
        h = x_t
        new_layers = []
        for layer, st in zip(self.hidden, state.layers, strict=True):
            h, st = layer.step(h, st)
            new_layers.append(st)
        y = self.readout.step(h, state.y)
        return y, MLPState(tuple(new_layers), y)

    def forward(
        self, x: torch.Tensor, record: bool = False, reference: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Readout [T, B, C] over [T, B, ...] (and, with ``record``, the spikes [T, B, n_k]
        of every hidden layer). LIF layers take the fast path (``_forward_sequence``:
        whole-sequence GEMMs, the fused LIF scan; an ``EventBatch`` input stays sparse in
        the first layer); ``reference=True`` unrolls ``step``, the definition the fast path
        is tested against."""
        x = self.flatten_input(x)
        if not reference and all(isinstance(layer, LIFLayer) for layer in self.hidden):
            return self._forward_sequence(x, record)
        x = dense(x)
        if self.parallel:
            return self._forward_parallel(x, record)
        state = self.initial_state(x.shape[1], x)
        ys, spikes = [], [[] for _ in self.hidden]
        for x_t in x:
            y, state = self.step(x_t, state)
            ys.append(y)
            if record:
                for k, st in enumerate(state.layers):
                    spikes[k].append(st.s)
        out = torch.stack(ys)
        if record:
            return out, [torch.stack(s) for s in spikes]
        return out

    # -- what the analyses see (models.contracts.Probed) --------------------------------
    batch_dim = 1  # time-major input [T, B, ...]

    def probe(self, x, reference: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(readout [T, B, C], spikes of every hidden layer [T, B, n_k])."""
        return self.forward(x, record=True, reference=reference)

    def layer_names(self) -> list[str]:
        return [f"h{k + 1}" for k in range(len(self.hidden))]

    def weight_groups(self) -> dict[str, str]:
        return layer_weight_groups(self, {**dict(zip(self.layer_names(), self.hidden,
                                                     strict=True)), "out": self.readout})

    def _forward_sequence(self, x: torch.Tensor, record: bool):
        """The same computation as unrolling ``step``, reordered for speed: a layer's input
        current for all T steps is one [T B, n_in] x [n_in, n] GEMM; a feed-forward layer's
        recurrence is the fused scan (``lif_scan``; in a recurrent layer only V s[t-1] stays
        inside its loop); the readout's W s is one GEMM, its leak a short scan. Sparse
        input: the first layer's current is one CSR x dense product (``event_linear``)."""
        batch = x.shape[1]
        spikes, h = [], x
        for layer in self.hidden:
            h = layer(h)  # LIFLayer.forward: one GEMM (CSR for events), the fused scan
            spikes.append(h)
        drive = sequence_linear(h, self.readout.weight) + self.readout.bias
        y = drive.new_zeros(batch, self.sizes[-1])
        ys = []
        for d_t in drive.unbind(0):  # y[t] = kappa y[t-1] + W s[t] + b
            y = self.readout.kappa * y + d_t
            ys.append(y)
        out = torch.stack(ys)
        return (out, spikes) if record else out

    def _forward_parallel(self, x: torch.Tensor, record: bool):
        spikes, h = [], x
        for layer in self.hidden:
            h = layer(h)
            spikes.append(h)
        y = torch.zeros(x.shape[1], self.sizes[-1], dtype=x.dtype, device=x.device)
        ys = []
        for h_t in h:  # the readout's leak: a cheap scan over time
            y = self.readout.step(h_t, y)
            ys.append(y)
        out = torch.stack(ys)
        return (out, spikes) if record else out


PRESETS: dict[str, tuple[int, ...]] = {
    "nmnist": (2 * 34 * 34, 120, 84, 10),  # the locality paper's N-MNIST network
    "timit": (39, 400, 61),  # the locality paper's TIMIT network
    "fsdd": (39, 200, 10),  # spoken digits: the TIMIT network's shape, scaled down
    "mnist": (784, 120, 84, 10),  # 28x28 images, the N-MNIST network's hidden sizes
    "cifar10": (3072, 120, 84, 10),  # 32x32x3 images
    "cifar100": (3072, 120, 84, 100),
    "shd": (700, 128, 20),  # Cramer et al.'s one hidden layer of 128 (700 channels)
    "ssc": (700, 128, 35),
    "dvsgesture": (2 * 32 * 32, 120, 84, 11),  # pooled 32 x 32 x 2, the N-MNIST net's hidden
}


def preset(name: str, recurrent: bool = False, **kw) -> SpikingMLP:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    return SpikingMLP(PRESETS[name], recurrent=recurrent, **kw)

"""The contracts between models and what uses them, written as Protocols.

- ``Probed``: what the analyses (CKA, Fisher) and the studies ask of a trained model,
  whatever its kind: a spiking MLP, a conv SNN or ANN, a hybrid's spiking head. They never
  branch on a model's class.
- ``Unrollable``: what the learning rules ask of a spiking MLP (BPTT unrolls ``forward``;
  the online rules run ``step`` and reach the layers' weights and neuron parameters).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class Probed(Protocol):
    batch_dim: int  # where the samples are in the model's input (1: time-major, 0: batch-first)

    def probe(self, x, reference: bool = False
              ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(the readout at every step [T, B, C], whose mean over the steps after burn-in is
        the decision, and the output of every spiking (or ReLU) layer [T, B, ...], in running
        order). ``x`` is the model's own input (time-major frames for an MLP, images for a
        conv net, features for a head); ``reference`` asks for the unrolled definition where
        a model has a fused fast path (per-sample gradients go through it)."""

    def layer_names(self) -> list[str]:
        """One name per layer output of ``probe`` (``h1``, ``conv2``, ``head``, ...)."""

    def weight_groups(self) -> dict[str, str]:
        """Weight group (``<layer>.LW`` for input/feed-forward weights, ``<layer>.RW`` for
        recurrent ones, ``out.LW`` for the readout) -> the parameter's name; biases left out."""


class Unrollable(Protocol):
    """The model contract of ``learning_rules``: ``forward(x [T, B, ...]) -> [T, B, C]``
    (``record=True`` adds the hidden spikes), ``step(x_t, state) -> (y_t, state)`` from
    ``initial_state(batch, like)``, ``flatten_input``, the hidden layers (``hidden``: each
    with ``weight``, optional ``rec_weight``, ``input_current`` and ``step``), the
    ``readout`` (``weight``, ``bias``, ``kappa``), and ``parallel`` (True: whole sequences
    only, no ``step``)."""

    hidden: nn.ModuleList
    readout: nn.Module
    parallel: bool

    def forward(self, x: torch.Tensor, record: bool = False, reference: bool = False): ...

    def step(self, x_t: torch.Tensor, state): ...

    def initial_state(self, batch: int, like: torch.Tensor): ...

    def flatten_input(self, x): ...


def layer_weight_groups(model: nn.Module, layers: dict[str, nn.Module]) -> dict[str, str]:
    """``{label.LW: name of its weight, label.RW: of its recurrent weight}`` for each
    labelled layer module of ``model`` (the helper ``Probed.weight_groups`` implementations
    share)."""
    names = {id(m): n for n, m in model.named_modules()}
    groups = {}
    for label, layer in layers.items():
        prefix = names[id(layer)]
        groups[f"{label}.LW"] = f"{prefix}.weight" if prefix else "weight"
        if getattr(layer, "rec_weight", None) is not None:
            groups[f"{label}.RW"] = f"{prefix}.rec_weight" if prefix else "rec_weight"
    return groups

"""Pure neuron dynamics behind one explicit interface (``spikebench.neurons.base``):
step-wise LIF, ParaLIF (parallel in time), and surrogate spike functions.

``NEURONS`` maps a neuron name to a ``Neuron`` entry: its ``SpikingLayer`` class, its
parameter dataclass, a description, the spec fields it takes and its spiking-head settings.
Adding a neuron is one file plus one line here.
"""

from spikebench.neurons.base import SPEC_NEURON_FIELDS, Neuron, SpikingLayer
from spikebench.neurons.dlif import DLIFLayer, DLIFParams, SpikingActivation, dlif_scan
from spikebench.neurons.lif import LIFLayer, LIFParams, LIFState, lif_initial_state, lif_step
from spikebench.neurons.paralif import ParaLIFLayer, ParaLIFParams
from spikebench.neurons.surrogate import spike, spike_derivative, surrogate_names
from spikebench.registry import Registry

NEURONS: Registry[Neuron] = Registry("neuron")
NEURONS.register("lif", Neuron(
    LIFLayer, LIFParams, LIFLayer.description, spec_fields=SPEC_NEURON_FIELDS))
NEURONS.register("paralif", Neuron(
    ParaLIFLayer, ParaLIFParams, ParaLIFLayer.description,
    spec_fields=("alpha", "beta", "surrogate", "slope"),  # its own threshold (0.1), no reset
    head_params={"spike_fn": "SB"}))
NEURONS.register("dlif", Neuron(
    DLIFLayer, DLIFParams, DLIFLayer.description,
    spec_fields=("threshold",),  # its own paper defaults otherwise (--neuron-option)
    head_params={"steps": 64}))

__all__ = [
    "NEURONS",
    "DLIFLayer",
    "DLIFParams",
    "SpikingActivation",
    "dlif_scan",
    "SPEC_NEURON_FIELDS",
    "Neuron",
    "SpikingLayer",
    "LIFLayer",
    "LIFParams",
    "LIFState",
    "ParaLIFLayer",
    "ParaLIFParams",
    "lif_initial_state",
    "lif_step",
    "spike",
    "spike_derivative",
    "surrogate_names",
]

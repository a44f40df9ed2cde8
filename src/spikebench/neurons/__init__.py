"""Pure neuron dynamics: LIF (and, later, ParaLIF) and surrogate spike functions.

``NEURONS`` maps a neuron name to its layer class; a layer class is built as
``cls(n_in, n_out, recurrent=..., params=...)`` and exposes ``initial_state``, ``step``
and ``forward``.
"""

from spikebench.neurons.lif import LIFLayer, LIFParams, LIFState, lif_initial_state, lif_step
from spikebench.neurons.surrogate import spike, spike_derivative, surrogate_names
from spikebench.registry import Registry

NEURONS: Registry[type] = Registry("neuron")
NEURONS.register("lif", LIFLayer)

__all__ = [
    "NEURONS",
    "LIFLayer",
    "LIFParams",
    "LIFState",
    "lif_initial_state",
    "lif_step",
    "spike",
    "spike_derivative",
    "surrogate_names",
]

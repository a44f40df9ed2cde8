"""Pure neuron dynamics: LIF (and, later, ParaLIF) and surrogate spike functions.

``NEURONS`` maps a neuron name to (layer class, parameter class). A layer is built as
``cls(n_in, n_out, recurrent=..., params=..., weight_scale=..., rec_scale=...)``; it has
``weight`` (and ``rec_weight`` in REC) and ``forward`` over a whole sequence. Step-wise
layers (LIF) also have ``initial_state`` and ``step``; parallel ones (ParaLIF) set
``parallel = True``.
"""

from spikebench.neurons.lif import LIFLayer, LIFParams, LIFState, lif_initial_state, lif_step
from spikebench.neurons.paralif import ParaLIFLayer, ParaLIFParams
from spikebench.neurons.surrogate import spike, spike_derivative, surrogate_names
from spikebench.registry import Registry

NEURONS: Registry[tuple[type, type]] = Registry("neuron")
NEURONS.register("lif", (LIFLayer, LIFParams))
NEURONS.register("paralif", (ParaLIFLayer, ParaLIFParams))

__all__ = [
    "NEURONS",
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

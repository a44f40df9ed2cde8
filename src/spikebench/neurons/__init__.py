"""Pure neuron dynamics behind one explicit interface (``spikebench.neurons.base``):
step-wise LIF and adaptive LIF (ALIF), ParaLIF (parallel in time), DLIF, and surrogate
spike functions.

``NEURONS`` maps a neuron name to a ``Neuron`` entry: its parameter dataclass, its
weightless dynamics (currents of any shape -> spikes: after a Linear layer, a convolution,
in a spiking head), its own ``SpikingLayer`` where it has a fused one, a description, the
spec fields it takes and its spiking-head settings. Adding a neuron is one file plus one
line here.
"""

from spikebench.errors import ConfigError
from spikebench.neurons.alif import ALIFDynamics, ALIFParams, ALIFState, alif_step
from spikebench.neurons.base import (
    SPEC_NEURON_FIELDS,
    DynamicsLayer,
    Neuron,
    NeuronDynamics,
    SpikingLayer,
    per_neuron,
    reference_mode,
)
from spikebench.neurons.dlif import DLIFLayer, DLIFParams, SpikingActivation, dlif_scan
from spikebench.neurons.lif import (
    LIFDynamics,
    LIFLayer,
    LIFParams,
    LIFState,
    lif_initial_state,
    lif_step,
)
from spikebench.neurons.paralif import ParaLIFDynamics, ParaLIFLayer, ParaLIFParams
from spikebench.neurons.surrogate import spike, spike_derivative, surrogate_names
from spikebench.registry import Registry

NEURONS: Registry[Neuron] = Registry("neuron")
NEURONS.register("lif", Neuron(
    LIFParams, LIFDynamics, LIFDynamics.description, layer=LIFLayer,
    spec_fields=SPEC_NEURON_FIELDS))
NEURONS.register("paralif", Neuron(
    ParaLIFParams, ParaLIFDynamics, ParaLIFDynamics.description, layer=ParaLIFLayer,
    spec_fields=("alpha", "beta", "surrogate", "slope"),  # its own threshold (0.1), no reset
    head_params={"spike_fn": "SB"}))
NEURONS.register("dlif", Neuron(
    DLIFParams, SpikingActivation, SpikingActivation.description, layer=DLIFLayer,
    spec_fields=("threshold",),  # its own paper defaults otherwise (--neuron-option)
    head_params={"steps": 64}))
NEURONS.register("alif", Neuron(
    ALIFParams, ALIFDynamics, ALIFDynamics.description, spec_fields=SPEC_NEURON_FIELDS))



def neuron_of(params) -> tuple[str, Neuron]:
    """The registered neuron whose parameter class ``params`` is an instance of."""
    for name, entry in NEURONS.items():
        if type(params) is entry.params:
            return name, entry
    raise ConfigError(f"{type(params).__name__} is no registered neuron's parameters; "
                      f"known: {', '.join(e.params.__name__ for e in NEURONS.values())}")


__all__ = [
    "ALIFDynamics",
    "ALIFParams",
    "ALIFState",
    "alif_step",
    "reference_mode",
    "neuron_of",
    "NEURONS",
    "DynamicsLayer",
    "LIFDynamics",
    "NeuronDynamics",
    "ParaLIFDynamics",
    "per_neuron",
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

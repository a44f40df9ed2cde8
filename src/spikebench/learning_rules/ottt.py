r"""OTTT: online training through time (Xiao et al., NeurIPS 2022).

At every step the instantaneous loss's error reaches each hidden layer through the spatial
path alone (the readout W_out, then each layer above at the same step: ``spatial_errors``),
and meets the presynaptic activity trace of the layer's input:

    g_U_k[t]  = dl_t/dU_k[t]        through layers at step t only (no path back in time)
    dE/dW_ji  = sum_t g_U_kj[t] a_i[t]

OTTT's trace a[t] = lambda a[t-1] + s_in[t] is, for our two-filter LIF, the exact
dU[t]/dW with the reset and the input held constant: eps_U (online.py, alpha then beta,
times the gain); it reduces to the paper's trace when alpha = 0. The recurrent weights of a
REC layer take the trace of s[t-1]. The readout gets its exact gradient. No backward
through time, no per-synapse state: the traces are per presynaptic neuron, so memory is
flat in T; with ``chunk=K`` the steps are taken K at a time (the traces' contraction is one
product per chunk, ``InputTrace.contract``), ``chunk=1`` is the per-step form.

Checks (tests): autograd of its defining loss, sum_t <g_U[t], U[t]> with g_U from a
forward whose states are detached at every step and U from one where only the membrane's
linear history keeps its graph; and SpikingJelly 2's ``OTTTLIFNode`` on the same net where
it is installed (alpha = 0).
"""

from __future__ import annotations

from spikebench.learning_rules.spatial import SpatialRule


class OTTT(SpatialRule):
    """OTTT: the instantaneous spatial error x presynaptic activity traces, online."""

    name = "ottt"
    credit_space = "backprop through layers at each step"
    credit_time = "presynaptic traces, no backward in time"

    def grads(self, lc, g_u):
        return lc.inp.contract(g_u), lc.rec.contract(g_u) if lc.rec is not None else None

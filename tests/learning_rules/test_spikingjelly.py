"""OTTT and SLTT against SpikingJelly 2's ``OTTTLIFNode`` / ``SLTTLIFNode`` on the same
network (installed by ``make setup`` without its dependencies; skipped where it is absent).

The neurons coincide where both models are the same: no synaptic filter (alpha = 0), input
gain 1, a memoryless readout (kappa = 0) and no leak. SpikingJelly's subtractive reset acts
before the decay (beta (U - theta s)), ours after it (beta U - theta s), so only beta = 1
makes the two forwards equal; tau = 1e15 is beta = 1 to 1e-15. SpikingJelly's first Linear
sees the raw input, not a trace (``OTTTSequential`` traces spikes only), so there OTTT's
first layer takes the instantaneous input and is compared with ours where that holds:
the layers above it. Its OTTT readout also learns from the spike trace, where every rule of
ours gives the readout its exact gradient: the readouts are compared for SLTT only."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikebench.learning_rules import make_rule
from spikebench.models import SpikingMLP
from spikebench.neurons import LIFParams

sj_neuron = pytest.importorskip("spikingjelly.activation_based.neuron",
                                reason="SpikingJelly 2 is not installed (make setup installs it)")
from spikingjelly.activation_based import functional, layer, surrogate  # noqa: E402

# the step_ce weights 1/(T B) are in torch's default dtype (float32) in every rule
RTOL = 1e-7
PARAMS = LIFParams(alpha=0.0, beta=1.0, threshold=0.6, gain=1.0, surrogate="sigmoid",
                   slope=4.0)


def pair(kind: str):
    torch.manual_seed(0)
    ours = SpikingMLP((7, 9, 6, 3), params=PARAMS, kappa=0.0, weight_scale=3.0).double()
    node = {"ottt": sj_neuron.OTTTLIFNode, "sltt": sj_neuron.SLTTLIFNode}[kind]
    kw = dict(tau=1e15, decay_input=False, v_threshold=PARAMS.threshold, v_reset=None,
              surrogate_function=surrogate.Sigmoid(alpha=PARAMS.slope), detach_reset=True)
    mods = [nn.Linear(7, 9, bias=False), node(**kw), nn.Linear(9, 6, bias=False), node(**kw),
            nn.Linear(6, 3)]
    seq = (layer.OTTTSequential if kind == "ottt" else nn.Sequential)(*mods).double()
    with torch.no_grad():
        seq[0].weight.copy_(ours.hidden[0].weight)
        seq[2].weight.copy_(ours.hidden[1].weight)
        seq[4].weight.copy_(ours.readout.weight)
        seq[4].bias.copy_(ours.readout.bias)
    return ours, seq


def sj_grads(seq, x, y):
    """SpikingJelly's online training: the loss of every step, backpropagated at that step."""
    seq.train()
    functional.reset_net(seq)
    seq.zero_grad()
    steps = x.shape[0]
    for t in range(steps):
        (F.cross_entropy(seq(x[t]), y) / steps).backward()
    return seq[0].weight.grad, seq[2].weight.grad, seq[4].weight.grad


@pytest.mark.parametrize("kind", ["ottt", "sltt"])
def test_ours_equals_spikingjelly_on_the_same_net(kind):
    ours, seq = pair(kind)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(20, 5, 7, generator=g, dtype=torch.float64) < 0.4).double()
    y = torch.randint(0, 3, (5,), generator=g)
    w1, w2, w_out = sj_grads(seq, x, y)
    rule = make_rule(kind, chunk=7)
    rule.prepare(ours)
    rule.backward(ours, x, y)
    assert float(ours.hidden[1].weight.grad.abs().max()) > 0  # spikes reached layer 2
    torch.testing.assert_close(ours.hidden[1].weight.grad, w2, rtol=RTOL, atol=1e-12)
    if kind == "sltt":  # SpikingJelly's OTTT readout takes the spike trace too; ours its
        # exact gradient (the same for every rule)
        torch.testing.assert_close(ours.readout.weight.grad, w_out, rtol=RTOL, atol=1e-12)
    first = ours.hidden[0].weight.grad
    if kind == "ottt":  # SpikingJelly's first layer: the instantaneous input (SLTT's)
        sltt = make_rule("sltt")
        sltt.backward(ours, x, y)
        first = ours.hidden[0].weight.grad
    torch.testing.assert_close(first, w1, rtol=RTOL, atol=1e-12)

"""ALIF: its layer against the equations written out step by step (float64), LIF as its
adapt = 0 special case, spike-frequency adaptation, and training by BPTT and truncated BPTT
(the online rules other than e-prop refuse it, naming why)."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from spikebench.errors import ConfigError
from spikebench.learning_rules import make_rule
from spikebench.models import SpikingMLP
from spikebench.neurons import NEURONS, ALIFParams, LIFParams

P = ALIFParams(alpha=0.8, beta=0.85, threshold=0.6, slope=2.0, rho=0.9, adapt=0.3)


def by_hand(x, w, v, p):
    """The module doc's equations, one neuron and one step at a time, in numpy."""
    steps, batch, _ = x.shape
    n = w.shape[0]
    out, membranes = np.zeros((steps, batch, n)), np.zeros((steps, batch, n))
    for b in range(batch):
        i, u, a, s = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
        for t in range(steps):
            cur = w @ x[t, b] + (v @ s if v is not None else 0.0)
            i = p.alpha * i + cur
            a = p.rho * a + s
            if p.reset == "subtract":
                u = p.beta * u + p.gain * i - p.threshold * s
            else:
                u = p.beta * u * (1 - s) + p.gain * i
            s = (u - (p.threshold + p.adapt * a) > 0).astype(float)
            out[t, b], membranes[t, b] = s, u
    return out, membranes


def layer(recurrent, p=P, seed=0):
    torch.manual_seed(seed)
    return NEURONS.get("alif").make_layer(6, 5, recurrent=recurrent, params=p,
                                          weight_scale=3.0, rec_scale=2.0).double()


@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_layer_equals_the_equations_by_hand(recurrent, reset):
    p = replace(P, reset=reset)
    lay = layer(recurrent, p)
    x = (torch.rand(40, 3, 6, generator=torch.Generator().manual_seed(1),
                    dtype=torch.float64) < 0.4).double()
    v = lay.rec_weight.detach().numpy() if recurrent else None
    spikes, membranes = by_hand(x.numpy(), lay.weight.detach().numpy(), v, p)
    with torch.no_grad():
        np.testing.assert_array_equal(lay(x).numpy(), spikes)
        np.testing.assert_allclose(lay.membranes(x).numpy(), membranes, rtol=1e-12,
                                   atol=1e-12)
    assert 0 < spikes.mean() < 0.9  # neither silent nor saturated: the check bites


@pytest.mark.parametrize("recurrent", [False, True])
def test_adapt_zero_is_lif(recurrent):
    lif_p = LIFParams(alpha=0.8, beta=0.85, threshold=0.6, slope=2.0)
    torch.manual_seed(3)
    lif = SpikingMLP((6, 5, 3), recurrent=recurrent, params=lif_p, weight_scale=3.0).double()
    alif = SpikingMLP((6, 5, 3), recurrent=recurrent, neuron="alif",
                      params=replace(P, adapt=0.0), weight_scale=3.0).double()
    state = dict(lif.state_dict())
    if recurrent:  # LIF holds V's diagonal at zero; give ALIF the same V
        state["hidden.0.rec_weight"] = lif.hidden[0].recurrent_matrix().detach()
    alif.load_state_dict(state)
    x = (torch.rand(30, 4, 6, generator=torch.Generator().manual_seed(2),
                    dtype=torch.float64) < 0.4).double()
    with torch.no_grad():
        torch.testing.assert_close(alif(x), lif(x), rtol=1e-12, atol=1e-12)


def test_a_constant_drive_adapts_the_rate():
    """Spike-frequency adaptation: under a constant input ALIF's inter-spike intervals
    grow and it fires less than LIF."""
    drive = torch.full((200, 1, 1), 0.3, dtype=torch.float64)
    dyn = NEURONS.get("alif").make_dynamics(replace(P, rho=0.98, adapt=0.5), 1)
    lif = NEURONS.get("lif").make_dynamics(LIFParams(alpha=0.8, beta=0.85, threshold=0.6), 1)
    s_alif, s_lif = dyn(drive).flatten(), lif(drive).flatten()
    times = torch.nonzero(s_alif).flatten()
    gaps = times.diff().double()
    assert len(times) > 4 and gaps[-1] > gaps[0]
    assert s_alif.sum() < s_lif.sum()


def test_bptt_and_truncated_bptt_train_it_and_other_online_rules_refuse_it():
    torch.manual_seed(0)
    model = SpikingMLP((6, 8, 3), recurrent=True, neuron="alif", params=P, weight_scale=3.0)
    x = (torch.rand(20, 5, 6) < 0.4).float()
    y = torch.tensor([0, 1, 2, 0, 1])
    for rule in ("bptt", "tbptt"):
        model.zero_grad(set_to_none=True)
        make_rule(rule).backward(model, x, y)
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    for rule in ("decolle", "ottt", "drtp"):
        with pytest.raises(TypeError, match="needs LIF hidden layers"):
            make_rule(rule).prepare(model)


def test_bad_parameters_are_named():
    for bad, message in (({"rho": 1.5}, "rho must lie in"), ({"adapt": -1.0}, "adapt"),
                         ({"reset": "sideways"}, "reset must be one of")):
        with pytest.raises(ConfigError, match=message):
            ALIFParams(**bad)

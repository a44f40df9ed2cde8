"""The DLIF neuron (Ding et al. 2024) against our LIF where they coincide, finite
differences, and its gradient routes."""

import pytest
import torch

from spikebench.neurons import DLIFParams, LIFParams, SpikingActivation, dlif_scan, lif_step
from spikebench.neurons.lif import lif_initial_state


def lif_reference(current, leak, reset, threshold):
    """Our LIF (alpha = 0: no synaptic filter) unrolled: spikes and membranes."""
    p = LIFParams(alpha=0.0, beta=leak, threshold=threshold, reset=reset)
    state = lif_initial_state(current.shape[1], current.shape[2], current.dtype)
    out, us = [], []
    for c in current:
        s, state = lif_step(c, state, p)
        out.append(s)
        us.append(state.u)
    return torch.stack(out), torch.stack(us)


@pytest.mark.parametrize("leak,reset", [(0.9, "zero"), (0.99, "zero"), (1.0, "zero"),
                                        (1.0, "subtract")])
def test_dlif_with_unit_gain_equals_lif(leak, reset):
    g = torch.Generator().manual_seed(0)
    current = torch.rand(20, 4, 7, generator=g, dtype=torch.float64) * 0.8
    p = DLIFParams(leak=leak, reset=reset, threshold=1.0, steps=20)
    s, u = dlif_scan(current, p, 1.0, torch.ones(20, dtype=torch.float64), membranes=True)
    s_ref, u_ref = lif_reference(current, leak, reset, 1.0)
    assert s.sum() > 0 and (1 - s).sum() > 0
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(u, u_ref, rtol=0, atol=1e-12)


def test_gain_and_threshold_gradients_equal_finite_differences():
    p = DLIFParams(leak=0.8, surrogate="soft_sigmoid", slope=4.0, steps=6,
                   learn_threshold=True)
    act = SpikingActivation(p).double()
    with torch.no_grad():
        act.gain.copy_(torch.linspace(0.5, 1.5, 6, dtype=torch.float64))
    current = torch.rand(6, 3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def f(gain, theta):
        return dlif_scan(current, p, theta.clamp(min=0.03), gain).sum()

    assert torch.autograd.gradcheck(f, (act.gain.detach().clone().requires_grad_(),
                                        act.theta.detach().clone().requires_grad_()))


def test_soft_reset_if_rate_tends_to_the_clipped_current_over_threshold():
    p = DLIFParams(leak=1.0, reset="subtract", dynamic=False, steps=1)
    levels = torch.tensor([-0.3, 0.0, 0.2, 0.55, 0.9, 1.4], dtype=torch.float64)
    for steps in (100, 1000):
        rate = dlif_scan(levels.expand(steps, 1, 6), p, 0.5).mean(0)[0]
        assert torch.allclose(rate, (levels / 0.5).clamp(0, 1), atol=1.0 / steps + 1e-12)


def test_routes_keep_the_forward_and_change_the_gradient():
    p = DLIFParams(steps=5, dynamic=False)
    act = SpikingActivation(p).double()
    current = (torch.rand(5, 2, 8, dtype=torch.float64) * 2).requires_grad_()
    current.data[:, :, 0] = -1.0  # a neuron that never fires
    plain = act(current)
    act.route = "bptr"
    through_rates = act(current)
    assert torch.equal(plain, through_rates)
    (grad,) = torch.autograd.grad(through_rates.sum(), current)
    assert torch.all(grad[:, :, 0] == 0)  # no rate, no gradient
    fires = plain.mean(0) > 0
    torch.testing.assert_close(grad[0][fires], torch.full_like(grad[0][fires], 1.0))
    act.route = "proxy"
    torch.testing.assert_close(act(current), current.clamp(0, 1))
    act.route = ("triangle", 0.5)
    assert torch.equal(act(current), plain)


def test_bptr_carries_dlif_gains_into_the_gradient():
    """BPTR differentiates the rate through the time-averaged effective input a[t] I[t]:
    d(sum_t s[t]) / dI[t] = a[t] / theta where the neuron fires (negative gains too)."""
    act = SpikingActivation(DLIFParams(steps=4, threshold=0.5)).double()
    with torch.no_grad():
        act.gain.copy_(torch.tensor([2.0, -1.0, 0.5, 3.0]))
    current = (torch.rand(4, 3, 6, dtype=torch.float64) * 2).requires_grad_()
    current.data[:, :, 0] = -1.0  # never fires: no gradient
    act.route = "bptr"
    out = act(current)
    (grad,) = torch.autograd.grad(out.sum(), current)
    fires = out.mean(0) > 0
    assert fires.any() and not fires[:, 0].any()
    for t, a in enumerate([2.0, -1.0, 0.5, 3.0]):
        torch.testing.assert_close(grad[t][fires], torch.full_like(grad[t][fires], a / 0.5))
    assert torch.all(grad[:, ~fires] == 0)
    # the gains' gradient goes through the same smooth path
    (g_gain,) = torch.autograd.grad(act(current).sum(), act.gain)
    expect = (fires.double() * current.detach()).sum((1, 2)) / 0.5
    torch.testing.assert_close(g_gain, expect)


def test_dlif_layer_refuses_more_steps_than_its_gains():
    from spikebench.errors import ConfigError
    from spikebench.neurons import DLIFLayer

    layer = DLIFLayer(3, 2, params=DLIFParams(steps=4))
    with pytest.raises(ConfigError, match="steps"):
        layer(torch.rand(5, 1, 3))

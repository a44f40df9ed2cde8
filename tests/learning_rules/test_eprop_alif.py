"""e-prop with ALIF's adaptive eligibility (Bellec et al. 2020) against BPTT where they must
coincide (one feed-forward layer, reset detached), against autograd with e-prop's
stop-gradients (recurrent, two layers, both feedbacks), and against LIF's e-prop at
adapt = 0. float64 throughout."""

from dataclasses import replace

import pytest
import torch

from spikebench.learning_rules import make_rule
from spikebench.models import SpikingMLP
from spikebench.neurons import ALIFParams, LIFParams
from tests.learning_rules.reference import eprop_reference_grads
from tests.learning_rules.test_eprop import batch, grads

P = ALIFParams(alpha=0.8, beta=0.85, threshold=0.6, slope=2.0, rho=0.9, adapt=0.4)


def alif_net(sizes, recurrent, seed=0, params=P):
    torch.manual_seed(seed)
    return SpikingMLP(sizes, recurrent=recurrent, neuron="alif", params=params,
                      weight_scale=3.0, rec_scale=2.0).double()


def eprop_grads(model, x, y, **options):
    rule = make_rule("eprop", **options)
    rule.prepare(model)
    out = rule.backward(model, x, y)
    return out, grads(model)


def test_equals_bptt_for_one_feed_forward_layer_with_the_reset_detached():
    model = alif_net((7, 9, 3), False, params=replace(P, detach_reset=True))
    x, y = batch()
    out = make_rule("bptt", burn_in=3).backward(model, x, y)
    ref = grads(model)
    out_e, got = eprop_grads(model, x, y, burn_in=3)
    assert out_e.loss == pytest.approx(out.loss, rel=1e-12)
    spikes = model(x, record=True)[1][0]
    assert spikes.sum() > 20  # the layer spikes, so its thresholds adapt
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=1e-10, atol=1e-13, msg=name)
    # the adaptive term matters: without it (LIF's eligibility) the gradient is another
    lif_like = replace(P, detach_reset=True, adapt=0.0)
    other = alif_net((7, 9, 3), False, params=lif_like)
    other.load_state_dict(model.state_dict())
    _, g0 = eprop_grads(other, x, y, burn_in=3)
    assert (g0["hidden.0.weight"] - ref["hidden.0.weight"]).norm() > 1e-3 * ref[
        "hidden.0.weight"].norm()


@pytest.mark.parametrize("feedback", ["symmetric", "random"])
def test_equals_autograd_with_its_stop_gradients_recurrent_two_layers(feedback):
    model = alif_net((7, 10, 8, 3), True, seed=2)
    x, y = batch(seed=2, steps=20)
    rule = make_rule("eprop", burn_in=2, feedback=feedback, feedback_seed=4)
    rule.prepare(model)
    B = [b.t() for b in rule.feedback_matrices(model)]
    ref = eprop_reference_grads(model, x, y, B, burn_in=2)
    rule.backward(model, x, y)
    got = grads(model)
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=1e-9, atol=1e-13, msg=name)
    assert float(got["hidden.1.weight"].abs().sum()) > 0


@pytest.mark.parametrize("recurrent", [False, True])
def test_adapt_zero_is_lifs_eprop(recurrent):
    lif_p = LIFParams(alpha=0.8, beta=0.85, threshold=0.6, slope=2.0)
    torch.manual_seed(5)
    lif = SpikingMLP((7, 9, 6, 3), recurrent=recurrent, params=lif_p, weight_scale=3.0,
                     rec_scale=2.0).double()
    alif = alif_net((7, 9, 6, 3), recurrent, params=replace(P, adapt=0.0))
    state = dict(lif.state_dict())
    for k in range(2 if recurrent else 0):
        state[f"hidden.{k}.rec_weight"] = lif.hidden[k].recurrent_matrix().detach()
    alif.load_state_dict(state)
    x, y = batch(seed=3, steps=30)
    _, want = eprop_grads(lif, x, y, chunk=8)  # LIF's chunked traces
    _, got = eprop_grads(alif, x, y, chunk=8)  # ALIF: the per-step algorithm
    for name, g in want.items():
        if "rec_weight" in name:  # LIF holds the diagonal at zero, ALIF learns it
            g, mask = g, lif.hidden[int(name.split(".")[1])].rec_mask
            torch.testing.assert_close(got[name] * mask, g, rtol=1e-10, atol=1e-13)
        else:
            torch.testing.assert_close(got[name], g, rtol=1e-10, atol=1e-13, msg=name)

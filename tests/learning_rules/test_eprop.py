"""e-prop against BPTT (where they must coincide, and where they must not) and against
autograd of the computation with e-prop's stop-gradients. float64 throughout."""

from dataclasses import replace

import pytest
import torch

from spikebench.learning_rules import IGNORE, make_rule
from spikebench.models import SpikingMLP
from spikebench.neurons import LIFParams
from spikebench.sparse import EventBatch
from tests.learning_rules.reference import eprop_reference_grads

PARAMS = LIFParams(alpha=0.8, beta=0.85, threshold=0.6, slope=2.0)


def net(sizes, recurrent, seed=0, params=PARAMS):
    torch.manual_seed(seed)
    return SpikingMLP(sizes, recurrent=recurrent, params=params, weight_scale=3.0,
                      rec_scale=2.0).double()


def batch(seed=0, steps=25, b=6, n_in=7, classes=3, frames=False):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(steps, b, n_in, generator=g, dtype=torch.float64) < 0.35).double()
    if frames:
        y = torch.randint(0, classes, (steps, b), generator=g)
        y[-4:, :2] = IGNORE  # padded ends of two sequences
    else:
        y = torch.randint(0, classes, (b,), generator=g)
    return x, y


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def rel_err(a, b):
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


@pytest.mark.parametrize("frames", [False, True])
def test_eprop_equals_bptt_one_layer_no_recurrence_detached_reset(frames):
    model = net((7, 9, 3), recurrent=False, params=replace(PARAMS, detach_reset=True))
    x, y = batch(frames=frames)
    out = make_rule("bptt", burn_in=3).backward(model, x, y)
    assert out.outputs.abs().sum() > 0
    ref = grads(model)
    eprop = make_rule("eprop", burn_in=3)
    eprop.prepare(model)
    out_e = eprop.backward(model, x, y)
    assert out_e.loss == pytest.approx(out.loss, rel=1e-12)  # its online loss and decision
    assert (out_e.correct, out_e.count) == (out.correct, out.count)
    spikes = model(x, record=True)[1][0].sum()
    assert spikes > 20  # the hidden layer spikes: the comparison is not vacuous
    for name, g in grads(model).items():
        torch.testing.assert_close(g, ref[name], rtol=1e-10, atol=1e-13, msg=name)


def test_eprop_differs_from_bptt_once_recurrence_is_on():
    x, y = batch(seed=1)
    errors = {}
    for recurrent in (False, True):
        model = net((7, 9, 3), recurrent=recurrent, seed=1,
                    params=replace(PARAMS, detach_reset=True))
        make_rule("bptt").backward(model, x, y)
        ref = grads(model)
        rule = make_rule("eprop")
        rule.prepare(model)
        rule.backward(model, x, y)
        got = grads(model)
        errors[recurrent] = rel_err(got["hidden.0.weight"], ref["hidden.0.weight"])
        # the readout's gradient is exact in both cases
        torch.testing.assert_close(got["readout.weight"], ref["readout.weight"])
    assert errors[False] < 1e-12
    assert errors[True] > 1e-2  # e-prop ignores the recurrent path: a real difference


@pytest.mark.parametrize("feedback", ["symmetric", "random"])
def test_eprop_equals_autograd_with_its_stop_gradients_rec_two_layers(feedback):
    model = net((7, 10, 8, 3), recurrent=True, seed=2)
    x, y = batch(seed=2, steps=20)
    rule = make_rule("eprop", burn_in=2, feedback=feedback, feedback_seed=4)
    rule.prepare(model)
    B = [b.t() for b in rule.feedback_matrices(model)]  # [n_k, C]
    if feedback == "symmetric":  # the matrices the docstring promises
        torch.testing.assert_close(B[1], model.readout.weight.t())
        torch.testing.assert_close(B[0], (model.readout.weight @ model.hidden[1].weight).t())
    ref = eprop_reference_grads(model, x, y, B, burn_in=2)
    rule.backward(model, x, y)
    got = grads(model)
    assert set(got) == set(ref)
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=1e-9, atol=1e-13, msg=name)
    assert float(got["hidden.0.rec_weight"].diagonal().abs().sum()) == 0.0
    assert float(got["hidden.0.weight"].abs().sum()) > 0


def test_eprop_rejects_what_it_cannot_train():
    with pytest.raises(ValueError, match="reset='subtract'"):
        make_rule("eprop").prepare(net((4, 5, 2), False, params=replace(PARAMS, reset="zero")))
    with pytest.raises(ValueError, match="cannot train with loss 'mean_ce'"):
        make_rule("eprop", loss="mean_ce")
    with pytest.raises(ValueError, match="unknown feedback"):
        make_rule("eprop", feedback="broadcast")


def test_random_feedback_survives_a_checkpoint():
    model = net((4, 5, 6, 2), True)
    rule = make_rule("eprop", feedback="random", feedback_seed=3)
    rule.prepare(model)
    state = rule.state_dict()
    other = make_rule("eprop", feedback="random", feedback_seed=99)
    other.prepare(model)
    other.load_state_dict(state)
    for a, b in zip(rule.B, other.B, strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="do not match"):
        small = make_rule("eprop", feedback="random")
        small.prepare(net((4, 3, 2), True))
        small.load_state_dict(state)


@pytest.mark.parametrize("events", [False, True])
@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize("feedback", ["symmetric", "random"])
def test_chunked_traces_equal_the_per_step_algorithm_for_every_chunk(recurrent, feedback,
                                                                      events):
    """K steps at a time (the chunk's forward as GEMMs, the traces through [K, K] filter
    matrices, the per-sample trace built once per chunk) gives the per-step gradient
    (chunk=1) to 1e-10 in float64, also with a partial last chunk, a chunk longer than the
    sequence, burn-in, frame labels with padding, and sparse event input (CSR products)."""
    x, y = batch(seed=5, steps=23, frames=True)
    if events:
        x = EventBatch.from_dense(x)
    ref_model = net((7, 10, 8, 3), recurrent=recurrent, seed=3)
    rule = make_rule("eprop", burn_in=2, feedback=feedback, feedback_seed=1, chunk=1)
    rule.prepare(ref_model)
    ref_out = rule.backward(ref_model, x, y)
    ref = grads(ref_model)
    for chunk, carry in [(c, m) for c in (2, 3, 5, 16, 22, 23, 40)
                         for m in ("trace", "replay")]:
        model = net((7, 10, 8, 3), recurrent=recurrent, seed=3)
        rule = make_rule("eprop", burn_in=2, feedback=feedback, feedback_seed=1, chunk=chunk,
                         carry=carry)
        rule.prepare(model)
        out = rule.backward(model, x, y)
        assert out.loss == pytest.approx(ref_out.loss, rel=1e-12)
        assert (out.correct, out.count) == (ref_out.correct, ref_out.count)
        for name, g in grads(model).items():
            assert rel_err(g, ref[name]) < 1e-10, (chunk, carry, name)


def test_chunk_must_be_a_positive_integer():
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="chunk"):
            make_rule("eprop", chunk=bad)
    with pytest.raises(ValueError, match="carry"):
        make_rule("eprop", carry="sideways")


def test_auto_carry_replays_only_while_that_needs_less_memory():
    """replay keeps B T (C + 2 sum n_k) numbers, the trace B sum n_k n_in_k: auto picks the
    smaller, so e-prop's memory stays bounded whatever T."""
    model = net((2312, 120, 84, 10), recurrent=False)
    rule = make_rule("eprop", chunk=100)
    # trace: 120 2312 + 84 120 = 287520 per sample; replay: T (10 + 2 204) = 418 T
    assert rule.replays(model, 100) and rule.replays(model, 680)
    assert not rule.replays(model, 700)
    assert make_rule("eprop", carry="replay").replays(model, 10_000)
    assert not make_rule("eprop", carry="trace").replays(model, 300)

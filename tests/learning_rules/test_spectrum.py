"""The rules along the locality axis between BPTT and DECOLLE, each against an independent
computation in float64: truncated BPTT against BPTT and an unrolled reference, OTTT and SLTT
against autograd of their defining losses (and SpikingJelly 2's neurons where installed),
DRTP against its analytic update, OSTL against BPTT where it must equal it, FPTT against its
published update written out."""

import copy
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from spikebench.errors import ConfigError
from spikebench.learning_rules import IGNORE, make_rule, objective
from spikebench.models import SpikingMLP
from spikebench.models.mlp import MLPState
from spikebench.neurons import LIFParams
from spikebench.sparse import EventBatch
from tests.learning_rules.reference import unrolled

PARAMS = LIFParams(alpha=0.8, beta=0.85, threshold=0.6, slope=2.0)
ONLINE = ("ottt", "sltt", "drtp", "ostl")


def net(sizes=(7, 9, 6, 3), recurrent=False, seed=0, params=PARAMS, **kw):
    torch.manual_seed(seed)
    return SpikingMLP(sizes, recurrent=recurrent, params=params, weight_scale=3.0,
                      rec_scale=2.0, **kw).double()


def batch(seed=0, steps=17, b=5, n_in=7, classes=3, frames=False):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(steps, b, n_in, generator=g, dtype=torch.float64) < 0.35).double()
    if frames:
        y = torch.randint(0, classes, (steps, b), generator=g)
        y[-4:, :2] = IGNORE
    else:
        y = torch.randint(0, classes, (b,), generator=g)
    return x, y


def rule_grads(model, name, x, y, **kw):
    rule = make_rule(name, **kw)
    rule.prepare(model)
    out = rule.backward(model, x, y)
    return {n: p.grad.clone() for n, p in model.named_parameters()}, out, rule


def autograd_grads(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
            for n, p in model.named_parameters()}


def close(a, b, names=None, tol=1e-10):
    for n in names or a:
        assert torch.allclose(a[n], b[n], rtol=tol, atol=tol), (n, (a[n] - b[n]).abs().max())


def hidden(model):
    return [n for n, _ in model.named_parameters() if n.startswith("hidden")]


def masked_rec(model, grads):  # the reference's V gradient carries the zero diagonal's too
    for k, layer in enumerate(model.hidden):
        if layer.recurrent:
            grads[f"hidden.{k}.rec_weight"] = grads[f"hidden.{k}.rec_weight"] * layer.rec_mask
    return grads


# -- truncated BPTT ---------------------------------------------------------------------

@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize("events", [False, True])
def test_tbptt_with_k_at_least_t_is_bptt(recurrent, events):
    model = net(recurrent=recurrent)
    x, y = batch(frames=recurrent)
    bptt, _, _ = rule_grads(model, "bptt", x, y)
    xin = EventBatch.from_dense(x) if events else x
    for k in (17, 40):
        got, out, _ = rule_grads(model, "tbptt", xin, y, k=k)
        close(got, bptt, tol=1e-12)


def test_tbptt_equals_autograd_of_the_unrolled_step_cut_every_k_steps():
    model = net(recurrent=True)
    x, y = batch(frames=True)
    state = model.initial_state(x.shape[1], x)
    outs = []
    for t in range(x.shape[0]):
        if t and t % 5 == 0:  # the state entering each window is a constant
            state = MLPState(tuple(type(s)(*(v.detach() for v in s)) for s in state.layers),
                             state.y.detach())
        out, state = model.step(x[t], state)
        outs.append(out)
    want = autograd_grads(model, objective(torch.stack(outs), y))
    got, _, _ = rule_grads(model, "tbptt", x, y, k=5)
    close(got, want, tol=1e-12)
    bptt, _, _ = rule_grads(model, "bptt", x, y)
    assert not torch.allclose(got["hidden.0.weight"], bptt["hidden.0.weight"])


def test_tbptt_trains_any_step_wise_neuron_and_refuses_parallel_ones():
    x, y = batch()
    torch.manual_seed(0)
    from spikebench.neurons import DLIFParams

    model = SpikingMLP((7, 9, 3), neuron="dlif", params=DLIFParams(steps=17)).double()
    got, _, _ = rule_grads(model, "tbptt", x, y, k=100)
    bptt, _, _ = rule_grads(model, "bptt", x, y)
    close(got, bptt, tol=1e-12)
    with pytest.raises(ConfigError, match="parallel in time"):
        make_rule("tbptt").prepare(SpikingMLP((7, 9, 3), neuron="paralif"))
    with pytest.raises(ConfigError, match="k"):
        make_rule("tbptt", k=0)


# -- OTTT, SLTT, DRTP: the online rules with a spatial or a target signal --------------------

@pytest.mark.parametrize("name", ONLINE)
@pytest.mark.parametrize("recurrent", [False, True])
def test_online_rules_give_the_readout_its_exact_gradient_for_every_chunk(name, recurrent):
    model = net(recurrent=recurrent)
    x, y = batch(frames=recurrent)
    bptt, _, _ = rule_grads(model, "bptt", x, y)
    ref, out, _ = rule_grads(model, name, x, y, chunk=1)
    close(ref, bptt, ["readout.weight", "readout.bias"], tol=1e-12)
    with torch.no_grad():
        assert out.loss == pytest.approx(float(objective(model(x), y)), rel=1e-12)
    for chunk in (4, 100):
        got, _, _ = rule_grads(model, name, EventBatch.from_dense(x), y, chunk=chunk)
        close(got, ref, tol=1e-11)


def spatial_error(model, x, y):
    """dE/dU_k[t] through a forward whose states are detached at every step: the error of
    each step through the layers at that step only."""
    outputs, us, _ = unrolled(model, x, detach_state=True)
    flat = [u for layer in us for u in layer]
    gs = torch.autograd.grad(objective(outputs, y), flat)
    n = len(us[0])
    return [gs[k * n:(k + 1) * n] for k in range(len(us))], outputs


@pytest.mark.parametrize("recurrent", [False, True])
def test_sltt_equals_autograd_with_the_temporal_path_detached(recurrent):
    model = net(recurrent=recurrent)
    x, y = batch()
    outputs, _, _ = unrolled(model, x, detach_state=True)
    want = masked_rec(model, autograd_grads(model, objective(outputs, y)))
    got, _, _ = rule_grads(model, "sltt", x, y, chunk=6)
    close(got, want, hidden(model))


def test_sltt_k_takes_the_error_at_k_sampled_steps_only():
    model = net()
    x, y = batch()
    torch.manual_seed(3)
    mask = make_rule("sltt", sampled=4).step_mask(x.shape[0])
    assert int(mask.sum()) == 4
    outputs, _, _ = unrolled(model, x, detach_state=True)
    steps_ce = F.cross_entropy(outputs.flatten(0, 1), y.repeat(x.shape[0]),
                               reduction="none").view(x.shape[0], -1)
    # the hidden gradient of the loss at the sampled steps (the readout's stays exact)
    want = autograd_grads(model, (steps_ce * mask.view(-1, 1)).sum() / steps_ce.numel())
    torch.manual_seed(3)
    got, _, _ = rule_grads(model, "sltt", x, y, sampled=4)
    close(got, want, hidden(model))


@pytest.mark.parametrize("recurrent", [False, True])
def test_ottt_equals_autograd_of_its_defining_loss(recurrent):
    """sum_t <g_U[t], U[t]>: g_U the instantaneous spatial error, U from a forward in which
    only the membrane's linear history keeps its graph (dU/dW = the presynaptic trace)."""
    model = net(recurrent=recurrent)
    x, y = batch()
    g_u, _ = spatial_error(model, x, y)
    _, us, _ = unrolled(model, x, detach_state=False)
    total = sum((g.detach() * u).sum() for gk, uk in zip(g_u, us, strict=True)
                for g, u in zip(gk, uk, strict=True))
    want = masked_rec(model, autograd_grads(model, total))
    got, _, _ = rule_grads(model, "ottt", x, y, chunk=5)
    close(got, want, hidden(model))
    sltt, _, _ = rule_grads(model, "sltt", x, y)
    assert not torch.allclose(got["hidden.0.weight"], sltt["hidden.0.weight"])


@pytest.mark.parametrize("recurrent", [False, True])
def test_drtp_equals_its_analytic_update(recurrent):
    """dE/dW_k = sum_t <w[t] onehot(y) B_k, s_k[t]> through the membrane's linear history
    (psi x the presynaptic trace): no error reaches a hidden layer."""
    model = net(recurrent=recurrent)
    x, y = batch(frames=True)
    got, _, rule = rule_grads(model, "drtp", x, y, chunk=4)
    _, _, ss = unrolled(model, x, detach_state=False)
    steps = x.shape[0]
    w = ((y != IGNORE).float() / (y != IGNORE).sum()).double()  # step_ce's, default dtype
    target = F.one_hot(y.clamp(min=0), 3).double() * w.unsqueeze(-1)
    total = sum((target[t] @ b_k * s_k[t]).sum() for s_k, b_k in zip(ss, rule.B, strict=True)
                for t in range(steps))
    want = masked_rec(model, autograd_grads(model, total))
    close(got, want, hidden(model))
    again = make_rule("drtp", feedback_seed=0)
    again.prepare(model)
    assert all(torch.equal(a, b) for a, b in zip(again.B, rule.B, strict=True))


# -- OSTL ---------------------------------------------------------------------------------

@pytest.mark.parametrize("frames", [False, True])
def test_ostl_equals_bptt_for_one_layer(frames):
    model = net((7, 9, 3))
    x, y = batch(frames=frames)
    bptt, _, _ = rule_grads(model, "bptt", x, y)
    for chunk in (1, 4, 100):
        for carry in ("trace", "replay"):
            got, _, _ = rule_grads(model, "ostl", EventBatch.from_dense(x), y, chunk=chunk,
                                   carry=carry)
            close(got, bptt, tol=1e-11)
    # e-prop's trace treats the reset as a constant: it differs where OSTL does not
    eprop, _, _ = rule_grads(model, "eprop", x, y)
    assert not torch.allclose(eprop["hidden.0.weight"], bptt["hidden.0.weight"], rtol=1e-6)


def test_ostl_in_deeper_nets_is_exact_for_the_last_hidden_layer_only():
    model = net((7, 9, 6, 3))
    x, y = batch()
    bptt, _, _ = rule_grads(model, "bptt", x, y)
    got, _, _ = rule_grads(model, "ostl", x, y, chunk=5)
    close(got, bptt, ["hidden.1.weight", "readout.weight", "readout.bias"], tol=1e-11)
    assert not torch.allclose(got["hidden.0.weight"], bptt["hidden.0.weight"], rtol=1e-3)


@pytest.mark.parametrize("recurrent", [False, True])
def test_ostl_replays_the_chunks_to_the_carried_traces_gradient(recurrent):
    """carry=replay (the chunks in reverse, a [B, n] carry) gives the gradient of the online
    per-sample trace, for every chunk, deep and recurrent nets included."""
    model = net((7, 9, 6, 3), recurrent=recurrent)
    x, y = batch(frames=recurrent)
    ref, _, _ = rule_grads(model, "ostl", x, y, chunk=1, carry="trace")
    for chunk in (1, 3, 4, 16):
        for inputs in (x, EventBatch.from_dense(x)):
            got, _, _ = rule_grads(model, "ostl", inputs, y, chunk=chunk, carry="replay")
            close(got, ref, tol=1e-11)


def test_ostl_auto_carry_replays_only_while_that_needs_less_memory():
    model = net((2312, 120, 84, 10))
    # trace: 120 2312 + 84 120 = 287520 per sample; replay: 84 + 360 + 372 = 816 per step
    rule = make_rule("ostl", chunk=100)
    assert rule.replays(model, 100) and rule.replays(model, 352)
    assert not rule.replays(model, 353)
    assert make_rule("ostl", carry="replay").replays(model, 10_000)
    assert not make_rule("ostl", carry="trace").replays(model, 300)
    with pytest.raises(ConfigError, match="carry"):
        make_rule("ostl", carry="sideways")


def test_ostl_with_detached_reset_is_eprop_for_one_layer():
    model = net((7, 9, 3), params=replace(PARAMS, detach_reset=True))
    x, y = batch()
    ostl, _, _ = rule_grads(model, "ostl", x, y)
    eprop, _, _ = rule_grads(model, "eprop", x, y)
    close(ostl, eprop, tol=1e-11)


@pytest.mark.parametrize("name", ONLINE)
def test_online_rules_refuse_what_their_traces_do_not_cover(name):
    with pytest.raises(TypeError, match="LIF hidden layers"):
        make_rule(name).prepare(SpikingMLP((7, 9, 3), neuron="dlif"))
    with pytest.raises(ConfigError, match="subtract"):
        make_rule(name).prepare(SpikingMLP((7, 9, 3), params=LIFParams(reset="zero")))
    with pytest.raises(ConfigError, match="chunk"):
        make_rule(name, chunk=0)


# -- FPTT ---------------------------------------------------------------------------------

def test_fptt_reproduces_its_published_update_with_sgd():
    alpha, beta, lr, window = 0.3, 0.5, 0.05, 6
    model = net(recurrent=True)
    x, y = batch()
    ref = copy.deepcopy(model)
    sm = {n: p.detach().clone() for n, p in ref.named_parameters()}
    lm = {n: torch.zeros_like(p) for n, p in ref.named_parameters()}
    steps = x.shape[0]
    state = ref.initial_state(x.shape[1], x)
    for t0 in range(0, steps, window):
        t1 = min(t0 + window, steps)
        state = MLPState(tuple(type(s)(*(v.detach() for v in s)) for s in state.layers),
                         state.y.detach())
        outs = []
        for t in range(t0, t1):
            out, state = ref.step(x[t], state)
            outs.append(out)
        ys = torch.stack(outs)
        clf = (t1 / steps) * F.cross_entropy(ys.flatten(0, 1), y.repeat(t1 - t0))
        reg = sum(-(p * lm[n]).sum() + 0.5 * alpha * (p - sm[n]).square().sum()
                  for n, p in ref.named_parameters())
        ref.zero_grad()
        (clf + reg).backward()
        with torch.no_grad():
            for n, p in ref.named_parameters():
                p -= lr * p.grad
                lm[n] -= alpha * (p - sm[n])
                sm[n] = (1 - beta) * sm[n] + beta * p - (beta / alpha) * lm[n]
    rule = make_rule("fptt", window=window, alpha=alpha, beta=beta)
    rule.prepare(model)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    out = rule.backward(model, x, y, update=opt.step)
    assert out.updated
    for n, p in model.named_parameters():
        assert torch.allclose(p, dict(ref.named_parameters())[n], atol=1e-12), n
        assert torch.allclose(rule.sm[n], sm[n], atol=1e-12), n
        assert torch.allclose(rule.lm[n], lm[n], atol=1e-12), n
    again = make_rule("fptt", **rule.config())
    again.prepare(net(recurrent=True, seed=1))
    again.load_state_dict(rule.state_dict())
    assert all(torch.equal(again.sm[n], rule.sm[n]) for n in rule.sm)
    with pytest.raises(ValueError, match="does not match"):
        again.load_state_dict({"sm.nope": torch.zeros(1)})
    with pytest.raises(ConfigError):
        make_rule("fptt", beta=0.0)

"""DECOLLE: each layer's gradient equals autograd of its own local loss alone, and no
gradient reaches another layer from it. float64."""

import pytest
import torch
import torch.nn.functional as F

from spikebench.learning_rules import make_rule, objective
from spikebench.learning_rules.base import frame_targets, step_weights
from spikebench.sparse import EventBatch, dense
from tests.learning_rules.reference import stopgrad_forward
from tests.learning_rules.test_eprop import batch, grads, net


def local_loss(z, y, burn_in):
    """step_ce of a local readout z [T, B, C], written out."""
    steps = z.shape[0]
    w = step_weights(y, steps, burn_in)
    tgt = frame_targets(y, steps)
    nll = F.cross_entropy(z.flatten(0, 1), tgt.clamp(min=0).flatten(), reduction="none")
    return (nll * w.flatten()).sum()


@pytest.mark.parametrize(("chunk", "events"), [(1, False), (7, False), (7, True),
                                               (100, True)])
@pytest.mark.parametrize("recurrent", [False, True])
def test_each_layer_follows_its_own_local_loss_alone(recurrent, chunk, events):
    """Per step (chunk 1), and K steps at a time (filter-matrix traces, a partial last
    chunk, one chunk longer than the sequence; dense and event input)."""
    model = net((7, 10, 8, 3), recurrent=recurrent, seed=3)
    x, y = batch(seed=3, steps=20)
    rule = make_rule("decolle", burn_in=2, readout_scale=2.0, readout_seed=1, chunk=chunk)
    rule.prepare(model)
    if events:
        x = EventBatch.from_dense(x)
    assert [tuple(r.shape) for r in rule.R] == [(3, 10), (3, 8)]
    for r, n in zip(rule.R, (10, 8), strict=True):
        assert float(r.abs().max()) <= 2.0 / n**0.5

    rule.backward(model, x, y)
    got = grads(model)

    params = dict(model.named_parameters())
    outputs, spikes = stopgrad_forward(model, dense(x))
    for k, (s_k, r_k) in enumerate(zip(spikes, rule.R, strict=True)):
        loss_k = local_loss(s_k @ r_k.t(), y, burn_in=2)
        names = list(params)
        g = torch.autograd.grad(loss_k, [params[n] for n in names], retain_graph=True,
                                allow_unused=True)
        for name, gk in zip(names, g, strict=True):
            if name.startswith(f"hidden.{k}."):
                torch.testing.assert_close(got[name], gk, rtol=1e-9, atol=1e-13, msg=name)
                assert float(gk.abs().sum()) > 0
            else:  # nothing of layer k's loss reaches another layer or the readout
                assert gk is None or float(gk.abs().sum()) == 0.0, name
        assert rule.local_losses[k] == pytest.approx(float(loss_k), rel=1e-12)
    # the readout is trained by the network's loss, its input detached
    out_loss = objective(outputs, y, burn_in=2)
    gw, gb = torch.autograd.grad(out_loss, [model.readout.weight, model.readout.bias])
    torch.testing.assert_close(got["readout.weight"], gw)
    torch.testing.assert_close(got["readout.bias"], gb)


def test_online_schedule_updates_every_step():
    model = net((7, 6, 3), recurrent=False, seed=4)
    x, y = batch(seed=4, steps=12)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    calls = []

    def update():
        calls.append(1)
        opt.step()

    before = model.hidden[0].weight.detach().clone()
    rule = make_rule("decolle", online=True)
    rule.prepare(model)
    out = rule.backward(model, x, y, update=update)
    assert out.updated and len(calls) == 12
    assert not torch.equal(before, model.hidden[0].weight)
    with pytest.raises(ValueError, match="update function"):
        rule.backward(model, x, y)


def test_readouts_survive_a_checkpoint():
    model = net((4, 5, 6, 2), True)
    a = make_rule("decolle", readout_seed=1)
    a.prepare(model)
    b = make_rule("decolle", readout_seed=2)
    b.prepare(model)
    b.load_state_dict(a.state_dict())
    assert all(torch.equal(p, q) for p, q in zip(a.R, b.R, strict=True))

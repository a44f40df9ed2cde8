"""Efficiency metrics (analysis.efficiency, NeuroBench's definitions) against hand counts:
a direct loop over every step, sample, input and weight of tiny networks."""

import pytest
import torch

from spikebench.analysis.efficiency import EfficiencyCounter, static_metrics
from spikebench.models import SpikingMLP
from spikebench.neurons import LIFParams
from spikebench.sparse import EventBatch


def tiny(recurrent, seed=0):
    torch.manual_seed(seed)
    m = SpikingMLP((6, 5, 4, 3), recurrent=recurrent, weight_scale=6.0, rec_scale=3.0,
                   params=LIFParams(threshold=0.5))
    with torch.no_grad():  # some zero weights, so that effective and dense counts differ
        m.hidden[0].weight[1, :3] = 0
        m.hidden[1].weight[:, 2] = 0
        m.readout.weight[0] = 0
    return m


def hand_ops(x, w):
    """(nonzero input, nonzero weight) pairs, by a loop."""
    ops = 0
    for t in range(x.shape[0]):
        for b in range(x.shape[1]):
            for i in range(x.shape[2]):
                if x[t, b, i] != 0:
                    ops += sum(1 for j in range(w.shape[0]) if w[j, i] != 0)
    return ops


@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize("kind", ["dense", "events", "real-valued"])
def test_counts_equal_hand_counts(recurrent, kind):
    m = tiny(recurrent)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(12, 4, 6, generator=g) < 0.4).float()
    if kind == "real-valued":
        x = x * torch.rand(12, 4, 6, generator=g)
    inp = EventBatch.from_dense(x) if kind == "events" else x
    _, spikes = m(inp, record=True)
    counter = EfficiencyCounter()
    counter.update(m, inp, spikes)
    got = counter.result()
    assert 0 < float(spikes[0].mean()) < 1 and 0 < float(spikes[1].mean()) < 1
    # by hand
    first = hand_ops(x, m.hidden[0].weight)
    rest, dense = 0, 12 * 4 * 6 * 5
    inputs = [spikes[0], spikes[1]]
    for k, layer in enumerate(m.hidden):
        if k > 0:
            rest += hand_ops(inputs[k - 1], layer.weight)
            dense += 12 * 4 * layer.weight.numel()
        if recurrent:
            s = spikes[k]
            shifted = torch.cat([torch.zeros_like(s[:1]), s[:-1]])
            rest += hand_ops(shifted, layer.recurrent_matrix())
            dense += 12 * 4 * layer.n_out ** 2
    rest += hand_ops(spikes[-1], m.readout.weight)
    dense += 12 * 4 * 4 * 3
    if kind == "real-valued":  # the first layer's input is not binary: MACs
        assert got["synops_mac"] * 4 == first and got["synops_ac"] * 4 == rest
    else:
        assert got["synops_ac"] * 4 == first + rest and got["synops_mac"] == 0
    assert got["synops_dense"] * 4 == dense
    n_spikes = sum(int(s.sum()) for s in spikes)
    total = sum(s.numel() for s in spikes)
    assert got["activation_sparsity"] == pytest.approx(1 - n_spikes / total)
    assert got["activation_sparsity_l1"] == pytest.approx(1 - float(spikes[1].mean()))
    by_step = counter.per_step()
    assert [len(v) for v in by_step] == [12, 12]
    torch.testing.assert_close(by_step[0], 1 - spikes[0].detach().double().mean((1, 2)))
    # NeuroBench: every neuron at the first step, then each one whose membrane changed;
    # the membranes after each step from the step function (the reference path)
    state, posts = m.initial_state(4, x), [[] for _ in m.hidden]
    for x_t in x:
        _, state = m.step(x_t, state)
        for k, st in enumerate(state.layers):
            posts[k].append(st.u - m.hidden[k].params.threshold * st.s)
    updates = 0
    for post in posts:
        updates += post[0].numel()
        for t in range(1, len(post)):
            updates += sum(1 for b in range(4) for j in range(post[t].shape[1])
                           if post[t][b, j] != post[t - 1][b, j])
    assert got["membrane_updates"] * 4 == updates
    assert updates < sum(s.numel() for s in spikes)  # some neurons at rest: not counted


def test_batches_add_up_per_sample_and_static_metrics():
    m = tiny(False)
    x = (torch.rand(10, 6, 6) < 0.5).float()
    whole, parts = EfficiencyCounter(), EfficiencyCounter()
    whole.update(m, x, m(x, record=True)[1])
    for part in (x[:, :2], x[:, 2:]):
        parts.update(m, part, m(part, record=True)[1])
    for key, value in whole.result().items():
        assert parts.result()[key] == pytest.approx(value), key
    st = static_metrics(m)
    n_params = 6 * 5 + 5 * 4 + 4 * 3 + 3
    assert st["footprint_bytes"] == 4 * n_params
    assert st["connection_sparsity"] == pytest.approx((3 + 4 + 4) / (30 + 20 + 12))


def test_silent_network_has_full_sparsity():
    m = tiny(True)
    with torch.no_grad():
        for layer in m.hidden:
            layer.weight.zero_()
    x = (torch.rand(8, 3, 6) < 0.5).float()
    counter = EfficiencyCounter()
    counter.update(m, x, m(x, record=True)[1])
    r = counter.result()
    assert r["activation_sparsity"] == 1.0 and r["synops_ac"] == 0
    assert r["membrane_updates"] == 5 + 4  # the first step's updates only

"""Efficiency metrics (analysis.efficiency, NeuroBench's definitions) against hand counts:
a direct loop over every step, sample, input and weight of tiny networks."""

import math

import pytest
import torch

from spikebench.metrics.efficiency import EfficiencyCounter, static_metrics
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


def hand_conv_ops(x, w, padding, total=False):
    """(input, weight) pairs of a stride-1 2-D convolution that touch a real (not padding)
    input, nonzero both unless ``total``, by a loop over outputs and kernel positions."""
    b_, c_, h, wd = x.shape
    o_, _, kh, kw = w.shape
    ops = 0
    for b in range(b_):
        for o in range(o_):
            for i in range(h + 2 * padding - kh + 1):
                for j in range(wd + 2 * padding - kw + 1):
                    for c in range(c_):
                        for di in range(kh):
                            for dj in range(kw):
                                r, q = i + di - padding, j + dj - padding
                                if 0 <= r < h and 0 <= q < wd and (
                                        total or (x[b, c, r, q] != 0 and w[o, c, di, dj] != 0)):
                                    ops += 1
    return ops


def test_module_counter_counts_conv_linear_and_attention_by_hand():
    from torch import nn

    from spikebench.metrics.efficiency import ModuleCounter

    torch.manual_seed(0)
    conv, lin = nn.Conv2d(2, 3, 3, padding=1), nn.Linear(3 * 4 * 4, 5)
    with torch.no_grad():
        conv.weight[0, 1] = 0
        lin.weight[:, :7] = 0
    x = torch.relu(torch.randn(2, 2, 4, 4))  # real-valued, about half zeros
    counter = EfficiencyCounter()
    with ModuleCounter(nn.Sequential(conv, nn.Flatten(), lin), counter) as mc:
        h = conv(x)
        lin(torch.relu(h).flatten(1))
    assert not mc.handles
    flat = torch.relu(h).flatten(1)[None]
    macs = hand_conv_ops(x, conv.weight, 1) + hand_ops(flat, lin.weight)
    dense = hand_conv_ops(x, conv.weight, 1, total=True) + 2 * lin.weight.numel()
    assert counter.mac == macs and counter.ac == 0 and counter.dense == dense
    binary = (x > 0).float()
    spikes = EfficiencyCounter()
    with ModuleCounter(conv, spikes):
        conv(binary)
    assert spikes.ac == hand_conv_ops(binary, conv.weight, 1) and spikes.mac == 0
    # attention: the input projection from its input, the rest dense
    mha = nn.MultiheadAttention(4, 2, batch_first=True)
    seq = torch.randn(3, 5, 4)
    att = EfficiencyCounter()
    with ModuleCounter(mha, att):
        mha(seq, seq, seq, need_weights=False)
    rows = 3 * 5
    assert att.mac == rows * 12 * 4 + rows * 16 + 2 * rows * 5 * 4
    assert att.dense == att.mac
    assert att.result()["membrane_updates"] == 0
    assert math.isnan(att.result()["activation_sparsity"])  # no spiking neurons


def test_hybrid_workload_counts_encoder_and_heads():
    from spikebench.metrics.efficiency import ModuleCounter, hybrid_workload
    from spikebench.models.hybrid import HybridNet, SpikingHead, build_encoder

    torch.manual_seed(0)
    encoder, info, size = build_encoder("lenet5", 10)
    net = HybridNet(encoder, info, size).eval()
    x = torch.rand(6, 1, 28, 28)
    heads = {"default": None, "lif": SpikingHead(84, 10, "lif", steps=5)}
    got = hybrid_workload(net, heads, x, batch=4)
    enc = EfficiencyCounter()
    with ModuleCounter(encoder, enc):
        encoder(net.preprocess(x))  # the default head included
    assert got["default"]["synops_mac"] * 6 == pytest.approx(enc.mac)
    assert got["default"]["synops_dense"] * 6 == pytest.approx(enc.dense)
    # the spiking head: the encoder without fc3, then 5 binary steps through 84 x 10
    fc3 = (encoder.fc3.weight != 0).sum()
    lif = got["lif"]
    assert lif["synops_mac"] * 6 == pytest.approx(enc.mac - float((
        (encoder.features(net.preprocess(x)) != 0).double() @ (encoder.fc3.weight != 0).double().T
    ).sum()))
    assert lif["synops_dense"] * 6 == pytest.approx(enc.dense - 6 * fc3 + 6 * 5 * 84 * 10)
    assert 0 < lif["synops_ac"] <= 5 * 84 * 10
    assert 0 <= lif["activation_sparsity"] <= 1 and lif["membrane_updates"] >= 10
    n_lenet = sum(p.numel() for p in encoder.parameters())
    assert got["default"]["footprint_bytes"] == 4 * n_lenet
    n_head = sum(p.numel() for p in heads["lif"].parameters())
    assert lif["footprint_bytes"] == 4 * (n_lenet - 84 * 10 - 10 + n_head)


def test_conv_workload_counts_every_step_and_the_input_coding():
    from spikebench.metrics.efficiency import conv_ops, conv_workload
    from spikebench.models import CONV_ARCHS, ConvNet
    from spikebench.neurons import DLIFParams

    # no pooling: every layer after the first sees 0/1 spikes (average pooling would make
    # them fractional, and NeuroBench's rule counts fractional inputs as MACs)
    CONV_ARCHS.register("no-pool-test", ((4,), (6,), 0.0))
    try:
        _check_conv_workload(conv_ops, conv_workload, ConvNet, DLIFParams)
    finally:
        CONV_ARCHS.unregister("no-pool-test")


def _check_conv_workload(conv_ops, conv_workload, ConvNet, DLIFParams):
    torch.manual_seed(0)
    x = torch.rand(6, 1, 8, 8)
    direct = ConvNet("no-pool-test", 1, 8, 3, DLIFParams(steps=3, threshold=0.2), steps=3)
    got = conv_workload(direct, x, batch=4)
    first = direct.body[0]
    assert got["synops_mac"] * 6 == 3 * conv_ops(x, first)  # pixels at each of T steps
    assert 0 < got["synops_ac"] < got["synops_dense"]
    assert 0 < got["activation_sparsity"] < 1
    rate = ConvNet("no-pool-test", 1, 8, 3, DLIFParams(steps=3, threshold=0.2), steps=3,
                   coding="bernoulli")
    r = conv_workload(rate, x)
    assert r["synops_mac"] == 0 and r["synops_ac"] > 0  # a rate code is binary: ACs only
    ann = conv_workload(ConvNet("no-pool-test", 1, 8, 3), x)
    assert ann["synops_ac"] == 0 and math.isnan(ann["activation_sparsity"])
    assert ann["synops_dense"] * 3 == pytest.approx(got["synops_dense"])  # T times the ANN's

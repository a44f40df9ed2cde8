"""Hybrid (DIET-SNN) training's parts: the BatchNorm-free layout, dropout masks fixed over
T, learnable leaks, the relative surrogate, and the converted SNN's rates against the
ANN's activations (IF with soft reset: layer 1 within 1/T exactly, every layer on average)."""

import pytest
import torch

from spikebench.errors import ConfigError
from spikebench.models import ConvNet
from spikebench.models.conv import StepDropout
from spikebench.neurons import DLIFParams, SpikingActivation
from spikebench.neurons.surrogate import spike_derivative
from spikebench.training.hybrid import diet_params, hybrid_snn
from spikebench.training.prune import Pruner, prunable


def test_the_batchnorm_free_layout_has_no_batchnorm_and_no_biases():
    for arch in ("vgg-small", "vgg5-ref", "resnet12"):
        net = ConvNet(arch, 3, 32, 10, batchnorm=False)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
        assert all(m.bias is None for m in prunable(net)), arch
        snn = ConvNet(arch, 3, 32, 10, diet_params(4), steps=4, batchnorm=False)
        assert {k for k in snn.state_dict()} - {k for k in net.state_dict()} == {
            f"{n}.{p}" for n, m in snn.named_modules() if isinstance(m, SpikingActivation)
            for p in ("theta", "leak")}


def test_step_dropout_keeps_one_mask_over_the_time_steps():
    torch.manual_seed(0)
    drop = StepDropout(0.5).train()
    h = torch.ones(5 * 3, 4, 2)  # T = 5 steps of B = 3 samples, time folded
    out = drop(h, 5).reshape(5, 3, 4, 2)
    assert torch.equal(out, out[:1].expand_as(out))  # the same mask at every step
    assert set(out.unique().tolist()) <= {0.0, 2.0} and 0 < out.mean() < 2
    assert torch.equal(drop.eval()(h, 5), h)
    # an SNN in the layout: two samples that are equal get different masks, steps do not
    net = ConvNet("vgg11-ref", 1, 16, 3, diet_params(3), steps=3, batchnorm=False).train()
    assert any(isinstance(m, StepDropout) for m in net.modules())


def test_a_learnable_leak_at_its_initial_value_is_the_fixed_leak_bit_for_bit():
    torch.manual_seed(1)
    current = torch.randn(6, 2, 5, dtype=torch.float64)
    fixed = SpikingActivation(DLIFParams(leak=0.9, reset="subtract", dynamic=False))
    learnt = SpikingActivation(DLIFParams(leak=0.9, reset="subtract", dynamic=False,
                                          learn_leak=True)).double()
    fixed.double()
    assert torch.equal(fixed(current), learnt(current))
    learnt(current.requires_grad_()).sum().backward()
    assert learnt.leak.grad is not None and learnt.leak.grad.abs() > 0
    with torch.no_grad():
        learnt.leak.fill_(1.7)
    assert float(learnt.lam().detach()) == 1.0  # clamped to [0, 1]


def test_the_relative_surrogate_gives_the_same_spikes_and_the_scaled_derivative():
    torch.manual_seed(2)
    u = (torch.rand(1, 400, dtype=torch.float64) * 4).requires_grad_()
    theta = 1.7
    p_abs = DLIFParams(threshold=theta, dynamic=False, reset="subtract", leak=1.0)
    p_rel = DLIFParams(threshold=theta, dynamic=False, reset="subtract", leak=1.0,
                       relative=True)
    a = SpikingActivation(p_abs).double()(u)
    rel = SpikingActivation(p_rel).double()
    r = rel(u)
    assert torch.equal(a, r)
    theta = float(rel.threshold())  # 1.7 as the float32 buffer holds it
    (g,) = torch.autograd.grad(r.sum(), u)
    want = spike_derivative(u.detach() / theta - 1, "triangle", 1.0) / theta
    torch.testing.assert_close(g, want, rtol=1e-12, atol=1e-12)


@torch.no_grad()
def test_converted_if_rates_match_the_ann_activations_within_one_over_t():
    torch.manual_seed(0)
    ann = ConvNet("vgg-small", 1, 8, 10, batchnorm=False).double().eval()
    x = torch.rand(32, 1, 8, 8, dtype=torch.float64)
    _, acts = ann.probe(x)
    errors = {}
    for steps in (100, 400):
        snn = hybrid_snn(ann, x, steps, percentile=100.0)  # no clipping: rates = a / theta
        _, spikes = snn.probe(x)
        theta = [float(n.threshold()) for n in snn.neurons()]
        err = [(s.mean(0) - a[0] / th).abs() for s, a, th in zip(spikes, acts, theta,
                                                                    strict=True)]
        # layer 1 sees a constant current: an IF neuron with soft reset fires
        # floor(T I / theta) times, exactly within one spike of T I / theta
        assert float(err[0].max()) <= 1 / steps + 1e-12
        for e in err:  # deeper layers: their inputs carry the earlier layers' rounding
            assert float(e.mean()) <= 1 / steps and float(e.max()) <= 4 / steps
        errors[steps] = float((snn(x) - ann(x)).abs().max() / ann(x).abs().max())
    assert errors[400] < errors[100] / 2  # the logits converge as T grows


def test_hybrid_conversion_refuses_what_it_cannot_convert():
    x = torch.rand(4, 1, 8, 8)
    with pytest.raises(ConfigError, match="BatchNorm"):
        hybrid_snn(ConvNet("vgg-small", 1, 8, 3), x, 4)
    with pytest.raises(ConfigError, match="scale"):
        hybrid_snn(ConvNet("vgg-small", 1, 8, 3, batchnorm=False), x, 4, scale=0.0)


def test_pruner_from_zeros_keeps_the_pruned_networks_masks():
    torch.manual_seed(3)
    net = ConvNet("vgg-small", 1, 8, 3, batchnorm=False)
    Pruner(net, [0.3] * len(prunable(net)))
    zeros = [m.weight == 0 for m in prunable(net)]
    kept = Pruner(net, None)
    with torch.no_grad():
        for m in prunable(net):
            m.weight.add_(1.0)
    kept.apply()
    assert all(torch.equal(m.weight == 0, z) for m, z in zip(prunable(net), zeros,
                                                             strict=True))

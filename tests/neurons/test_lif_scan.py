"""The fast path (whole-sequence GEMMs, the fused LIF scan) against autograd of the unrolled
step function, in float64: every reset, detached or not, every surrogate, FF and REC."""

import pytest
import torch

from spikebench.models import SpikingMLP
from spikebench.neurons import LIFLayer, LIFParams, lif_initial_state, lif_step
from spikebench.neurons.base import SpikingLayer
from spikebench.neurons.lif_scan import lif_scan
from spikebench.neurons.surrogate import surrogate_names


def unrolled(current, p, rec=None):
    """The step function unrolled (lif_scan's signature); REC adds V s[t-1] to the input."""
    state = lif_initial_state(current.shape[1], current.shape[2], current.dtype, current.device)
    out = []
    for c in current:
        s, state = lif_step(c if rec is None else c + state.s @ rec.t(), state, p)
        out.append(s)
    return torch.stack(out)


@pytest.mark.parametrize("surrogate", surrogate_names())
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("detach", [False, True])
def test_fused_scan_equals_autograd_of_the_step(surrogate, reset, detach):
    p = LIFParams(alpha=0.8, beta=0.85, threshold=0.7, gain=1.3, reset=reset,
                  detach_reset=detach, surrogate=surrogate, slope=3.0)
    g = torch.Generator().manual_seed(0)
    current = (torch.randn(40, 5, 6, generator=g, dtype=torch.float64) * 0.8 + 0.3)
    weights = torch.randn(40, 5, 6, generator=g, dtype=torch.float64)
    a = current.clone().requires_grad_()
    b = current.clone().requires_grad_()
    sa, sb = lif_scan(a, p), unrolled(b, p)
    assert torch.equal(sa, sb)
    assert 0 < float(sa.detach().mean()) < 1  # some spikes, not all
    (sa * weights).sum().backward()
    (sb * weights).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_model_fast_path_equals_the_unrolled_step(recurrent, reset):
    torch.manual_seed(1)
    model = SpikingMLP((30, 16, 12, 4), recurrent=recurrent, weight_scale=3.0, rec_scale=2.0,
                       params=LIFParams(alpha=0.8, beta=0.9, threshold=1.0, reset=reset,
                                        slope=5.0)).double()
    x = (torch.rand(25, 7, 30, dtype=torch.float64) < 0.3).double()
    y = torch.randint(0, 4, (7,))
    grads = []
    for reference in (False, True):
        model.zero_grad()
        out, spikes = model(x, record=True, reference=reference)
        torch.nn.functional.cross_entropy(out.mean(0), y).backward()
        grads.append(({n: p.grad.clone() for n, p in model.named_parameters()}, out, spikes))
    (g_fast, out_fast, s_fast), (g_ref, out_ref, s_ref) = grads
    torch.testing.assert_close(out_fast, out_ref, rtol=1e-12, atol=1e-12)
    assert all(torch.equal(a, b) for a, b in zip(s_fast, s_ref, strict=True))
    assert float(s_fast[0].mean()) > 0
    for name in g_ref:
        torch.testing.assert_close(g_fast[name], g_ref[name], rtol=1e-10, atol=1e-12,
                                   msg=name)


@pytest.mark.parametrize("surrogate", surrogate_names())
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("detach", [False, True])
def test_fused_recurrent_scan_equals_autograd_of_the_step(surrogate, reset, detach):
    """REC: V s[t-1] inside the scan; gradients in the current and in V."""
    p = LIFParams(alpha=0.8, beta=0.85, threshold=0.7, gain=1.3, reset=reset,
                  detach_reset=detach, surrogate=surrogate, slope=3.0)
    g = torch.Generator().manual_seed(2)
    current = torch.randn(40, 5, 6, generator=g, dtype=torch.float64) * 0.8 + 0.3
    rec = torch.randn(6, 6, generator=g, dtype=torch.float64) * 0.5
    weights = torch.randn(40, 5, 6, generator=g, dtype=torch.float64)
    grads = []
    for fn in (lif_scan, unrolled):
        c, v = current.clone().requires_grad_(), rec.clone().requires_grad_()
        s = fn(c, p, v)
        (s * weights).sum().backward()
        grads.append((s.detach(), c.grad, v.grad))
    (s_a, c_a, v_a), (s_b, c_b, v_b) = grads
    # soft_sigmoid's spikes are real numbers: V s[t-1] rounds as a fused addmm there
    torch.testing.assert_close(s_a, s_b, rtol=1e-12, atol=1e-12)
    assert 0 < float(s_a.mean()) < 1
    torch.testing.assert_close(c_a, c_b, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(v_a, v_b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("recurrent", [False, True])
def test_layer_forward_equals_unrolling_its_step(recurrent):
    """LIFLayer.forward (one GEMM + the fused scan) against SpikingLayer's unrolled step."""
    torch.manual_seed(4)
    layer = LIFLayer(9, 7, recurrent=recurrent, weight_scale=4.0, rec_scale=2.0,
                     params=LIFParams(threshold=0.5)).double()
    x = (torch.rand(20, 3, 9, dtype=torch.float64) < 0.4).double()
    grads = []
    for forward in (layer.forward, lambda v: SpikingLayer.forward(layer, v)):
        layer.zero_grad()
        s = forward(x)
        (s * torch.linspace(-1, 1, 7, dtype=torch.float64)).sum().backward()
        grads.append((s.detach(), [p.grad.clone() for p in layer.parameters()]))
    (s_a, g_a), (s_b, g_b) = grads
    assert torch.equal(s_a, s_b) and float(s_a.mean()) > 0
    for a, b in zip(g_a, g_b, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)

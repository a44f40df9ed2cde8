"""ParaLIF: the parallel (FFT) membrane against the sequential recurrence, gradients to the
time constants, spike functions, and its place in the suite."""

from dataclasses import replace

import pytest
import torch

from spikebench.engine import ExperimentSpec
from spikebench.learning_rules import make_rule
from spikebench.models import SpikingMLP
from spikebench.neurons import ParaLIFLayer, ParaLIFParams
from spikebench.neurons.paralif import (
    chunked_membrane,
    fft_membrane,
    paralif_kernel,
    parallel_membrane,
    sequential_membrane,
)


@pytest.mark.parametrize("method", ["fft", "chunked", "auto"])
@pytest.mark.parametrize("steps", [1, 7, 16, 100, 513])
def test_parallel_membrane_equals_the_recurrence(steps, method):
    g = torch.Generator().manual_seed(steps)
    current = torch.randn(steps, 3, 5, generator=g, dtype=torch.float64)
    alpha = torch.tensor([0.5, 0.8, 0.9, 0.95, 0.9], dtype=torch.float64)
    beta = torch.tensor([0.9, 0.8, 0.95, 0.5, 0.90001], dtype=torch.float64)  # alpha = beta too
    torch.testing.assert_close(parallel_membrane(current, alpha, beta, method),
                               sequential_membrane(current, alpha, beta), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("chunk", [1, 5, 16, 64])
def test_chunked_scan_equals_the_fft_path_with_gradients(chunk):
    """The chunked scan against the FFT path in float64: the membrane and its gradients in
    the current and in both time constants (partial last chunk, chunk longer than T)."""
    g = torch.Generator().manual_seed(chunk)
    current = torch.randn(45, 3, 4, generator=g, dtype=torch.float64)
    raw = torch.tensor([[0.2, 1.5, 2.5, 0.0], [2.2, 1.5, 0.4, 3.0]], dtype=torch.float64)
    weights = torch.randn(45, 3, 4, generator=g, dtype=torch.float64)
    out = []
    for fn in (lambda c, a, b: chunked_membrane(c, a, b, chunk), fft_membrane):
        c, r = current.clone().requires_grad_(), raw.clone().requires_grad_()
        m = fn(c, torch.sigmoid(r[0]), torch.sigmoid(r[1]))
        (m * weights).sum().backward()
        out.append((m.detach(), c.grad, r.grad))
    for a, b in zip(*out, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-11)


def test_kernel_is_the_impulse_response():
    alpha, beta = torch.tensor([0.7, 0.6]), torch.tensor([0.9, 0.6])
    impulse = torch.zeros(20, 1, 2)
    impulse[0] = 1.0
    torch.testing.assert_close(paralif_kernel(alpha, beta, 20),
                               sequential_membrane(impulse, alpha, beta)[:, 0], atol=1e-6, rtol=0)


def test_gradients_reach_and_move_the_time_constants():
    torch.manual_seed(0)
    layer = ParaLIFLayer(6, 4, params=ParaLIFParams(spike_fn="T", threshold=0.05))
    x = (torch.rand(30, 8, 6) < 0.5).float()
    before = (layer.alpha.detach().clone(), layer.beta.detach().clone())
    opt = torch.optim.Adam(layer.parameters(), lr=0.05)
    for _ in range(5):
        opt.zero_grad()
        layer(x).mean().backward()
        assert float(layer.raw_decays.grad.abs().sum()) > 0
        opt.step()
    assert not torch.allclose(layer.alpha, before[0]) and not torch.allclose(layer.beta, before[1])


@pytest.mark.parametrize("fn", ["SB", "GS", "D", "T"])
def test_spike_functions_are_binary_with_a_gradient(fn):
    torch.manual_seed(1)
    layer = ParaLIFLayer(6, 5, params=ParaLIFParams(spike_fn=fn, threshold=0.05))
    x = (torch.rand(25, 4, 6) < 0.5).float()
    s = layer(x)
    assert set(s.detach().unique().tolist()) <= {0.0, 1.0} and float(s.sum()) > 0
    s.sum().backward()
    assert float(layer.weight.grad.abs().sum()) > 0


def test_recurrent_variant_is_two_passes_with_shifted_spikes():
    torch.manual_seed(2)
    layer = ParaLIFLayer(5, 4, recurrent=True,
                         params=ParaLIFParams(spike_fn="T", threshold=0.05)).double()
    x = (torch.rand(12, 3, 5) < 0.5).double()
    cur = x @ layer.weight.t()
    a, b = layer.alpha, layer.beta
    s1 = (sequential_membrane(cur, a, b) > 0.05).double()
    prev = torch.cat([torch.zeros_like(s1[:1]), s1[:-1]])
    s2 = (sequential_membrane(cur + prev @ layer.rec_weight.t(), a, b) > 0.05).double()
    torch.testing.assert_close(layer(x), s2)


def test_paralif_mlp_trains_by_bptt_and_online_rules_refuse_it():
    torch.manual_seed(3)
    params = ParaLIFParams(spike_fn="T", threshold=0.05)
    model = SpikingMLP((6, 8, 3), neuron="paralif", params=params, weight_scale=3.0)
    x = (torch.rand(20, 4, 6) < 0.5).float()
    out = make_rule("bptt").backward(model, x, torch.tensor([0, 1, 2, 1]))
    assert out.outputs.shape == (20, 4, 3)
    assert float(model.hidden[0].raw_decays.grad.abs().sum()) > 0
    rebuilt = SpikingMLP.from_config(model.config())
    assert isinstance(rebuilt.params, ParaLIFParams)
    with pytest.raises(TypeError, match="no single-step function"):
        model.step(x[0], None)
    with pytest.raises(TypeError, match="LIF hidden layers"):
        make_rule("eprop").prepare(model)
    with pytest.raises(ValueError, match="cannot train neuron 'paralif'"):
        ExperimentSpec(rule="decolle", neuron="paralif")
    spec = replace(ExperimentSpec(neuron="paralif"), neuron_options={"spike_fn": "GS"})
    assert spec.neuron_options == {"spike_fn": "GS"}

import pytest
import torch

from spikebench.models import SpikingMLP, preset
from spikebench.neurons import LIFParams


def test_forward_unrolls_the_step_function():
    torch.manual_seed(0)
    m = SpikingMLP((6, 8, 5, 3), recurrent=True, weight_scale=3.0)
    x = (torch.rand(20, 4, 6) < 0.4).float()
    out, spikes = m(x, record=True)
    st = m.initial_state(4, x)
    for t in range(20):
        y, st = m.step(x[t], st)
        torch.testing.assert_close(y, out[t])
        for k, layer_state in enumerate(st.layers):
            torch.testing.assert_close(layer_state.s, spikes[k][t])
    assert out.shape == (20, 4, 3)
    assert sum(float(s.sum()) for s in spikes) > 0


def test_readout_is_a_leaky_integrator_of_the_last_hidden_spikes():
    torch.manual_seed(1)
    m = SpikingMLP((6, 7, 3), kappa=0.8, weight_scale=3.0)
    x = (torch.rand(10, 2, 6) < 0.5).float()
    out, (s,) = m(x, record=True)
    y = torch.zeros(2, 3)
    for t in range(10):
        y = 0.8 * y + s[t] @ m.readout.weight.t() + m.readout.bias
        torch.testing.assert_close(out[t], y)


def test_presets_and_layers():
    ff, rec = preset("nmnist"), preset("nmnist", recurrent=True)
    assert ff.sizes == (2312, 120, 84, 10) and preset("timit").sizes == (39, 400, 61)
    assert all(layer.rec_weight is None for layer in ff.hidden)
    assert [tuple(layer.rec_weight.shape) for layer in rec.hidden] == [(120, 120), (84, 84)]
    assert all(float(layer.rec_weight.diagonal().abs().sum()) == 0 for layer in rec.hidden)


def test_shape_mismatch_is_a_clear_error():
    m = preset("nmnist")
    with pytest.raises(ValueError, match="expects 2312"):
        m(torch.zeros(5, 2, 2, 32, 32))
    with pytest.raises(ValueError, match="time-major"):
        m(torch.zeros(5, 2312))


def test_config_round_trip():
    m = SpikingMLP((4, 6, 2), recurrent=True, params=LIFParams(alpha=0.5, reset="zero"))
    m2 = SpikingMLP.from_config(m.config())
    m2.load_state_dict(m.state_dict())
    x = torch.rand(7, 3, 4)
    torch.testing.assert_close(m(x), m2(x))

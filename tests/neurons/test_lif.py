"""Our LIF against norse (step by step) and against the paper's equations written out."""

import numpy as np
import pytest
import torch
from norse.torch.functional.lif import (
    LIFFeedForwardState,
    LIFParameters,
    LIFState,
    lif_feed_forward_step,
)
from norse.torch.functional.lif import lif_step as norse_lif_step

from spikebench.neurons import LIFLayer, LIFParams, lif_initial_state, lif_step, spike

DT, TAU_SYN, TAU_MEM = 1e-3, 5e-3, 1e-2


def norse_params(v_th=0.3):
    return LIFParameters(
        tau_syn_inv=torch.as_tensor(1 / TAU_SYN, dtype=torch.float64),
        tau_mem_inv=torch.as_tensor(1 / TAU_MEM, dtype=torch.float64),
        v_leak=torch.as_tensor(0.0, dtype=torch.float64),
        v_th=torch.as_tensor(v_th, dtype=torch.float64),
        v_reset=torch.as_tensor(0.0, dtype=torch.float64),
    )


def ours(v_th=0.3):
    return LIFParams.from_time_constants(TAU_SYN, TAU_MEM, DT, threshold=v_th, reset="zero")


def test_mapping_constants():
    p = ours()
    assert p.alpha == pytest.approx(1 - DT / TAU_SYN)
    assert p.beta == pytest.approx(1 - DT / TAU_MEM)
    assert p.gain == pytest.approx(DT / TAU_MEM)


def test_feed_forward_equals_norse_step_by_step():
    torch.manual_seed(0)
    steps, batch, n = 400, 8, 50
    currents = torch.randn(steps, batch, n, dtype=torch.float64) * 2.0 + 0.8
    p, q = ours(), norse_params()
    st = lif_initial_state(batch, n, torch.float64)
    nst = LIFFeedForwardState(v=torch.zeros(batch, n, dtype=torch.float64),
                              i=torch.zeros(batch, n, dtype=torch.float64))
    total = 0
    for c in currents:
        s, st = lif_step(c, st, p)
        z, nst = lif_feed_forward_step(c, nst, q, dt=DT)
        assert torch.equal(s, z)
        torch.testing.assert_close((1 - s) * st.u, nst.v, rtol=0, atol=1e-10)
        torch.testing.assert_close(p.alpha * st.i, nst.i, rtol=0, atol=1e-10)
        total += int(s.sum())
    assert total > 1000  # the comparison covered many spikes and resets


def test_recurrent_layer_equals_norse_step_by_step():
    torch.manual_seed(1)
    steps, batch, n_in, n = 300, 4, 30, 40
    p, q = ours(v_th=0.2), norse_params(v_th=0.2)
    layer = LIFLayer(n_in, n, recurrent=True, params=p).double()
    with torch.no_grad():
        layer.weight.normal_(0, 1.0)
        layer.rec_weight.normal_(0, 0.3)
        layer.rec_weight.fill_diagonal_(0.0)  # ours masks the diagonal; norse would use it
    x = (torch.rand(steps, batch, n_in, dtype=torch.float64) < 0.2).double()
    st = layer.initial_state(batch, x)
    nst = LIFState(*(torch.zeros(batch, n, dtype=torch.float64) for _ in range(3)))
    total = 0
    with torch.no_grad():
        for x_t in x:
            s, st = layer.step(x_t, st)
            z, nst = norse_lif_step(x_t, nst, layer.weight, layer.rec_weight, q, dt=DT)
            assert torch.equal(s, z)
            torch.testing.assert_close((1 - s) * st.u, nst.v, rtol=0, atol=1e-10)
            torch.testing.assert_close(p.alpha * st.i, nst.i, rtol=0, atol=1e-10)
            total += int(s.sum())
    assert total > 500


def test_subtractive_reset_matches_the_papers_equations():
    """I[t] = a I[t-1] + x[t]; U[t] = b U[t-1] + I[t] - th s[t-1]; s = H(U - th), in numpy."""
    rng = np.random.default_rng(0)
    x = rng.normal(0.3, 1.0, (200, 3, 5))
    a, b, th = 0.7, 0.85, 1.2
    p = LIFParams(alpha=a, beta=b, threshold=th, reset="subtract")
    st = lif_initial_state(3, 5, torch.float64)
    i = u = s = np.zeros((3, 5))
    for x_t in x:
        i = a * i + x_t
        u = b * u + i - th * s
        s = (u > th).astype(float)
        out, st = lif_step(torch.from_numpy(x_t), st, p)
        np.testing.assert_allclose(st.u.numpy(), u, atol=1e-12)
        np.testing.assert_array_equal(out.numpy(), s)


@pytest.mark.parametrize("surrogate,expected", [
    ("fast_sigmoid", lambda x, k: 1 / (1 + k * x.abs()) ** 2),
    ("sigmoid", lambda x, k: k * torch.sigmoid(k * x) * (1 - torch.sigmoid(k * x))),
    ("triangle", lambda x, k: torch.clamp(1 - k * x.abs(), min=0)),
])
def test_surrogate_backward(surrogate, expected):
    x = torch.linspace(-2, 2, 41, dtype=torch.float64, requires_grad=True)
    y = spike(x, surrogate, slope=3.0)
    assert torch.equal(y.detach(), (x > 0).double())
    (g,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(g, expected(x.detach(), 3.0))


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="reset"):
        LIFParams(reset="soft")
    with pytest.raises(ValueError, match="unknown surrogate 'nope'"):
        LIFParams(surrogate="nope")
    with pytest.raises(ValueError, match="beta"):
        LIFParams(beta=1.5)

"""Fisher traces: the fast probe computation and torch.func's against a plain loop (float64)."""

import pytest
import torch

from spikebench.analysis.fisher import (
    fisher_traces,
    fisher_traces_direct,
    fisher_traces_vmap,
    parameter_groups,
    shares,
)
from spikebench.models import SpikingMLP
from spikebench.neurons import LIFParams, ParaLIFParams


def tiny(recurrent, neuron="lif", seed=0):
    torch.manual_seed(seed)
    params = LIFParams(slope=2.0) if neuron == "lif" else ParaLIFParams(spike_fn="T")
    return SpikingMLP((12, 9, 7, 4), recurrent=recurrent, neuron=neuron, params=params,
                      weight_scale=3.0).double()


def batch(seed=1, steps=8, n=5):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(steps, n, 12, generator=g) < 0.4).double()
    return x, torch.randint(0, 4, (n,), generator=g)


@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize("burn_in", [0, 3])
def test_fast_and_vmap_traces_equal_the_per_sample_loop(recurrent, burn_in):
    model = tiny(recurrent)
    x, y = batch()
    direct = fisher_traces_direct(model, x, y, burn_in)
    fast = fisher_traces(model, x, y, burn_in, batch_size=2)  # uneven chunks on purpose
    vm = fisher_traces_vmap(model, x, y, burn_in, chunk=3)
    assert set(direct) == set(parameter_groups(model))
    assert ("h1.RW" in direct) == recurrent
    for g in direct:
        assert direct[g].shape == (8 - burn_in,)
        assert direct[g].sum() > 0, g
        torch.testing.assert_close(fast[g], direct[g], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(vm[g], direct[g], rtol=1e-10, atol=1e-12)


def test_recurrent_trace_ignores_the_fixed_diagonal():
    # V's diagonal is held at zero; a trace that counted its gradient would differ
    model = tiny(True)
    x, y = batch()
    named = dict(model.named_parameters())
    rec = named["hidden.0.rec_weight"]
    total = 0.0
    for b in range(x.shape[1]):
        from spikebench.analysis.fisher import step_losses
        losses = step_losses(model(x[:, b:b + 1]), y[b:b + 1])[:, 0]
        for t in range(len(losses)):
            (g,) = torch.autograd.grad(losses[t], rec, retain_graph=True)
            assert torch.all(g.diagonal() == 0)
            total += float(g.pow(2).sum())
    fast = fisher_traces(model, x, y)
    assert float(fast["h1.RW"].sum()) == pytest.approx(total / x.shape[1], rel=1e-10)


def test_paralif_models_go_through_vmap():
    model = tiny(False, neuron="paralif")
    x, y = batch()
    direct = fisher_traces_direct(model, x, y)
    fast = fisher_traces(model, x, y)
    for g in direct:
        torch.testing.assert_close(fast[g], direct[g], rtol=1e-9, atol=1e-12)


def test_shares_sum_to_one_and_bad_inputs_fail_clearly():
    model = tiny(True)
    x, y = batch()
    s = shares(fisher_traces(model, x, y))
    assert sum(s.values()) == pytest.approx(1.0)
    assert all(v >= 0 for v in s.values())
    with pytest.raises(ValueError, match="one label per sample"):
        fisher_traces(model, x, torch.zeros(8, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="B=5"):
        fisher_traces(model, x, y[:3])
    with pytest.raises(ValueError, match="all Fisher traces are zero"):
        shares({"h1.LW": torch.zeros(3)})

"""The weightless dynamics behind weights (``DynamicsLayer``) equal each neuron's own fused
layer (LIF's scan, ParaLIF's FFT, DLIF's scan): spikes exactly, gradients to float64
rounding, so the registry's one definition and the fast paths agree."""

import pytest
import torch

from spikebench.neurons import NEURONS, DLIFParams, DynamicsLayer, LIFParams, ParaLIFParams


def _pair(name, params, recurrent):
    entry = NEURONS.get(name)
    torch.manual_seed(0)
    fused = entry.layer(6, 5, recurrent=recurrent, params=params, weight_scale=3.0).double()
    generic = DynamicsLayer(6, 5, recurrent=recurrent, params=params,
                            dynamics=entry.dynamics).double()
    with torch.no_grad():
        generic.weight.copy_(fused.weight)
        if recurrent:
            generic.rec_weight.copy_(fused.recurrent_matrix())
        if hasattr(fused, "raw_decays"):
            generic.neuron.raw_decays.copy_(fused.raw_decays)
    return fused, generic


@pytest.mark.parametrize(("name", "params", "recurrent"), [
    ("lif", LIFParams(), False), ("lif", LIFParams(reset="zero"), False),
    ("lif", LIFParams(), True), ("lif", LIFParams(detach_reset=True), True),
    ("paralif", ParaLIFParams(spike_fn="T"), False),
    ("paralif", ParaLIFParams(spike_fn="D"), False),
    ("dlif", DLIFParams(steps=8), False), ("dlif", DLIFParams(steps=8, reset="subtract"), True),
])
def test_the_generic_layer_equals_the_fused_one(name, params, recurrent):
    fused, generic = _pair(name, params, recurrent)
    x = (torch.rand(8, 4, 6, generator=torch.Generator().manual_seed(1)) < 0.4).double()
    s_fused, s_generic = fused(x), generic(x)
    assert torch.equal(s_fused, s_generic) and s_fused.sum() > 0
    g = torch.randn_like(s_fused)
    (gf,) = torch.autograd.grad((s_fused * g).sum(), fused.weight)
    (gg,) = torch.autograd.grad((s_generic * g).sum(), generic.weight)
    torch.testing.assert_close(gf, gg, rtol=1e-12, atol=1e-12)


def test_a_parallel_neuron_has_no_recurrent_generic_layer():
    from spikebench.errors import ConfigError

    with pytest.raises(ConfigError, match="no recurrent"):
        DynamicsLayer(4, 3, recurrent=True, dynamics=NEURONS.get("paralif").dynamics)


@pytest.mark.parametrize("name", ["lif", "paralif", "dlif"])
def test_membranes_of_the_fused_layers_equal_the_step_unrolled_ones(name):
    params = {"paralif": ParaLIFParams(spike_fn="T"), "dlif": DLIFParams(steps=8)}.get(
        name, LIFParams())
    fused, generic = _pair(name, params, False)
    x = (torch.rand(8, 4, 6, generator=torch.Generator().manual_seed(2)) < 0.4).double()
    if name == "paralif":  # no step: its membranes are the parallel ones (no reset)
        assert fused.membranes(x).shape == (8, 4, 5) and generic.membranes(x) is None
        return
    post = fused.membranes(x)
    if name == "dlif":  # its state's membrane, as any step-wise neuron's
        torch.testing.assert_close(post, generic.membranes(x), rtol=1e-12, atol=1e-12)
    else:  # the fused scan's membranes after the reset, from the step's state
        state, posts = generic.initial_state(4, x), []
        for x_t in x:
            s, state = generic.step(x_t, state)
            posts.append(state.u - params.threshold * s)
        torch.testing.assert_close(post, torch.stack(posts), rtol=1e-12, atol=1e-12)


def test_per_neuron_parameters_broadcast_over_the_spatial_axes():
    from spikebench.neurons import per_neuron

    values = torch.tensor([1.0, 2.0, 3.0])
    step = torch.ones(2, 3, 4, 4)  # a step's current [B, C, H, W]
    scaled = per_neuron(values, step, 1) * step
    assert torch.equal(scaled[1, :, 2, 3], values) and scaled.shape == step.shape
    seq = torch.ones(5, 2, 3)  # [T, B, n]
    assert torch.equal((per_neuron(values, seq, 2) * seq)[4, 1], values)

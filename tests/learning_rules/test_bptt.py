"""BPTT against finite differences (float64) and the shared objective."""

import pytest
import torch
import torch.nn.functional as F

from spikebench.learning_rules import IGNORE, RULES, make_rule, objective
from spikebench.models import SpikingMLP
from spikebench.neurons import LIFParams
from spikebench.registry import UnknownNameError


def finite_difference_grads(model, x, y, burn_in=0, h=1e-6):
    grads = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            g = torch.zeros_like(p)
            flat, gflat = p.view(-1), g.view(-1)
            for k in range(flat.numel()):
                old = flat[k].item()
                flat[k] = old + h
                up = objective(model(x), y, burn_in).item()
                flat[k] = old - h
                down = objective(model(x), y, burn_in).item()
                flat[k] = old
                gflat[k] = (up - down) / (2 * h)
            grads[name] = g
    return grads


@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_bptt_equals_finite_differences(recurrent, reset):
    torch.manual_seed(0)
    # a smooth spike function (forward = sigmoid) makes the network differentiable, so the
    # unrolled gradient must match finite differences exactly
    params = LIFParams(alpha=0.7, beta=0.8, threshold=0.5, reset=reset,
                       surrogate="soft_sigmoid", slope=4.0)
    model = SpikingMLP((4, 5, 3, 2), recurrent=recurrent, params=params,
                       weight_scale=2.0).double()
    x = torch.rand(12, 3, 4, dtype=torch.float64)
    y = torch.tensor([0, 1, 1])
    rule = make_rule("bptt", burn_in=2)
    out = rule.backward(model, x, y)
    assert out.outputs.shape == (12, 3, 2)
    fd = finite_difference_grads(model, x, y, burn_in=2)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, fd[name], rtol=1e-5, atol=1e-8, msg=name)
    assert any(float(p.grad.abs().sum()) > 0 for p in model.parameters())


def test_frame_labels_objective_masks_padding():
    torch.manual_seed(0)
    out = torch.randn(6, 2, 4)
    y = torch.tensor([[0, 1], [2, 1], [3, IGNORE], [1, IGNORE], [0, IGNORE], [2, 3]])
    keep = y != IGNORE
    expected = F.cross_entropy(out[keep], y[keep])
    torch.testing.assert_close(objective(out, y), expected)


def test_unknown_rule_lists_the_known_ones():
    with pytest.raises(UnknownNameError, match="unknown rule 'sgd'; known rules: .*bptt"):
        make_rule("sgd")
    assert "bptt" in RULES

"""The analyses ask every model kind the same contract (models.contracts.Probed): a conv
SNN or ANN and a spiking head get Fisher traces and CKA representations like an MLP, and
the vectorised Fisher traces equal the plain per-sample loop on each of them (float64)."""

import pytest
import torch

from spikebench.analysis.cka import representations
from spikebench.analysis.fisher import fisher_traces_direct, fisher_traces_vmap, shares
from spikebench.models import ConvNet, Probed, SpikingMLP
from spikebench.models.hybrid import SpikingHead
from spikebench.neurons import DLIFParams, LIFParams


def _driven(model):
    """BatchNorm gains of 3: a deep random SNN spikes in every layer (non-zero traces)."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.fill_(3.0)
    return model


def _models():
    torch.manual_seed(0)
    images = 5 * torch.rand(5, 1, 8, 8)
    yield "conv-dlif", ConvNet("vgg-small", 1, 8, 3, DLIFParams(), steps=3), images
    yield "conv-lif", ConvNet("vgg-small", 1, 8, 3, LIFParams(), steps=3), images
    yield "conv-ann", ConvNet("vgg-small", 1, 8, 3, None), images
    yield ("resnet", _driven(ConvNet("resnet12", 1, 16, 3, DLIFParams(), steps=2)),
           5 * torch.rand(3, 1, 16, 16))
    yield "head", SpikingHead(6, 3, "lif", steps=4), (torch.rand(4, 5, 6) < 0.5).float()
    yield "mlp-rec", SpikingMLP((6, 5, 3), recurrent=True), (torch.rand(4, 5, 6) < 0.5).float()


def _id(v):
    return v if isinstance(v, str) else ""


@pytest.mark.parametrize("name,model,x", list(_models()), ids=_id)
def test_every_model_kind_is_probed_alike(name, model, x):
    model = model.double().eval()
    x = x.double()
    assert isinstance(model, Probed)
    torch.manual_seed(1)
    readouts, layers = model.probe(x)
    torch.manual_seed(1)
    out = None if isinstance(model, SpikingHead) else model(x)
    if isinstance(model, SpikingHead):  # it takes the rate code of the features
        torch.testing.assert_close(readouts.mean(0),
                                   model.gain * model.layer(x).mean(0) + model.bias)
    elif isinstance(model, SpikingMLP):
        assert torch.equal(readouts, out)
    else:  # the decision is the readout's mean over the steps
        torch.testing.assert_close(readouts.mean(0), out, rtol=0, atol=1e-12)
    assert len(layers) == len(model.layer_names())
    batch = x.shape[model.batch_dim]
    assert all(t.shape[1] == batch for t in [readouts, *layers])
    groups = model.weight_groups()
    named = dict(model.named_parameters())
    assert all(p in named and named[p].dim() >= 2 for p in groups.values())
    assert "out.LW" in groups or name == "head"
    reps = representations(model, x if model.batch_dim == 0 else x.transpose(0, 1),
                           None if model.batch_dim == 0 else (lambda xb: xb.transpose(0, 1)))
    assert [r.shape[0] for r in reps] == [batch] * (len(layers) + 1)


@pytest.mark.parametrize("name,model,x", [m for m in _models() if m[0] != "mlp-rec"],
                         ids=_id)
def test_fisher_traces_of_every_model_kind_equal_the_plain_loop(name, model, x):
    model = model.double().eval()  # BatchNorm's running statistics in both
    x = x.double()
    y = torch.arange(x.shape[model.batch_dim]) % 3
    fast = fisher_traces_vmap(model, x, y, chunk=2)
    slow = fisher_traces_direct(model, x, y)
    assert set(fast) == set(slow) == set(model.weight_groups())
    for g in fast:
        torch.testing.assert_close(fast[g], slow[g], rtol=1e-9, atol=1e-12)
    silent = [g for g, v in fast.items() if not float(v.detach().sum()) > 0]
    # DLIF's readout group: its last hidden layer may stay silent at random init
    assert len(silent) <= 1, silent
    assert abs(sum(shares(fast).values()) - 1) < 1e-12

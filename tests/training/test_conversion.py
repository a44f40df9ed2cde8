"""ANN-SNN conversion: IF rates reproduce the normalised ReLU activations."""

import torch

from spikebench.attacks.art import Classifier, predict
from spikebench.studies.conversion_ann import ConversionSpec, train_conversion_ann
from spikebench.training.conversion import ReLUMLP, convert, rate_input


def test_converted_rates_approach_the_relu_network():
    torch.manual_seed(0)
    ann = ReLUMLP((20, 16, 12, 5))
    x_rate = torch.rand(300, 20)
    snn = convert(ann, x_rate, percentile=100.0)
    steps = 400
    frames = x_rate[:50].unsqueeze(0).expand(steps, -1, -1)  # constant input current
    out, spikes = snn(frames, record=True)
    acts = ann.activations(x_rate[:50])
    lam1 = ann.activations(x_rate)[0].max()  # the 100th percentile over the data
    # layer 1 rate = a_1 / lambda_1 up to one spike in T (subtractive reset, no leak)
    torch.testing.assert_close(spikes[0].mean(0), (acts[0] / lam1).detach(), atol=1.5 / steps,
                               rtol=0)
    # the time-averaged readout approaches the ANN's logits
    err = (out.mean(0) - ann(x_rate[:50])).abs().max()
    scale = ann(x_rate[:50]).abs().max()
    assert err < 0.1 * scale


def test_trained_and_converted_network_keeps_the_accuracy_on_frames(tmp_path):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(400) % 2
    rate = torch.full((400, 20, 2, 4, 4), 0.05)
    rate[y == 0, :, :, :, :2] = 0.5
    rate[y == 1, :, :, :, 2:] = 0.5
    x = (torch.rand(rate.shape, generator=g) < rate).float()
    spec = ConversionSpec((32, 16, 2), epochs=20, lr=1e-2)
    result, ann = train_conversion_ann(spec, tmp_path / spec.run_id, rate_input(x[:300]),
                                       y[:300], progress=False)
    assert result.status == "done" and not result.skipped
    again, reread = train_conversion_ann(spec, tmp_path / spec.run_id, rate_input(x[:300]),
                                         y[:300], progress=False)
    assert again.skipped and all(torch.equal(a, b) for a, b in zip(
        ann.state_dict().values(), reread.state_dict().values(), strict=True))
    snn = convert(ann, rate_input(x[:300]))
    ann_acc = float((ann(rate_input(x[300:])).argmax(-1) == y[300:]).float().mean())
    snn_acc = float((predict(Classifier(snn), x[300:]) == y[300:]).float().mean())
    assert ann_acc > 0.95 and snn_acc > ann_acc - 0.05

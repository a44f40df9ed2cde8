"""The convolutional ANN/SNN builder: time folding against a step-by-step simulation, the
shared module names, and conversion's threshold balancing."""

import numpy as np
import pytest
import torch
from torch import nn

from spikebench.errors import ConfigError
from spikebench.models import ConvNet
from spikebench.models.conv import Residual
from spikebench.neurons import DLIFParams, SpikingActivation
from spikebench.neurons.dlif import dlif_step
from spikebench.training.conversion import convert_conv


def step_by_step(model, x):
    """An independent simulation: every layer at step t, the neurons' state carried."""
    states, outs = {}, []

    def layers(seq, h, t):
        for m in seq:
            if isinstance(m, SpikingActivation):
                v = states.get(id(m), torch.zeros_like(h))
                gain = None if m.gain is None else m.gain[t]
                h, _, states[id(m)] = dlif_step(v, h, m.params, m.threshold(), gain)
            elif isinstance(m, Residual):  # act(main(h) + shortcut(h)), at this step
                h = layers([m.act], layers(m.main, h, t) + layers(m.shortcut, h, t), t)
            else:
                h = m(h)
        return h

    for t in range(model.steps):
        outs.append(model.readout(layers(model.body, x, t)))
    return torch.stack(outs).mean(0)


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_time_folded_forward_equals_a_step_by_step_simulation(reset):
    torch.manual_seed(0)
    m = ConvNet("vgg-small", 1, 12, 4, DLIFParams(steps=5, reset=reset, threshold=0.3), steps=5)
    m = m.double().eval()
    with torch.no_grad():
        for n in m.neurons():
            n.gain.uniform_(0.5, 1.5)
    x = torch.rand(3, 1, 12, 12, dtype=torch.float64)
    torch.testing.assert_close(m(x), step_by_step(m, x), rtol=0, atol=1e-12)
    spikes = torch.stack([n(torch.ones(5, 1)) for n in m.neurons()])
    assert spikes.sum() > 0


def test_ann_and_snn_share_their_weight_names():
    ann = ConvNet("vgg5", 3, 32, 10)
    snn = ConvNet("vgg5", 3, 32, 10, DLIFParams(steps=4), steps=4)
    extra = set(snn.state_dict()) - set(ann.state_dict())
    assert set(ann.state_dict()) <= set(snn.state_dict())
    assert extra and all(k.endswith(("theta", "gain")) for k in extra)
    assert ann(torch.rand(2, 3, 32, 32)).shape == snn(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_conversion_balances_thresholds_layer_by_layer():
    torch.manual_seed(0)
    ann = ConvNet("vgg-small", 1, 12, 4).double().eval()
    x = torch.rand(64, 1, 12, 12, dtype=torch.float64)
    params = DLIFParams(leak=1.0, reset="subtract", dynamic=False, learn_threshold=True, steps=1)
    snn = convert_conv(ann, x, params, steps=16, percentile=99.7, scale=0.5, batch_size=32)
    # layer 0's current is BN(conv(x)) on batch statistics (the direct input repeats x)
    conv, bn = ann.body[0], nn.BatchNorm2d(ann.body[1].num_features).double()
    bn.load_state_dict(ann.body[1].state_dict())
    bn.train()
    with torch.no_grad():
        peaks = [np.percentile(np.tile(bn(conv(xb)).numpy(), (16, 1, 1, 1)), 99.7)
                 for xb in x.split(32)]  # over the T steps (16 copies)
    assert snn.neurons()[0].threshold().item() == pytest.approx(0.5 * max(peaks), rel=1e-9)
    # the weight layer after each neuron carries its threshold before the scaling
    theta_last = float(snn.neurons()[-1].threshold())
    torch.testing.assert_close(snn.readout.weight, ann.readout.weight * theta_last / 0.5)
    assert not snn.training and all(float(n.threshold()) > 0 for n in snn.neurons())
    agree = (snn(x).argmax(-1) == ann(x).argmax(-1)).double().mean()
    assert agree >= 0.5  # rates approximate the ANN (loosely at 16 steps)


def test_conversion_scales_thresholds_after_calibrating_at_its_own_steps():
    """The reference calibrates every layer at unscaled thresholds (T = 100) and scales
    them all afterwards: thresholds at scale s are s x those at scale 1, layer by layer,
    and calibrating at 24 steps gives the thresholds of a 24-step conversion."""
    torch.manual_seed(1)
    ann = ConvNet("vgg-small", 1, 12, 4).double().eval()
    x = torch.rand(48, 1, 12, 12, dtype=torch.float64)
    params = DLIFParams(leak=1.0, reset="zero", dynamic=False, learn_threshold=True, steps=1)

    def thresholds(**kw):
        snn = convert_conv(ann, x, params, percentile=99.7, batch_size=16, **kw)
        return snn, [float(n.threshold()) for n in snn.neurons()]

    _, unscaled = thresholds(steps=6, scale=1.0)
    snn, scaled = thresholds(steps=6, scale=0.3)
    assert scaled == pytest.approx([0.3 * t for t in unscaled], rel=1e-9)
    long, at_24 = thresholds(steps=24, scale=0.3)
    snn, calibrated = thresholds(steps=6, scale=0.3, calib_steps=24)
    assert calibrated == pytest.approx(at_24, rel=1e-12) and snn.steps == 6
    assert calibrated != pytest.approx(scaled, rel=1e-6)  # T matters past the first layer
    torch.testing.assert_close(snn.readout.weight, long.readout.weight)


def test_windows_from_carried_membranes_equal_one_run():
    torch.manual_seed(0)
    m = ConvNet("vgg-small", 1, 12, 4, DLIFParams(steps=6, threshold=0.3), steps=6)
    m = m.double().eval()
    with torch.no_grad():
        for n in m.neurons():
            n.gain.uniform_(0.5, 1.5)
    x = torch.rand(3, 1, 12, 12, dtype=torch.float64)
    first, state = m.window(x, 2, None, 0)
    second, state = m.window(x, 4, state, 2)
    torch.testing.assert_close(torch.cat([first, second]).mean(0), m(x), rtol=0, atol=1e-12)


def test_vgg16_has_thirteen_convs_and_refuses_images_it_would_pool_away():
    snn = ConvNet("vgg16", 3, 32, 10, DLIFParams(steps=2), steps=2)
    assert sum(isinstance(m, nn.Conv2d) for m in snn.body) == 13
    assert len(snn.neurons()) == 13 + 2  # every conv and both hidden FC layers spike
    assert snn(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ConfigError, match="pools 28-px images below 1 px"):
        ConvNet("vgg16", 1, 28, 10)


def _spiking_resnet(steps: int) -> ConvNet:
    torch.manual_seed(0)
    m = ConvNet("resnet12", 1, 12, 4, DLIFParams(steps=steps, threshold=0.3), steps=steps)
    m = m.double().eval()
    with torch.no_grad():
        for n in m.neurons():
            n.gain.uniform_(0.5, 1.5)
    return m


def test_resnet12_runs_its_residual_blocks_like_a_step_by_step_simulation():
    m = _spiking_resnet(4)
    assert sum(isinstance(b, Residual) for b in m.body) == 4
    assert sum(isinstance(c, nn.Conv2d) for c in m.modules()) == 3 + 4 * 2 + 3  # 3 shortcuts
    assert len(m.neurons()) == 3 + 4 * 2
    x = torch.rand(3, 1, 12, 12, dtype=torch.float64)
    rates = []
    hooks = [n.register_forward_hook(lambda mod, a, out: rates.append(float(out.mean())))
             for n in m.neurons()]
    out = m(x)
    for h in hooks:
        h.remove()
    assert min(rates) > 0  # every layer spikes: the check reaches the last block
    torch.testing.assert_close(out, step_by_step(m, x), rtol=0, atol=1e-12)
    first, state = m.window(x, 1, None, 0)
    second, state = m.window(x, 3, state, 1)
    torch.testing.assert_close(torch.cat([first, second]).mean(0), out, rtol=0, atol=1e-12)
    ann = ConvNet("resnet12", 1, 28, 10)  # 28 px: 14, 14, 7, 4, 2
    assert ann(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert set(ann.state_dict()) <= set(ConvNet("resnet12", 1, 28, 10, DLIFParams(steps=2),
                                                steps=2).state_dict())


def test_residual_nets_are_not_converted():
    from spikebench.suites.robust import RobustSpec

    with pytest.raises(ConfigError, match="residual"):
        convert_conv(ConvNet("resnet12", 1, 12, 4), torch.rand(4, 1, 12, 12),
                     DLIFParams(leak=1.0, dynamic=False, steps=2), steps=2)
    with pytest.raises(ConfigError, match="cannot convert resnet12"):
        RobustSpec(method="conversion", arch="resnet12")


@pytest.mark.parametrize(("arch", "widths", "pools"), [
    ("vgg11-ref", [64, 128, 256, 512, 512, 512, 512, 512], 3),
    ("vgg5-ref", [64, 128, 128], 2),
])
def test_the_references_vgg_layouts_flatten_8192_cifar_features(arch, widths, pools):
    """The robust-SNN references' VGG-11 / VGG-5 (not torchvision's): their conv widths,
    pools and FC 8192 -> 4096 -> 4096 -> classes on 32x32 images."""
    net = ConvNet(arch, 3, 32, 10)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert [c.out_channels for c in convs] == widths
    assert sum(isinstance(m, torch.nn.AvgPool2d) for m in net.modules()) == pools
    assert [(m.in_features, m.out_features) for m in linears] == [(8192, 4096), (4096, 4096),
                                                                 (4096, 10)]
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("arch, convs3x3, params", [("resnet20", 19, 0.27e6),
                                                    ("wrn16-4", 13, 2.7e6)])
def test_cifar_resnets_have_the_published_depth_and_size(arch, convs3x3, params):
    """ResNet-20: 19 3x3 convs + the readout, 0.27M parameters (He et al. 2016, Table 6);
    WRN-16-4: 13 3x3 convs + the readout, 2.7M (Zagoruyko & Komodakis 2016, Table 4);
    our 1x1-conv shortcuts and BN add a few percent."""
    ann = ConvNet(arch, 3, 32, 10)
    convs = [m for m in ann.modules() if isinstance(m, nn.Conv2d)]
    assert sum(c.kernel_size == (3, 3) for c in convs) == convs3x3
    n = sum(p.numel() for p in ann.parameters())
    assert params <= n <= 1.05 * params
    snn = ConvNet(arch, 3, 32, 10, DLIFParams(steps=2), steps=2)
    assert snn.readout.in_features == convs[-1].out_channels  # pooled to one pixel
    assert snn(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert len(snn.neurons()) == 1 + 2 * (convs3x3 - 1) // 2

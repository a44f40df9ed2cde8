"""Encoders and hybrids: torchvision-compatible state_dict keys and shapes (without
importing torchvision), weight loading, the spiking heads, preprocessing."""

import pytest
import torch

from spikebench.models.hybrid import (
    IMAGE_ENCODERS,
    HybridNet,
    SpikingHead,
    build_encoder,
    load_weights,
)
from spikebench.models.lenet import LeNet5
from spikebench.neurons import LIFLayer


def torchvision_resnet_keys(blocks, bottleneck, classes=1000):
    """torchvision.models.resnet's state_dict keys and shapes, restated from its source:
    conv1/bn1 stem, layer1-4 of BasicBlock (conv1-2, bn1-2) or Bottleneck (conv1-3, bn1-3,
    stride on conv2), a downsample (1x1 conv + bn) where the shape changes, fc."""
    keys = {}

    def bn(name, c):
        keys.update({f"{name}.weight": (c,), f"{name}.bias": (c,),
                     f"{name}.running_mean": (c,), f"{name}.running_var": (c,),
                     f"{name}.num_batches_tracked": ()})

    keys["conv1.weight"] = (64, 3, 7, 7)
    bn("bn1", 64)
    inplanes, exp = 64, 4 if bottleneck else 1
    for li, (planes, n) in enumerate(zip((64, 128, 256, 512), blocks, strict=True)):
        for b in range(n):
            p = f"layer{li + 1}.{b}"
            if bottleneck:
                keys[f"{p}.conv1.weight"] = (planes, inplanes, 1, 1)
                keys[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                keys[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
                for i, c in ((1, planes), (2, planes), (3, planes * 4)):
                    bn(f"{p}.bn{i}", c)
            else:
                keys[f"{p}.conv1.weight"] = (planes, inplanes, 3, 3)
                keys[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                bn(f"{p}.bn1", planes)
                bn(f"{p}.bn2", planes)
            if b == 0 and (li > 0 or inplanes != planes * exp):
                keys[f"{p}.downsample.0.weight"] = (planes * exp, inplanes, 1, 1)
                bn(f"{p}.downsample.1", planes * exp)
            inplanes = planes * exp
    keys["fc.weight"] = (classes, 512 * exp)
    keys["fc.bias"] = (classes,)
    return keys


def torchvision_vit_keys(layers=12, dim=768, mlp=3072, patch=16, size=224, classes=1000):
    """torchvision.models.vision_transformer's keys and shapes (vit_b_16), from its source."""
    seq = (size // patch) ** 2 + 1
    keys = {"class_token": (1, 1, dim), "conv_proj.weight": (dim, 3, patch, patch),
            "conv_proj.bias": (dim,), "encoder.pos_embedding": (1, seq, dim),
            "encoder.ln.weight": (dim,), "encoder.ln.bias": (dim,),
            "heads.head.weight": (classes, dim), "heads.head.bias": (classes,)}
    for i in range(layers):
        p = f"encoder.layers.encoder_layer_{i}"
        keys.update({
            f"{p}.ln_1.weight": (dim,), f"{p}.ln_1.bias": (dim,),
            f"{p}.self_attention.in_proj_weight": (3 * dim, dim),
            f"{p}.self_attention.in_proj_bias": (3 * dim,),
            f"{p}.self_attention.out_proj.weight": (dim, dim),
            f"{p}.self_attention.out_proj.bias": (dim,),
            f"{p}.ln_2.weight": (dim,), f"{p}.ln_2.bias": (dim,),
            f"{p}.mlp.0.weight": (mlp, dim), f"{p}.mlp.0.bias": (mlp,),
            f"{p}.mlp.3.weight": (dim, mlp), f"{p}.mlp.3.bias": (dim,)})
    return keys


@pytest.mark.parametrize("name, expected, n_keys, n_params", [
    ("resnet18", torchvision_resnet_keys((2, 2, 2, 2), False), 122, 11_689_512),
    ("resnet50", torchvision_resnet_keys((3, 4, 6, 3), True), 320, 25_557_032),
    ("vit_b_16", torchvision_vit_keys(), 152, 86_567_656),
])
def test_state_dict_matches_torchvision(name, expected, n_keys, n_params):
    encoder, _, _ = build_encoder(name, 1000)
    got = {k: tuple(v.shape) for k, v in encoder.state_dict().items()}
    assert got == expected
    # torchvision's documented sizes (num_params of the ImageNet weights)
    assert len(got) == n_keys
    assert sum(p.numel() for p in encoder.parameters()) == n_params


def test_weights_saved_elsewhere_load_and_a_bad_file_fails_clearly(tmp_path):
    src, _, _ = build_encoder("resnet18", 1000)  # e.g. ImageNet weights, 1000 classes
    torch.save(src.state_dict(), tmp_path / "r18.pt")
    dst, _, _ = build_encoder("resnet18", 10)
    skipped = load_weights(dst, str(tmp_path / "r18.pt"))
    assert sorted(skipped) == ["fc.bias", "fc.weight"]  # another number of classes: head left alone
    torch.testing.assert_close(dst.layer3[1].conv2.weight, src.layer3[1].conv2.weight)
    assert dst.fc.weight.shape == (10, 512)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_weights(dst, str(tmp_path / "missing.pt"))
    torch.save(LeNet5().state_dict(), tmp_path / "lenet.pt")
    with pytest.raises(ValueError, match="does not fit"):
        load_weights(dst, str(tmp_path / "lenet.pt"))


def test_lif_head_runs_lif_on_the_rate_code():
    torch.manual_seed(0)
    head = SpikingHead(16, 4, "lif", steps=20)
    assert isinstance(head.layer, LIFLayer)
    feats = torch.randn(8, 16)
    torch.manual_seed(1)
    logits = head(feats)
    torch.manual_seed(1)
    lo, hi = feats.min(1, keepdim=True).values, feats.max(1, keepdim=True).values
    p = (feats - lo) / (hi - lo)
    spikes = (torch.rand(20, 8, 16) < p).float()
    rate = head.layer(spikes).mean(0)  # LIF dynamics, step by step
    torch.testing.assert_close(logits, head.gain * rate + head.bias)
    assert rate.min() >= 0 and rate.max() <= 1


@pytest.mark.parametrize("neuron", ["lif", "paralif"])
def test_spiking_heads_pass_gradients_and_their_loss_is_not_bounded(neuron):
    torch.manual_seed(0)
    head = SpikingHead(16, 4, neuron)
    feats = torch.randn(32, 16, requires_grad=True)
    y = torch.randint(0, 4, (32,))
    loss = torch.nn.functional.cross_entropy(head(feats), y)
    loss.backward()
    assert feats.grad.abs().sum() > 0  # straight-through rate code reaches the encoder
    assert head.layer.weight.grad.abs().sum() > 0 and head.gain.grad is not None
    # rates lie in [0, 1], but the logits scale with the learnable gain: a confident head
    # can drive the cross-entropy towards 0 (rates used as logits cannot go below ~0.7)
    with torch.no_grad():
        head.gain.fill_(1000.0)
    assert head(feats).abs().max() > 100


def test_hybrid_preprocessing_and_eot():
    encoder, info, size = build_encoder("resnet18", 10)
    torch.manual_seed(0)
    net = HybridNet(encoder, info, size, SpikingHead(512, 10, "paralif"), eot=4).eval()
    x = torch.rand(3, 1, 28, 28)
    pre = net.preprocess(x)
    assert pre.shape == (3, 3, 32, 32)  # grey -> RGB, resized to the encoder's input
    torch.testing.assert_close(pre[:, 0] * 0.229 + 0.485, pre[:, 1] * 0.224 + 0.456)
    feats = net.features(x)
    torch.manual_seed(3)
    expected = torch.stack([net.spiking_head(feats) for _ in range(4)]).mean(0)
    torch.manual_seed(3)
    torch.testing.assert_close(net(x), expected)
    vit, vinfo, vsize = build_encoder("vit_small", 10)
    assert HybridNet(vit, vinfo, vsize)(x).shape == (3, 10)
    with pytest.raises(ValueError, match="32x32"):
        vit.features(torch.rand(1, 3, 28, 28))
    assert set(IMAGE_ENCODERS.names()) == {"lenet5", "resnet18", "resnet50", "vit_b_16",
                                           "vit_small"}

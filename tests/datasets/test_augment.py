"""Crop-and-flip augmentation against a per-sample numpy implementation, and its use in
the image suites' batches (deterministic per seed and epoch, only where asked)."""

import numpy as np
import torch

from spikebench.datasets.augment import PAD, crop_flip, draw
from spikebench.engine.data import epoch_batches


def reference(x: np.ndarray, offsets: np.ndarray, flips: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    h, w = x.shape[-2:]
    for i in range(len(x)):
        padded = np.pad(x[i], ((0, 0), (PAD, PAD), (PAD, PAD)))
        dy, dx = offsets[i]
        crop = padded[:, dy:dy + h, dx:dx + w]
        out[i] = crop[:, :, ::-1] if flips[i] else crop
    return out


def test_crop_flip_equals_a_per_sample_reference():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 7, 9, dtype=torch.float64)
    offsets, flips = draw(len(x), g)
    assert offsets.min() >= 0 and offsets.max() <= 2 * PAD and flips.any() and not flips.all()
    got = crop_flip(x, offsets, flips)
    np.testing.assert_array_equal(got.numpy(), reference(x.numpy(), offsets.numpy(),
                                                         flips.numpy()))
    # no shift, no flip: the image itself
    same = crop_flip(x, torch.full((16, 2), PAD), torch.zeros(16, dtype=torch.bool))
    assert torch.equal(same, x)


def test_augmented_batches_are_the_same_per_seed_and_epoch_and_only_where_asked():
    class Spec:
        seed, batch_size, device = 3, 8, "cpu"

        def __init__(self, augment):
            self.augment = augment

    x, y = torch.rand(20, 1, 8, 8), torch.arange(20)
    plain = list(epoch_batches(Spec(False), x, y)(1))
    first = list(epoch_batches(Spec(True), x, y)(1))
    again = list(epoch_batches(Spec(True), x, y)(1))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again, strict=True))
    assert [torch.equal(a[1], b[1]) for a, b in zip(plain, first, strict=True)] == [True] * 3
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(plain, first, strict=True))
    assert all(torch.equal(b[0], x[b[1]]) for b in plain)

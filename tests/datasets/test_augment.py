"""Crop-and-flip augmentation and cutout against per-sample numpy implementations, and
their use in the image suites' batches (deterministic per seed and epoch, only where
asked)."""

import numpy as np
import torch

from spikebench.datasets.augment import PAD, augment, crop_flip, cutout, draw
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


def test_cutout_zeroes_a_clipped_square_as_a_per_sample_reference_does():
    x = torch.rand(5, 2, 9, 7, dtype=torch.float64) + 0.5
    centres = torch.tensor([[4, 3], [0, 0], [8, 6], [2, 6], [8, 1]])
    got = cutout(x, centres, 4).numpy()
    want = x.numpy().copy()
    for i, (r, c) in enumerate(centres.tolist()):
        r0, c0 = r - 2, c - 2  # DeVries & Taylor: [centre - L/2, centre + L/2), clipped
        want[i, :, max(r0, 0):max(r0 + 4, 0), max(c0, 0):max(c0 + 4, 0)] = 0
    np.testing.assert_array_equal(got, want)
    assert (got[0] == 0).sum() == 2 * 16 and (got[1] == 0).sum() == 2 * 4  # a corner: 2x2
    g = torch.Generator().manual_seed(0)
    only = augment(x, g, flip=False, cut=3)
    assert ((only == 0).sum((1, 2, 3)) <= 2 * 9).all() and (only == 0).any()


def test_cutout_batches_only_where_asked_after_the_same_crop():
    class Spec:
        seed, batch_size, device = 3, 8, "cpu"

        def __init__(self, augment, cutout):
            self.augment, self.cutout = augment, cutout

    x, y = torch.rand(20, 1, 8, 8) + 0.5, torch.arange(20)
    flip = list(epoch_batches(Spec(True, 0), x, y)(1))
    both = list(epoch_batches(Spec(True, 4), x, y)(1))
    cut = list(epoch_batches(Spec(False, 4), x, y)(1))
    (a, _), (b, _) = flip[0], both[0]  # the first batch: cutout after the same crop
    keep = b != 0
    assert torch.equal(a[keep], b[keep]) and (~keep).sum() > (a == 0).sum()
    assert all(torch.equal(b[0][b[0] != 0], x[b[1]][b[0] != 0]) for b in cut)

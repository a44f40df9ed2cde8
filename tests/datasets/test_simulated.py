"""The embedded N-MNIST-style simulation."""

import numpy as np
import pytest

from spikebench.datasets.events import EVENT_DTYPE, frames_from_events
from spikebench.datasets.simulated import SaccadeSimulator, mnist5k, split_indices


@pytest.fixture(scope="module")
def digits():
    x, y = mnist5k()
    idx = np.concatenate([np.flatnonzero(y == c)[:2] for c in range(10)])
    return x[idx], y[idx]


def test_layout_and_counts_like_real_nmnist(digits):
    images, _ = digits
    ev, off = SaccadeSimulator().simulate(images, seed=0, progress=False)
    assert ev.dtype == EVENT_DTYPE and len(off) == len(images) + 1
    counts = np.diff(off)
    # real N-MNIST: 1,069-7,152 events per sample in ../shared/data (about 4,000 on average)
    assert counts.min() > 1000 and counts.max() < 9000
    assert ev["x"].min() >= 0 and ev["x"].max() < 34 and ev["y"].max() < 34
    assert ev["t"].min() >= 0 and ev["t"].max() < 300_000
    assert set(np.unique(ev["p"])) == {0, 1}
    for k in range(len(images)):
        assert np.all(np.diff(ev["t"][off[k]:off[k + 1]]) >= 0)


def test_deterministic_for_a_seed(digits):
    images, _ = digits
    a = SaccadeSimulator().simulate(images[:3], seed=5, progress=False)
    b = SaccadeSimulator().simulate(images[:3], seed=5, progress=False)
    c = SaccadeSimulator().simulate(images[:3], seed=6, progress=False)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_single_bright_pixel_moving_right_gives_on_then_off():
    """Exact special case: a point moving right turns pixels ON ahead of it and OFF behind."""
    img = np.zeros((1, 28, 28), dtype=np.float32)
    img[0, 10, 10] = 1.0
    sim = SaccadeSimulator(vertices=((0.0, 0.0), (3.0, 0.0), (3.0, 0.0)), contrast_sd=0.0,
                           noise_hz=0.0, duration_ms=30)
    ev, _ = sim.simulate(img, seed=0, progress=False)
    assert set(np.unique(ev["y"])) == {10}  # no vertical motion
    ev = ev[ev["t"] < 10_000]  # the first saccade: 3 px to the right in 10 ms
    on, off = ev[ev["p"] == 1], ev[ev["p"] == 0]
    assert set(np.unique(on["x"])) == {11, 12, 13} and set(np.unique(off["x"])) == {10, 11, 12}
    # log(0.1 + 1) - log(0.1) = 2.40 crosses the 0.35 contrast six times per full change
    assert len(on) == 3 * 6 and len(off) == 3 * 6
    for x in (11, 12):  # a pixel brightens before it darkens
        assert on["t"][on["x"] == x].min() < off["t"][off["x"] == x].min()


def test_events_lie_on_the_moving_digit(digits):
    images, _ = digits
    ev, off = SaccadeSimulator().simulate(images[:1], seed=0, progress=False)
    frames = frames_from_events([ev], n_steps=30, dt_us=10_000)[0]
    per_pixel = frames.sum(axis=(0, 1))  # [34, 34]
    ink = np.zeros((34, 34), bool)  # every pixel the digit's strokes cover along the path
    for ox in range(1, 7):
        for oy in range(1, 7):
            ink[oy : oy + 28, ox : ox + 28] |= images[0] > 0.05
    assert per_pixel[ink].sum() > 0.97 * per_pixel.sum()  # the rest is background noise
    assert (per_pixel[ink] > 0).mean() > 0.8


def test_split_is_class_balanced():
    _, y = mnist5k()
    train, test = split_indices(y)
    assert len(train) == 4000 and len(test) == 1000 and not set(train) & set(test)
    assert np.bincount(y[test]).tolist() == [100] * 10

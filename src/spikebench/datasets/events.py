"""Event streams in the N-MNIST binary format, and binning of events into frames.

N-MNIST format (Orchard et al. 2015): 5 bytes per event,
``x = b0``, ``y = b1``, ``p = b2 >> 7`` (1 = ON), ``t_us = ((b2 & 0x7F) << 16) | (b3 << 8) | b4``.
``y == 240`` marks a timestamp overflow; tonic's reader (used here) handles it.
Events are structured arrays with fields x, y, t (us), p, as in tonic.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from spikebench.datasets.base import CorruptDataError, DataNotFoundError, check_fits

EVENT_DTYPE = np.dtype([("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "<i1")])
SENSOR = (34, 34)  # N-MNIST sensor width, height
MAX_T_US = (1 << 23) - 1  # 23 bits of timestamp


def read_nmnist_bin(path: str | Path, sensor: tuple[int, int] = SENSOR) -> np.ndarray:
    """Read one N-MNIST event file (``.bin`` or the subset's ``.bs2``)."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"event file not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise CorruptDataError(f"{path}: the file is empty (0 bytes, no events); an N-MNIST "
                               "sample holds thousands of events: restore or remove the file")
    if size % 5 != 0:
        raise CorruptDataError(
            f"{path}: {size} bytes is not a multiple of 5 (N-MNIST events are 5 bytes each); "
            "the file is truncated or not in N-MNIST format"
        )
    from tonic.io import read_mnist_file  # tonic's reader (imported when needed: slow)

    ev = read_mnist_file(str(path), dtype=EVENT_DTYPE)
    if len(ev) and (ev["x"].max() >= sensor[0] or ev["y"].max() >= sensor[1]):
        raise CorruptDataError(
            f"{path}: event coordinates up to x={ev['x'].max()}, y={ev['y'].max()} do not fit "
            f"the {sensor[0]}x{sensor[1]} sensor; not an N-MNIST file?"
        )
    if len(ev) > 1 and np.any(np.diff(ev["t"]) < 0):
        ev = ev[np.argsort(ev["t"], kind="stable")]
    return ev


def encode_nmnist(events: np.ndarray) -> bytes:
    """Encode events (fields x, y, t, p) as N-MNIST bytes (no overflow markers)."""
    t = np.asarray(events["t"], dtype=np.int64)
    if len(t) and (t.min() < 0 or t.max() > MAX_T_US):
        raise ValueError(f"timestamps must lie in [0, {MAX_T_US}] us")
    x = np.asarray(events["x"], dtype=np.int64)
    y = np.asarray(events["y"], dtype=np.int64)
    if len(x) and (x.min() < 0 or x.max() > 255 or y.min() < 0 or y.max() > 239):
        raise ValueError("coordinates must satisfy 0 <= x <= 255, 0 <= y <= 239")
    raw = np.empty((len(t), 5), dtype=np.uint8)
    raw[:, 0] = x
    raw[:, 1] = y
    raw[:, 2] = (np.asarray(events["p"], dtype=np.int64) << 7) | (t >> 16)
    raw[:, 3] = (t >> 8) & 0xFF
    raw[:, 4] = t & 0xFF
    return raw.tobytes()


def write_nmnist_bin(path: str | Path, events: np.ndarray) -> None:
    Path(path).write_bytes(encode_nmnist(events))


def decode_nmnist(raw: bytes | np.ndarray) -> np.ndarray:
    """Decode N-MNIST bytes already in memory (tonic's reader on a stream)."""
    raw = np.asarray(raw, dtype=np.uint8) if not isinstance(raw, bytes) else raw
    if len(raw) % 5 != 0:
        raise CorruptDataError(f"{len(raw)} bytes is not a multiple of 5 (N-MNIST events)")
    from tonic.io import read_mnist_file

    return read_mnist_file(io.BytesIO(bytes(raw)), dtype=EVENT_DTYPE, is_stream=True)


def frames_from_events(
    events: list[np.ndarray],
    n_steps: int,
    dt_us: int,
    sensor: tuple[int, int] = SENSOR,
    chunk: int = 256,
) -> np.ndarray:
    """Bin each event stream into ``n_steps`` frames of ``dt_us`` microseconds from t = 0.

    Returns uint8 counts [N, T, 2, H, W] (saturating at 255); events at or after
    ``n_steps * dt_us`` are dropped. Channel 0 = OFF, channel 1 = ON.
    """
    if n_steps < 1 or dt_us < 1:
        raise ValueError(f"n_steps and dt_us must be >= 1, got {n_steps}, {dt_us}")
    w, h = sensor
    per = n_steps * 2 * h * w
    check_fits(len(events) * per, f"{len(events)} event samples binned into {n_steps} steps",
               "choose fewer time steps (--steps) or samples (--n-train, --n-test)")
    out = np.zeros((len(events), n_steps, 2, h, w), dtype=np.uint8)
    for start in range(0, len(events), chunk):
        part = events[start : start + chunk]
        lengths = np.array([len(e) for e in part])
        if lengths.sum() == 0:
            continue
        ev = np.concatenate(part)
        sample = np.repeat(np.arange(len(part)), lengths)
        b = ev["t"] // dt_us
        keep = (b >= 0) & (b < n_steps)
        idx = (
            sample[keep] * per
            + ((b[keep] * 2 + ev["p"][keep].astype(np.int64)) * h + ev["y"][keep]) * w
            + ev["x"][keep]
        )
        counts = np.bincount(idx, minlength=len(part) * per)
        out[start : start + len(part)] = np.minimum(counts, 255).reshape(
            len(part), n_steps, 2, h, w
        )
    return out

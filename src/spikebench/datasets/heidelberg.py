"""The Heidelberg spiking data sets (Cramer, Stradmann, Schemmel, Zenke, IEEE TNNLS 2020):
SHD (spoken digits, 20 classes) and SSC (speech commands, 35 classes), spikes of 700 input
channels (a cochlea model's fibres) in HDF5 files, read from the user's disk with h5py.

Layout, as distributed (after ``gunzip``): ``shd_train.h5``, ``shd_test.h5``; ``ssc_train.h5``,
``ssc_valid.h5``, ``ssc_test.h5``. Each holds ``spikes/times`` (one float array per sample,
seconds), ``spikes/units`` (one integer array per sample, channel 0-699) and ``labels``.

Binning as the field does it (Cramer et al.; Zenke's and the SHD papers' tutorials): from
t = 0, bins of ``dt_ms`` (10 ms) for ``n_steps`` bins (100: the first second; a spike at or
after the end is dropped), a frame [T, 700] holding 1 where a channel spiked in the bin
(``frames="counts"``: the number of spikes, saturating at 255).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from spikebench.datasets.base import CorruptDataError, DataNotFoundError, SampleData
from spikebench.errors import ConfigError
from spikebench.progress import progress_bar

CHANNELS = 700
CLASSES = {"shd": 20, "ssc": 35}
HOW_TO_OBTAIN = {
    name: f"download {name}_train.h5 and {name}_test.h5 (.gz or .zip) from "
          "https://zenkelab.org/datasets/ (see https://zenkelab.org/resources/spiking-"
          "heidelberg-datasets-shd/; CC BY 4.0), unpack them into one folder (tonic's "
          f"{name.upper()}/ folder works too) and pass it with --data-dir"
    for name in CLASSES
}


def heidelberg_file(root: Path, name: str, split: str) -> Path:
    """``root/{name}_{split}.h5``, or under tonic's ``root/{NAME}/``."""
    root = Path(root).expanduser()
    tried = [base / f"{name}_{split}.h5" for base in (root, root / name.upper())]
    for path in tried:
        if path.is_file():
            return path
    packed = [p.with_name(p.name + ext) for p in tried for ext in (".gz", ".zip")]
    hint = next((f" ({p} is there: unpack it)" for p in packed if p.is_file()), "")
    raise DataNotFoundError(f"{name.upper()} {split} split not found: {tried[0]}{hint}. "
                            f"{HOW_TO_OBTAIN[name]}")


def bin_spikes(times: np.ndarray, units: np.ndarray, steps: int, dt_ms: float,
               channels: int, counts: bool = False) -> np.ndarray:
    """One sample's spikes -> a frame [T, channels] (uint8): binary, or spike counts."""
    frame = np.zeros((steps, channels), dtype=np.uint8)
    k = np.floor(np.asarray(times, dtype=np.float64) * 1000.0 / dt_ms).astype(np.int64)
    keep = (k >= 0) & (k < steps)
    if counts:
        full = np.zeros(steps * channels, dtype=np.int64)
        np.add.at(full, k[keep] * channels + units[keep].astype(np.int64), 1)
        frame[:] = np.minimum(full, 255).reshape(steps, channels)
    else:
        frame[k[keep], units[keep]] = 1
    return frame


def load_heidelberg(root: Path | None, name: str, split: str, n_steps: int = 100,
                    dt_ms: float = 10.0, frames: str = "binary",
                    progress: bool = True) -> SampleData:
    """SHD or SSC ``split`` ('train', 'test'; SSC also 'valid') as binned spike frames."""
    import h5py

    if frames not in ("binary", "counts"):
        raise ConfigError(f"{name}: frames must be 'binary' or 'counts', got {frames!r}")
    if root is None:
        raise DataNotFoundError(f"{name.upper()}: no folder given. {HOW_TO_OBTAIN[name]}")
    path = heidelberg_file(root, name, split)
    try:
        with h5py.File(path, "r") as f:
            times, units = f["spikes"]["times"][:], f["spikes"]["units"][:]
            labels = f["labels"][:]
            if len(times) != len(labels) or len(units) != len(labels):
                raise CorruptDataError(f"{path}: {len(times)} spike trains, {len(units)} unit "
                                       f"lists and {len(labels)} labels; re-download it")
            x = np.zeros((len(labels), n_steps, CHANNELS), dtype=np.uint8)
            for i in progress_bar(range(len(labels)), f"{name.upper()} {split}", progress):
                t, u = np.asarray(times[i]), np.asarray(units[i])
                if len(t) != len(u):
                    raise CorruptDataError(f"{path}: sample {i} has {len(t)} spike times but "
                                           f"{len(u)} units; re-download it")
                if len(u) and (u.min() < 0 or u.max() >= CHANNELS):
                    raise CorruptDataError(f"{path}: sample {i} has a unit outside 0-"
                                           f"{CHANNELS - 1} ({u.min()}..{u.max()})")
                x[i] = bin_spikes(t, u, n_steps, dt_ms, CHANNELS, frames == "counts")
    except (OSError, KeyError) as err:
        raise CorruptDataError(f"{path}: not an {name.upper()} HDF5 file ({err}); expected "
                               "spikes/times, spikes/units and labels") from None
    y = torch.from_numpy(labels.astype(np.int64))
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= CLASSES[name]):
        raise CorruptDataError(f"{path}: labels {int(y.min())}..{int(y.max())} outside "
                               f"0-{CLASSES[name] - 1}")
    return SampleData(torch.from_numpy(x), y, classes=CLASSES[name], sparse=True)

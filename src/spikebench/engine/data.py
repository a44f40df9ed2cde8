"""The data a run trains and is tested on, loaded once per process.

Runs and analyses load their data by their spec, in whatever process they run (this one,
or a worker of the Ray executor), so that no data set travels between processes. The last
few loads are kept (``KEEP``): a suite's runs share one data set (the fidelity audit's four:
binary, count and normalised frames, and the real subset).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable

import torch

from spikebench.datasets import DATASETS, DataNotFoundError, SampleData
from spikebench.datasets.augment import augment
from spikebench.datasets.encoders import to_unit
from spikebench.datasets.poison import Backdoor, poison
from spikebench.errors import ConfigError

KEEP = 4  # data sets kept per process
_LOADED: OrderedDict[Hashable, object] = OrderedDict()


def once(key: Hashable, load: Callable[[], object]):
    """``load()``'s value, computed once per process for ``key`` (the ``KEEP`` latest)."""
    if key in _LOADED:
        _LOADED.move_to_end(key)
        return _LOADED[key]
    value = load()
    _LOADED[key] = value
    while len(_LOADED) > KEEP:
        _LOADED.popitem(last=False)
    return value


def _clean(spec, progress: bool) -> tuple[SampleData, SampleData]:
    """(train, test) of a spec's data set, folder, binning and subsets, unpoisoned."""
    key = ("snn", spec.dataset, spec.data_dir, spec.data_fingerprint, spec.n_steps,
           spec.dt_ms, spec.encoder, spec.frames, spec.n_train, spec.n_test)

    def load():
        info = DATASETS.get(spec.dataset)
        opts = {"n_steps": spec.n_steps, "dt_ms": spec.dt_ms, "encoder": spec.encoder,
                "frames": spec.frames, "progress": progress}
        train = info.load("train", spec.data_dir, **opts).subset(spec.n_train)
        test = info.load("test", spec.data_dir, **opts).subset(spec.n_test)
        return train, test

    return once(key, load)


def spec_data(spec, progress: bool = False) -> tuple[SampleData, SampleData]:
    """(train, test) of an experiment spec: its data set, folder, binning and subsets; a
    poisoned spec's training set carries its backdoor (the test set stays clean)."""
    train, test = _clean(spec, progress)
    if spec.backdoor:
        train, _ = poison(train, Backdoor(**{"seed": spec.seed, **spec.backdoor}))
    return train, test


def spec_test_set(spec) -> SampleData:
    """The test set of a spec (``spec_data``'s second half, without poisoning a copy of
    the training set for nothing)."""
    return _clean(spec, False)[1]


def image_split(spec, split: str, progress: bool):
    """Images [N, C, H, W] float in [0, 1], labels and the class count of a spec with
    ``dataset``, ``data_dir``, ``n_train`` and ``n_test`` (the hybrid and robust suites)."""
    info = DATASETS.get(spec.dataset)
    data = info.load(split, spec.data_dir, progress=progress)
    if data.encode is None or data.x.dim() != 4:
        from spikebench.datasets import IMAGE_SOURCES

        images = [*IMAGE_SOURCES, "mnist5k"]
        raise ConfigError(f"this suite needs an image data set; {spec.dataset!r} is not one "
                          f"(choose one with --dataset: {', '.join(sorted(images))})")
    data = data.subset(spec.n_train if split == "train" else spec.n_test)
    return to_unit(data.x).float(), data.y, data.classes


def image_shape(train) -> tuple[int, int]:
    """(channels, size) of an image split from ``image_split``; the conv nets take square
    images only (anything else is a ``ConfigError``)."""
    x = train[0]
    if x.shape[-1] != x.shape[-2]:
        raise ConfigError(f"the conv nets take square images, got {tuple(x.shape[-2:])}")
    return x.shape[1], x.shape[-1]


def image_data(spec, progress: bool = False):
    """(train, test) images of an image suite's spec (``image_split``), loaded once per
    process and data set."""
    key = ("images", spec.dataset, spec.data_dir, spec.data_fingerprint, spec.n_train,
           spec.n_test)
    return once(key, lambda: (image_split(spec, "train", progress),
                              image_split(spec, "test", progress)))


def image_run(spec, runs_dir, progress: bool):
    """What an image suite's run starts from, in whatever process runs it: its (train,
    test) images (``image_split``, loaded once per process and data set) and its folder
    ``runs_dir / spec.run_id``, made, with ``spec.json`` written."""
    from dataclasses import asdict

    from spikebench.io import write_json

    train, test = image_data(spec, progress)
    run_dir = runs_dir / spec.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "spec.json", asdict(spec))
    return train, test, run_dir


def epoch_batches(spec, x, y):
    """Batches of ``spec.batch_size``, shuffled per ``spec.seed`` and epoch, so that a
    resumed run sees the same order: epoch -> iterator of (x, y), on ``spec.device``;
    with ``spec.augment`` each batch is cropped and flipped, with ``spec.cutout`` > 0 cut
    out (``datasets.augment``), from a generator of its own per seed and epoch, so the
    order is the same as without."""
    device = torch.device(getattr(spec, "device", "cpu"))
    flip, cut = getattr(spec, "augment", False), getattr(spec, "cutout", 0)

    def batches(epoch: int):
        g = torch.Generator().manual_seed(spec.seed * 1000 + epoch)
        order = torch.randperm(len(x), generator=g).split(spec.batch_size)
        if not (flip or cut):
            return ((x[idx].to(device), y[idx].to(device)) for idx in order)
        a = torch.Generator().manual_seed(spec.seed * 1000 + epoch + 7_919)
        return ((augment(x[idx], a, flip, cut).to(device), y[idx].to(device))
                for idx in order)

    return batches


def default_image_dataset(opts, default: str = "fashion-mnist") -> tuple[str, list[str]]:
    """The image suites' data set from the options: ``--dataset``, else ``default``
    (Fashion-MNIST, Debian's package), falling back to the embedded MNIST-5k digits (with
    a note saying so) when it is not installed and no folder is given."""
    if opts.dataset is not None:
        return opts.dataset, []
    if opts.data_dir is None and default == "fashion-mnist":
        try:
            DATASETS.get("fashion-mnist").load("test", None, progress=False)
        except DataNotFoundError:
            return "mnist5k", ["Fashion-MNIST is not installed (Debian package "
                               "dataset-fashion-mnist); the embedded MNIST-5k digits are used "
                               "instead"]
    return default, []


def conv_arch(opts, suite: str) -> dict:
    """The conv suites' ``--archs``: {} (the suite's default) or {"arch": name} for one
    registered conv net; several are a ``ConfigError`` (the suites' tables and findings
    compare methods on one network)."""
    from spikebench.models import CONV_ARCHS

    if not opts.archs:
        return {}
    if len(opts.archs) > 1:
        raise ConfigError(f"suite {suite!r} trains one conv net per invocation, got --archs "
                          f"{','.join(opts.archs)}; run it once per arch (with its own --out)")
    arch = opts.archs[0]
    if arch not in CONV_ARCHS:
        raise ConfigError(f"suite {suite!r} trains conv nets; --archs {arch} is not one "
                          f"(choose one of {', '.join(CONV_ARCHS)})")
    return {"arch": arch}

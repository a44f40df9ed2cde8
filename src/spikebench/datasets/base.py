"""Shared pieces of the data path: errors, the cache folder, tensors in memory and
time-major batching."""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from spikebench.errors import ConfigError, SpikebenchError
from spikebench.io import atomic_write, cache_dir, fingerprint_files, is_own_output  # noqa: F401 (re-exported)
from spikebench.sparse import SampleEvents

log = logging.getLogger(__name__)


class DataNotFoundError(SpikebenchError, FileNotFoundError):
    """A data set is not where we looked; the message says where and how to obtain it."""


class CorruptDataError(SpikebenchError, ValueError):
    """A data file exists but cannot be parsed; the message names the file and the defect."""


def fingerprint_tree(root: str | Path) -> str:
    """``fingerprint_files`` of every file under ``root`` (a folder, or one file). Folders
    spikebench wrote (``io.OUTPUT_MARKER``) are left out; each real folder is visited once
    (a symlink loop ends); a folder that cannot be read is a ``CorruptDataError``."""
    root = Path(root)
    if root.is_file():
        return fingerprint_files([root], root.parent)
    files, seen = [], set()
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        real = os.path.realpath(folder)
        if real in seen or (folder != str(root) and is_own_output(folder)):
            continue
        seen.add(real)
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError as err:
            raise CorruptDataError(f"{folder}: cannot read this folder of the data set "
                                   f"({err.strerror or err}); fix its permissions or point "
                                   "--data-dir elsewhere") from None
        for entry in entries:
            if entry.is_dir(follow_symlinks=True):
                stack.append(entry.path)
            elif entry.is_file(follow_symlinks=True):
                files.append(entry.path)
    return fingerprint_files(files, root)


def available_memory() -> int | None:
    """Bytes of memory this machine can still give (``MemAvailable``), None if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def check_fits(nbytes: float, what: str, fix: str) -> None:
    """Refuse, before allocating, an array of ``nbytes`` that this machine's free memory
    cannot hold: a ``ConfigError`` with both sizes, instead of a MemoryError later."""
    free = available_memory()
    if free is not None and nbytes > free:
        raise ConfigError(f"{what} needs {_size(nbytes)}, more than the {_size(free)} of "
                          f"memory free; {fix}")


def read_text_lines(path: Path) -> list[str]:
    """The lines of a data set's text file (a table, an alignment); bytes that are not
    UTF-8 are a ``CorruptDataError`` naming the file and line."""
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8").splitlines()
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise CorruptDataError(f"{path}:{line}: not UTF-8 text (byte {raw[err.start]:#04x}); "
                               "save the file as UTF-8 or plain ASCII") from None


def read_cached_npz(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of a cache file, or None if there is none; an unreadable (truncated,
    foreign) cache file is deleted with a warning, so that the caller rebuilds it; a folder
    in its place is a ``ConfigError`` (before anything is computed)."""
    if path.exists() and not path.is_file():
        raise ConfigError(f"cache entry {path} is a folder, not a cache file; remove it (or "
                          "set SPIKEBENCH_CACHE to another folder), then rerun")
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        log.warning("cache file %s is unreadable (%s: %s); deleted, building it again",
                    path, type(err).__name__, err)
        path.unlink(missing_ok=True)
        return None


def atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write an .npz so that a reader never sees a half-written file. The cache only saves
    time: a write that fails (a full disk, a read-only cache) is a warning, and the caller
    goes on with the arrays it computed."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    try:
        atomic_write(path, write)
    except OSError as err:
        log.warning("could not write the cache file %s (%s); going on without it: the next "
                    "run computes it again", path, err.strerror or err)


TASKS = ("sample", "frames", "sequence")
IGNORE = -1  # label of padded (or unlabelled) frames


@dataclass
class SampleData:
    """Samples of one split held in memory.

    ``x`` is sample-major: [N, T, ...] sequences (event frames as uint8, features as float32),
    or static samples [N, C, H, W] that ``encode`` turns into [T, B, ...] per batch.
    ``task`` says what ``y`` is:

    - ``sample``: [N], one label per sample, decided from the time-averaged readout;
    - ``frames``: [N, T], a label per frame (``IGNORE`` on padding), frame-wise accuracy;
    - ``sequence``: [N, T], the sample's label on each of its frames (``IGNORE`` on
      padding); accuracy per sample, from the readout averaged over its labelled frames.

    ``fold`` optionally maps classes to coarser ones for an extra accuracy (TIMIT 61 -> 39).
    ``sparse`` marks event frames (mostly zeros): training and evaluation batches of them are
    ``EventBatch``es built from ``events()``, the samples' nonzero entries (spikebench.sparse).
    """

    x: torch.Tensor
    y: torch.Tensor
    classes: int
    task: str = "sample"
    fold: torch.Tensor | None = None
    encode: Callable[[torch.Tensor], torch.Tensor] | None = None
    sparse: bool = False
    _events: SampleEvents | None = field(default=None, init=False, repr=False, compare=False)

    def events(self) -> SampleEvents:
        """The samples' nonzero entries, indexed once and kept with the data (``x`` is not
        modified in place after loading: poisoning and subsets make new SampleData)."""
        if self._events is None:
            self._events = SampleEvents.from_frames(self.x)
        return self._events

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"{len(self.x)} samples but {len(self.y)} labels")
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; known: {', '.join(TASKS)}")
        if (self.y.dim() == 1) != (self.task == "sample"):
            raise ValueError(f"task {self.task!r} does not fit labels of shape {self.y.shape}")

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, n: int | None, seed: int = 0) -> SampleData:
        """The first ``n`` samples of a seeded, class-balanced-in-expectation shuffle."""
        if n is None or n >= len(self):
            return self
        if n < 1:
            raise ValueError(f"subset size must be >= 1, got {n}")
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(self), generator=g)[:n].sort().values
        return replace(self, x=self.x[idx], y=self.y[idx])


def time_major_collate(batch, encode=None):
    """Stack samples into a time-major batch: x [T, B, ...] float32, y [B] or [T, B].
    Frame-labelled batches are cut after their last labelled frame (padding only)."""
    xs, ys = zip(*batch, strict=True)
    x = torch.stack(xs).float()
    y = torch.stack(ys)
    if encode is not None:
        return encode(x).contiguous(), y
    x = x.transpose(0, 1)
    if y.dim() == 2:
        y = y.transpose(0, 1)  # frame labels [T, B]
        labelled = (y != IGNORE).any(1).nonzero()
        end = int(labelled.max()) + 1 if len(labelled) else 1
        x, y = x[:end], y[:end]
    return x.contiguous(), y.contiguous()


def _event_collate(batch, events: SampleEvents):
    index, ys = zip(*batch, strict=True)
    return events.batch(torch.stack(index)), torch.stack(ys)


def time_major_loader(
    data: SampleData, batch_size: int, shuffle: bool = False, seed: int = 0,
    sparse: bool = False,
) -> DataLoader:
    """A DataLoader of time-major batches (x [T, B, ...] float32, y [B] or [T, B]); with
    ``sparse`` and event frames (``data.sparse``), x is an ``EventBatch`` [T, B, n] in the
    same sample order (the shuffle depends on the seed and the length only)."""
    g = torch.Generator().manual_seed(seed)
    if sparse and data.sparse and data.encode is None and data.task == "sample":
        return DataLoader(TensorDataset(torch.arange(len(data)), data.y),
                          batch_size=batch_size, shuffle=shuffle, generator=g,
                          collate_fn=partial(_event_collate, events=data.events()))
    return DataLoader(
        TensorDataset(data.x, data.y),
        batch_size=batch_size,
        shuffle=shuffle,
        generator=g,
        collate_fn=partial(time_major_collate, encode=data.encode),
    )

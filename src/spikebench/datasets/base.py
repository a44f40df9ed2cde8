"""Shared pieces of the data path: errors, the cache folder, tensors in memory and
time-major batching."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from spikebench.io import atomic_write


class DataNotFoundError(FileNotFoundError):
    """A data set is not where we looked; the message says where and how to obtain it."""


class CorruptDataError(ValueError):
    """A data file exists but cannot be parsed; the message names the file and the defect."""


def cache_dir() -> Path:
    """Where generated data (the embedded default) is cached: ``$SPIKEBENCH_CACHE`` or
    ``~/.cache/spikebench``."""
    root = os.environ.get("SPIKEBENCH_CACHE") or Path.home() / ".cache" / "spikebench"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write an .npz so that a reader never sees a half-written file."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    atomic_write(path, write)


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
    """

    x: torch.Tensor
    y: torch.Tensor
    classes: int
    task: str = "sample"
    fold: torch.Tensor | None = None
    encode: Callable[[torch.Tensor], torch.Tensor] | None = None

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


def time_major_loader(
    data: SampleData, batch_size: int, shuffle: bool = False, seed: int = 0
) -> DataLoader:
    """A DataLoader of time-major batches (x [T, B, ...] float32, y [B] or [T, B])."""
    g = torch.Generator().manual_seed(seed)
    return DataLoader(
        TensorDataset(data.x, data.y),
        batch_size=batch_size,
        shuffle=shuffle,
        generator=g,
        collate_fn=partial(time_major_collate, encode=data.encode),
    )

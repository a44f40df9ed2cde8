"""Shared pieces of the data path: errors, the cache folder, tensors in memory and
time-major batching."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset


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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    os.close(fd)
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@dataclass
class SampleData:
    """Samples of one split held in memory.

    ``x`` is sample-major [N, T, ...] (frames: uint8 event counts; features: float32);
    ``y`` is [N] class labels (or [N, T] frame labels). Batches are made time-major.
    """

    x: torch.Tensor
    y: torch.Tensor
    classes: int

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"{len(self.x)} samples but {len(self.y)} labels")

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
        return SampleData(self.x[idx], self.y[idx], self.classes)


def time_major_collate(batch):
    xs, ys = zip(*batch, strict=True)
    x = torch.stack(xs).transpose(0, 1).float()  # [T, B, ...]
    y = torch.stack(ys)
    if y.dim() == 2:
        y = y.transpose(0, 1)  # frame labels [T, B]
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
        collate_fn=time_major_collate,
    )

"""Real N-MNIST (Orchard et al. 2015) from the user's disk; nothing is downloaded.

Two layouts are recognised under ``root``:

- the full data set as distributed: ``Train/<digit>/<id>.bin`` and ``Test/<digit>/<id>.bin``
  (60000 / 10000 samples; folder names in any case);
- the subset layout of ``../shared/data/nmnist-small``: ``train1K.txt`` / ``test100.txt``
  (``#sample  #class``, tab separated, one header line) next to ``<sample>.bs2`` files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from spikebench.datasets.base import (
    CorruptDataError,
    DataNotFoundError,
    SampleData,
    read_text_lines,
)
from spikebench.datasets.events import frames_from_events, read_nmnist_bin
from spikebench.errors import ConfigError
from spikebench.progress import progress_bar

HOW_TO_OBTAIN = (
    "Obtain N-MNIST from https://www.garrickorchard.com/datasets/n-mnist (Train.zip, Test.zip; "
    "CC BY-SA 4.0), unzip both into one folder and pass it with --data-dir"
)
SUBSET_TABLES = {"train": "train1K.txt", "test": "test100.txt"}


def _child(root: Path, name: str) -> Path | None:
    for p in root.iterdir() if root.is_dir() else ():
        if p.is_dir() and p.name.lower() == name.lower():
            return p
    return None


def _read_table(path: Path, root: Path) -> list[tuple[Path, int]]:
    rows = []
    lines = read_text_lines(path)
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise CorruptDataError(f"{path}:{lineno}: expected '#sample #class', got {line!r}")
        try:
            sample, label = int(parts[0]), int(parts[1])
        except ValueError:
            raise CorruptDataError(f"{path}:{lineno}: expected two whole numbers '#sample "
                                   f"#class', got {line!r}") from None
        if sample < 0:
            raise CorruptDataError(f"{path}:{lineno}: sample id {sample} is negative")
        if not 0 <= label <= 9:
            raise CorruptDataError(f"{path}:{lineno}: class {label} is not a digit 0-9")
        rows.append((root / f"{sample}.bs2", label))
    if not rows:
        raise CorruptDataError(f"{path}: no samples (a header and no '#sample #class' rows); "
                               "restore the table from the subset's archive")
    return rows


def list_nmnist(root: str | Path, split: str) -> list[tuple[Path, int]]:
    """The (file, label) pairs of ``split`` ('train' or 'test') under ``root``."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataNotFoundError(f"N-MNIST folder not found: {root}. {HOW_TO_OBTAIN}")
    table = root / SUBSET_TABLES[split]
    if table.is_file():
        return _read_table(table, root)
    folder = _child(root, split)
    if folder is not None:
        rows = []
        for digit in range(10):
            d = _child(folder, str(digit))
            if d is None:
                raise DataNotFoundError(f"N-MNIST: missing class folder {folder}/{digit}")
            rows += [(f, digit) for f in sorted(d.glob("*.bin"))]
        if rows:
            return rows
    raise DataNotFoundError(
        f"no N-MNIST {split} split under {root}: expected {split.capitalize()}/<digit>/*.bin "
        f"(full data set) or {SUBSET_TABLES[split]} with <n>.bs2 files (subset). {HOW_TO_OBTAIN}"
    )


def load_nmnist_events(
    root: str | Path, split: str, limit: int | None = None, progress: bool = True
) -> tuple[list[np.ndarray], np.ndarray]:
    """Event streams and labels of a split (the first ``limit`` files if given)."""
    rows = list_nmnist(root, split)
    if limit is not None:
        rows = rows[:limit]
    events = [
        read_nmnist_bin(p)
        for p, _ in progress_bar(rows, f"N-MNIST {split}", progress)
    ]
    return events, np.array([lab for _, lab in rows], dtype=np.int64)


# what a frame holds per pixel, polarity and bin
FRAMES = {
    "binary": "1 where the pixel had >= 1 event of that polarity in the bin (the default)",
    "counts": "the number of events (uint8, saturating at 255)",
    "normalised": "the counts divided by the sample's largest count, in [0, 1] (float32)",
}


def frames_data(
    events: list[np.ndarray], labels: np.ndarray, n_steps: int, dt_ms: float,
    frames: str = "binary",
) -> SampleData:
    """Events -> spike frames [N, T, 2, 34, 34] as ``FRAMES[frames]`` says, bins of ``dt_ms``
    from t = 0."""
    if frames not in FRAMES:
        raise ConfigError(f"unknown frames {frames!r}; known: {', '.join(FRAMES)}")
    dt_us = int(round(dt_ms * 1000))
    x = frames_from_events(events, n_steps, dt_us)
    if frames == "binary":
        np.minimum(x, 1, out=x)
        out = torch.from_numpy(x)
    elif frames == "counts":
        out = torch.from_numpy(x)
    else:
        peak = x.reshape(len(x), -1).max(1).astype(np.float32) if len(x) else np.ones(0)
        out = torch.from_numpy(x.astype(np.float32) / np.maximum(peak, 1)[:, None, None, None,
                                                                            None])
    return SampleData(out, torch.from_numpy(labels), classes=10, sparse=True)

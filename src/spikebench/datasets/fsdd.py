"""Free Spoken Digit Dataset (Jackson et al.; CC BY-SA 4.0): the offline speech task.

``<root>/recordings/{digit}_{speaker}_{index}.wav`` (or the wav files directly in
``root``), 8 kHz mono (a recording at a higher rate is resampled to 8 kHz with scipy's
polyphase filter, so that the 40 mel bands span 0-4 kHz for every file; a lower rate is
refused). Split by convention: index 0-4 test (300), 5-49 train (2700).
Features: the same 39 MFCC per 10 ms frame as TIMIT, normalised with training statistics.
Task ``sequence``: one digit per recording, decided from the readout averaged over the
recording's frames (padding excluded).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from spikebench.datasets.audio import (
    cached_sequences,
    feature_stats,
    normalise,
    pad_sequences,
    read_features,
)
from spikebench.datasets.base import DataNotFoundError, SampleData

HOW_TO_OBTAIN = (
    "clone https://github.com/Jakobovski/free-spoken-digit-dataset (CC BY-SA 4.0) and pass "
    "the folder holding recordings/ with --data-dir"
)
RATE = 8000  # Hz, the corpus's sample rate
NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")


def list_recordings(root: str | Path, split: str) -> list[tuple[Path, int]]:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root).expanduser()
    folder = root / "recordings" if (root / "recordings").is_dir() else root
    if not folder.is_dir():
        raise DataNotFoundError(f"FSDD folder not found: {root}. {HOW_TO_OBTAIN}")
    rows = []
    for path in sorted(folder.iterdir()):
        m = NAME.match(path.name)
        if m and (int(m.group(3)) < 5) == (split == "test"):
            rows.append((path, int(m.group(1))))
    if not rows:
        raise DataNotFoundError(
            f"no FSDD {split} recordings ({{digit}}_{{speaker}}_{{index}}.wav) in {folder}. "
            f"{HOW_TO_OBTAIN}"
        )
    return rows


def recording(item: tuple[Path, int]) -> tuple[np.ndarray, np.ndarray]:
    _, _, feats = read_features(item[0], RATE, resample_higher=True)
    return feats, np.full(len(feats), item[1], dtype=np.int64)


def load_fsdd(root: str | Path, split: str, progress: bool = True) -> SampleData:
    root = Path(root).expanduser()

    def split_data(name: str):
        return cached_sequences("fsdd", root, name, lambda: list_recordings(root, name),
                                recording, progress)

    train = split_data("train")  # its statistics normalise every split
    mean, std = feature_stats(train[0])
    feats, labels = train if split == "train" else split_data(split)
    x, y = pad_sequences(normalise(feats, mean, std), labels)
    return SampleData(x, y, classes=10, task="sequence")

"""IBM DVS Gesture (Amir et al., CVPR 2017): 11 hand and arm gestures of 29 people under 5
lighting conditions, events of a 128 x 128 DVS, read from the user's disk.

Layout: tonic's preprocessed release (``tonic.datasets.DVSGesture``, whose recordings are
already cut into one file per gesture): ``ibmGestureTrain/`` and ``ibmGestureTest/`` (also
under a ``DVSGesture/`` folder), one folder per recording ``user<NN>_<lighting>``, in it
``<class>.npy``: an integer array [N, 4] of events (x, y, polarity, t in ms).

Binning as the field does it for MLP and recurrent SNNs: 4 x 4 spatial pooling to 32 x 32
(DECOLLE, SLAYER's and many since), 2 polarities, bins of ``dt_ms`` (25 ms) for ``n_steps``
bins (60: the first 1.5 s of the gesture, from its first event), frames [T, 2, 32, 32] of 1
where a pooled pixel had an event (``frames="counts"``: the count, saturating at 255).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from spikebench.datasets.base import CorruptDataError, DataNotFoundError, SampleData
from spikebench.errors import ConfigError
from spikebench.progress import progress_bar

SENSOR, POOL, CLASSES = 128, 4, 11
FOLDERS = {"train": "ibmGestureTrain", "test": "ibmGestureTest"}
HOW_TO_OBTAIN = (
    "download ibmGestureTrain.tar.gz and ibmGestureTest.tar.gz (tonic's preprocessed DVS "
    "Gesture: https://figshare.com/ndownloader/files/38022171 and .../38020584; the "
    "original at https://research.ibm.com/interactive/dvsgesture/), unpack both into one "
    "folder and pass it with --data-dir"
)


def list_dvsgesture(root: Path, split: str) -> list[tuple[Path, int]]:
    root = Path(root).expanduser()
    for base in (root, root / "DVSGesture"):
        folder = base / FOLDERS[split]
        if folder.is_dir():
            break
    else:
        raise DataNotFoundError(f"DVS Gesture {split} split not found: no {FOLDERS[split]}/ "
                                f"under {root}. {HOW_TO_OBTAIN}")
    rows = []
    for rec in sorted(p for p in folder.iterdir() if p.is_dir()):
        for f in sorted(rec.glob("*.npy"), key=lambda p: p.name):
            try:
                label = int(f.stem)
            except ValueError:
                raise CorruptDataError(f"{f}: expected <class>.npy with class 0-10") from None
            if not 0 <= label < CLASSES:
                raise CorruptDataError(f"{f}: class {label} outside 0-{CLASSES - 1}")
            rows.append((f, label))
    if not rows:
        raise DataNotFoundError(f"DVS Gesture: no <class>.npy files under {folder}. "
                                f"{HOW_TO_OBTAIN}")
    return rows


def bin_gesture(events: np.ndarray, steps: int, dt_ms: float, counts: bool = False
                ) -> np.ndarray:
    """Events [N, 4] (x, y, p, t ms) -> frames [T, 2, 32, 32] (uint8)."""
    side = SENSOR // POOL
    frame = np.zeros((steps, 2, side, side), dtype=np.uint8)
    if len(events) == 0:
        return frame
    x, y, p, t = (events[:, k] for k in range(4))
    k = np.floor((t - t.min()) / dt_ms).astype(np.int64)
    keep = k < steps
    idx = (k[keep], (p[keep] > 0).astype(np.int64), y[keep].astype(np.int64) // POOL,
           x[keep].astype(np.int64) // POOL)
    if counts:
        full = np.zeros(frame.shape, dtype=np.int64)
        np.add.at(full, idx, 1)
        frame[:] = np.minimum(full, 255)
    else:
        frame[idx] = 1
    return frame


def load_dvsgesture(root: Path | None, split: str, n_steps: int = 60, dt_ms: float = 25.0,
                    frames: str = "binary", progress: bool = True) -> SampleData:
    if frames not in ("binary", "counts"):
        raise ConfigError(f"dvsgesture: frames must be 'binary' or 'counts', got {frames!r}")
    if root is None:
        raise DataNotFoundError(f"DVS Gesture: no folder given. {HOW_TO_OBTAIN}")
    rows = list_dvsgesture(root, split)
    side = SENSOR // POOL
    x = np.zeros((len(rows), n_steps, 2, side, side), dtype=np.uint8)
    for i, (f, _) in enumerate(progress_bar(rows, f"DVS Gesture {split}", progress)):
        try:
            ev = np.load(f)
        except (OSError, ValueError) as err:
            raise CorruptDataError(f"{f}: not a .npy array ({err})") from None
        if ev.ndim != 2 or ev.shape[1] != 4:
            raise CorruptDataError(f"{f}: expected events [N, 4] (x, y, p, t), got shape "
                                   f"{ev.shape}")
        if len(ev) and (ev[:, :2].min() < 0 or ev[:, :2].max() >= SENSOR):
            raise CorruptDataError(f"{f}: an event lies outside the {SENSOR} x {SENSOR} sensor")
        x[i] = bin_gesture(ev, n_steps, dt_ms, frames == "counts")
    y = torch.tensor([label for _, label in rows], dtype=torch.int64)
    return SampleData(torch.from_numpy(x), y, classes=CLASSES, sparse=True)

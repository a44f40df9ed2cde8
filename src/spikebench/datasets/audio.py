"""Speech features shared by TIMIT and FSDD: 13 MFCC + delta + delta-delta = 39 per frame.

As in e-prop's TIMIT setup: 25 ms Hamming windows every 10 ms (no centring, so frame k
covers samples [k hop, k hop + win)), 40 mel bands, 13 cepstral coefficients (c0 included),
first and second differences over +-4 frames. Normalisation (per feature, with training
set statistics) is done by the data set that owns the split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from spikebench.datasets.base import (
    IGNORE,
    CorruptDataError,
    DataNotFoundError,
    atomic_save_npz,
    cache_dir,
    fingerprint_files,
    read_cached_npz,
)
from spikebench.io import digest
from spikebench.progress import progress_bar

N_FEATURES = 39


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples in [-1, 1] and the sample rate, from RIFF WAV or NIST SPHERE."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"audio file not found: {path}")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # libsndfile's own error types vary by version
        head = path.read_bytes()[:8]
        raise CorruptDataError(
            f"{path}: cannot read audio ({err}); expected a RIFF WAV or NIST SPHERE file, "
            f"the file starts with {head!r}"
        ) from None
    if data.shape[0] == 0:
        raise CorruptDataError(f"{path}: no audio samples")
    return data.mean(axis=1), int(sr)


def frame_geometry(sr: int, win_ms: float = 25.0, hop_ms: float = 10.0) -> tuple[int, int]:
    return int(round(sr * win_ms / 1000)), int(round(sr * hop_ms / 1000))


def n_frames(n_samples: int, sr: int) -> int:
    win, hop = frame_geometry(sr)
    return 0 if n_samples < win else 1 + (n_samples - win) // hop


def mfcc39(signal: np.ndarray, sr: int) -> np.ndarray:
    """[frames, 39] float32 features of a mono signal."""
    import librosa

    win, hop = frame_geometry(sr)
    frames = n_frames(len(signal), sr)
    if frames < 3:
        raise ValueError(f"signal of {len(signal)} samples is too short for 3 frames at {sr} Hz")
    m = librosa.feature.mfcc(
        y=signal.astype(np.float32), sr=sr, n_mfcc=13, n_fft=win, hop_length=hop,
        win_length=win, window="hamming", center=False, n_mels=40, fmax=sr / 2,
    )[:, :frames]
    width = min(9, frames if frames % 2 else frames - 1)
    d1 = librosa.feature.delta(m, width=width, order=1, mode="nearest")
    d2 = librosa.feature.delta(m, width=width, order=2, mode="nearest")
    return np.concatenate([m, d1, d2]).T.astype(np.float32)


def resample(signal: np.ndarray, sr: int, rate: int) -> np.ndarray:
    """``signal`` at ``rate`` Hz: polyphase resampling with scipy's anti-aliasing
    (Kaiser-windowed) low-pass filter (``scipy.signal.resample_poly``)."""
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(int(sr), int(rate))
    return resample_poly(signal, rate // g, sr // g).astype(np.float32)


def read_features(path: str | Path, rate: int | None = None, resample_higher: bool = False
                  ) -> tuple[np.ndarray, int, np.ndarray]:
    """(signal, sample rate, [frames, 39] features) of one audio file; a recording too
    short for features is an error that names the file. ``rate``: the data set's sample
    rate; a recording at another rate is refused, or, with ``resample_higher``, one at a
    higher rate is resampled to ``rate`` first (``resample``). A lower rate is always
    refused: its mel bands up to rate / 2 would hold nothing."""
    signal, sr = read_audio(path)
    if rate is not None and sr != rate:
        if not (resample_higher and sr > rate):
            fix = (f"resample it to {rate} Hz (e.g. sox IN -r {rate} OUT) or remove it"
                   if sr < rate or resample_higher else
                   f"this corpus's alignments count samples at {rate} Hz; use the original "
                   "recordings")
            raise CorruptDataError(f"{path}: recorded at {sr} Hz, not the data set's {rate} "
                                   f"Hz; {fix}")
        signal, sr = resample(signal, sr, rate), rate
    if n_frames(len(signal), sr) < 3:
        raise CorruptDataError(
            f"{path}: {len(signal)} samples ({len(signal) / sr * 1000:.0f} ms at {sr} Hz) is "
            "too short for 3 frames of 25 ms every 10 ms; remove or replace the file"
        )
    return signal, sr, mfcc39(signal, sr)


def normalise(features: list[np.ndarray], mean: np.ndarray, std: np.ndarray) -> list[np.ndarray]:
    return [((f - mean) / std).astype(np.float32) for f in features]


def feature_stats(features: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    allf = np.concatenate(features)
    return allf.mean(0), np.maximum(allf.std(0), 1e-6)


Sequence_ = tuple[np.ndarray, np.ndarray]  # features [frames, 39], labels [frames]


# bump when the features change: old caches are not reused (2: recordings at another sample
# rate are resampled or refused, no longer featurised at their own rate)
FEATURES_VERSION = 2


def cached_sequences(tag: str, root: Path, split: str, items: Callable[[], Sequence],
                     featurize: Callable[[object], Sequence_], progress: bool = True):
    """Features and labels of every item of a split, computed once and cached under a key
    that covers what defines them: the corpus folder, the split, the feature version and a
    fingerprint (names, sizes, modification times) of the split's files, so that a file
    added, removed or replaced is seen (``<cache>/<tag>-<key>-<split>.npz``). An unreadable
    cache file is rebuilt."""
    listed = list(items())
    files = [p for item in listed for p in _paths(item)]
    key = digest({"root": str(Path(root).resolve()), "split": split,
                  "version": FEATURES_VERSION, "files": fingerprint_files(files, root)})
    path = cache_dir() / f"{tag}-{key}-{split}.npz"
    z = read_cached_npz(path)
    if z is not None and {"x", "y", "offsets"} <= set(z) and len(z["offsets"]) == len(listed) + 1:
        x, y, off = z["x"], z["y"], z["offsets"]
        bounds = list(zip(off[:-1], off[1:], strict=True))
        return [x[a:b] for a, b in bounds], [y[a:b] for a, b in bounds]
    feats, labels = [], []
    for item in progress_bar(listed, f"{tag} {split} features", progress):
        f, lab = featurize(item)
        feats.append(f)
        labels.append(lab)
    offsets = np.cumsum([0] + [len(f) for f in feats])
    atomic_save_npz(path, x=np.concatenate(feats), y=np.concatenate(labels), offsets=offsets)
    return feats, labels


def _paths(item) -> list[Path]:
    """The files behind one item of a listing: a path, or a tuple holding paths."""
    if isinstance(item, str | Path):
        return [Path(item)]
    return [Path(p) for p in item if isinstance(p, str | Path)]


def pad_sequences(feats: list[np.ndarray], labels: list[np.ndarray]):
    """[N, Tmax, F] float32 (zeros) and [N, Tmax] labels (IGNORE) from ragged lists."""
    t_max = max(len(f) for f in feats)
    x = np.zeros((len(feats), t_max, feats[0].shape[1]), dtype=np.float32)
    y = np.full((len(feats), t_max), IGNORE, dtype=np.int64)
    for k, (f, lab) in enumerate(zip(feats, labels, strict=True)):
        x[k, : len(f)] = f
        y[k, : len(lab)] = lab
    return torch.from_numpy(x), torch.from_numpy(y)

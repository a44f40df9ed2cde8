"""TIMIT (Garofolo et al. 1993) from the user's licensed copy; nothing is downloaded.

Layout: ``TRAIN|TEST/DR<n>/<SPEAKER>/<SENTENCE>.WAV`` with ``.PHN`` beside it (any case;
``root`` may be the corpus folder or a folder holding it). WAV files are NIST SPHERE (or
RIFF), read with soundfile. ``.PHN``: ``start_sample end_sample phone`` lines.

Splits (stated here and in the README):
- ``train``: every TRAIN utterance except the dialect sentences SA1/SA2 (3696 utterances);
- ``test``: the 24-speaker core test set (192 utterances), SA excluded;
- ``valid``: 50 speakers drawn with a fixed seed from the other TEST speakers (the
  literature's 50-speaker development list is not reproduced), SA excluded.

Features: 39 MFCC per 10 ms frame (``audio.mfcc39``), normalised with the training set's
mean and std. Targets: the phone (of 61) covering each frame's centre sample; padding frames
are ``IGNORE``. Evaluation also reports accuracy after the standard 61 -> 39 folding
(Lee & Hon 1989); frames of the glottal stop ``q`` are left out of the folded score.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from spikebench.datasets.audio import (
    cached_sequences,
    feature_stats,
    frame_geometry,
    n_frames,
    normalise,
    pad_sequences,
    read_features,
)
from spikebench.datasets.base import (
    IGNORE,
    CorruptDataError,
    DataNotFoundError,
    SampleData,
    read_text_lines,
)

RATE = 16000  # Hz: TIMIT's recordings and its alignments' sample counts
HOW_TO_OBTAIN = (
    "TIMIT is licensed by the LDC (catalog LDC93S1, https://catalog.ldc.upenn.edu/LDC93S1); "
    "pass the folder holding TRAIN/ and TEST/ with --data-dir"
)

PHONES61 = (
    "aa ae ah ao aw ax ax-h axr ay b bcl ch d dcl dh dx eh el em en eng epi er ey f g gcl h# "
    "hh hv ih ix iy jh k kcl l m n ng nx ow oy p pau pcl q r s sh t tcl th uh uw ux v w y z zh"
).split()
FOLD = {  # Lee & Hon (1989): 61 -> 39; q is removed
    "ao": "aa", "ax": "ah", "ax-h": "ah", "axr": "er", "hv": "hh", "ix": "ih", "el": "l",
    "em": "m", "en": "n", "nx": "n", "eng": "ng", "zh": "sh", "ux": "uw",
    "pcl": "h#", "tcl": "h#", "kcl": "h#", "bcl": "h#", "dcl": "h#", "gcl": "h#",
    "pau": "h#", "epi": "h#",
}
PHONES39 = sorted({FOLD.get(p, p) for p in PHONES61 if p != "q"})
CORE_TEST_SPEAKERS = frozenset(
    "MDAB0 MWBT0 FELC0 MTAS1 MWEW0 FPAS0 MJMP0 MLNT0 FPKT0 MLLL0 MTLS0 FJLM0 "
    "MBPM0 MKLT0 FNLP0 MCMJ0 MJDH0 FMGD0 MGRT0 MNJM0 FDHC0 MJLN0 MPAM0 FMLD0".split()
)


def fold_table() -> torch.Tensor:
    """Index map 61 -> 39 (q -> IGNORE)."""
    return torch.tensor([
        IGNORE if p == "q" else PHONES39.index(FOLD.get(p, p)) for p in PHONES61
    ])


def _child(folder: Path, name: str) -> Path | None:
    if not folder.is_dir():
        return None
    return next((p for p in folder.iterdir() if p.is_dir() and p.name.lower() == name), None)


def corpus_root(root: str | Path) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataNotFoundError(f"TIMIT folder not found: {root}. {HOW_TO_OBTAIN}")
    for candidate in (root, _child(root, "timit"), _child(root, "data")):
        if candidate is not None and (_child(candidate, "train") or _child(candidate, "test")):
            return candidate
    raise DataNotFoundError(
        f"no TIMIT corpus under {root}: expected TRAIN/ and TEST/ folders holding "
        f"DR*/SPEAKER/*.WAV + *.PHN. {HOW_TO_OBTAIN}"
    )


def list_utterances(root: str | Path, split: str) -> list[tuple[Path, Path]]:
    """(wav, phn) pairs of ``split`` ('train', 'valid' or 'test')."""
    if split not in ("train", "valid", "test"):
        raise ValueError(f"split must be 'train', 'valid' or 'test', got {split!r}")
    base = corpus_root(root)
    folder = _child(base, "train" if split == "train" else "test")
    if folder is None:
        raise DataNotFoundError(
            f"TIMIT {split} split needs {base}/{'TRAIN' if split == 'train' else 'TEST'}/, "
            f"which is missing. {HOW_TO_OBTAIN}"
        )
    speakers = sorted(s for dr in folder.iterdir() if dr.is_dir() for s in dr.iterdir()
                      if s.is_dir())
    if split != "train":
        core = [s for s in speakers if s.name.upper() in CORE_TEST_SPEAKERS]
        if split == "test":
            speakers = core
        else:
            rest = [s for s in speakers if s.name.upper() not in CORE_TEST_SPEAKERS]
            pick = np.random.default_rng(0).permutation(len(rest))[:50]
            speakers = [rest[i] for i in sorted(pick)]
    pairs = []
    for spk in speakers:
        for wav in sorted(spk.iterdir()):
            if wav.suffix.lower() != ".wav" or wav.stem.upper().startswith("SA"):
                continue
            phn = next((p for p in (wav.with_suffix(".PHN"), wav.with_suffix(".phn"))
                        if p.is_file()), None)
            if phn is None:
                raise DataNotFoundError(f"{wav}: no phone alignment {wav.with_suffix('.PHN')}")
            pairs.append((wav, phn))
    if not pairs:
        raise DataNotFoundError(f"no TIMIT {split} utterances (SA excluded) under {folder}")
    return pairs


def read_phn(path: Path, n_samples: int) -> list[tuple[int, int, int]]:
    """(start, end, phone index) segments, validated against the audio length."""
    segs = []
    for lineno, line in enumerate(read_text_lines(path), start=1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            start, end, phone = int(parts[0]), int(parts[1]), parts[2]
        except (IndexError, ValueError):
            raise CorruptDataError(
                f"{path}:{lineno}: expected 'start end phone', got {line!r}") from None
        if phone not in PHONES61:
            raise CorruptDataError(f"{path}:{lineno}: {phone!r} is not one of TIMIT's 61 phones")
        if not 0 <= start < end:
            raise CorruptDataError(f"{path}:{lineno}: bad segment {start}-{end}")
        if end > n_samples:
            raise CorruptDataError(
                f"{path}:{lineno}: phone {phone!r} ends at sample {end}, past the end of the "
                f"audio ({n_samples} samples)"
            )
        segs.append((start, end, PHONES61.index(phone)))
    if not segs:
        raise CorruptDataError(f"{path}: no phone segments")
    return segs


def frame_labels(segs: list[tuple[int, int, int]], n_samples: int, sr: int) -> np.ndarray:
    """The phone covering each frame's centre sample (IGNORE where none does)."""
    win, hop = frame_geometry(sr)
    centres = np.arange(n_frames(n_samples, sr)) * hop + win // 2
    labels = np.full(len(centres), IGNORE, dtype=np.int64)
    for start, end, phone in segs:
        labels[(centres >= start) & (centres < end)] = phone
    return labels


def utterance(wav: Path, phn: Path) -> tuple[np.ndarray, np.ndarray]:
    signal, sr, feats = read_features(wav, RATE)  # .PHN counts samples at 16 kHz
    return feats, frame_labels(read_phn(phn, len(signal)), len(signal), sr)


def load_timit(root: str | Path, split: str, progress: bool = True) -> SampleData:
    """Normalised (with training statistics) padded features and frame labels."""
    base = corpus_root(root)

    def split_data(name: str):
        return cached_sequences("timit", base, name, lambda: list_utterances(base, name),
                                lambda pair: utterance(*pair), progress)

    train = split_data("train")  # its statistics normalise every split
    mean, std = feature_stats(train[0])
    feats, labels = train if split == "train" else split_data(split)
    x, y = pad_sequences(normalise(feats, mean, std), labels)
    return SampleData(x, y, classes=61, task="frames", fold=fold_table())

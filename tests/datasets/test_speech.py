"""TIMIT and FSDD: file formats, layouts, features, labels, and their errors."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.fft import dct
from scipy.signal import get_window

from spikebench.datasets import DATASETS, CorruptDataError, DataNotFoundError
from spikebench.datasets.audio import frame_geometry, mfcc39, read_audio
from spikebench.datasets.base import IGNORE
from spikebench.datasets.fsdd import list_recordings
from spikebench.datasets.timit import (
    PHONES39,
    PHONES61,
    fold_table,
    list_utterances,
    load_timit,
    read_phn,
    utterance,
)

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
SR = 16000


def tone(seconds, freq=440.0, sr=SR, seed=0):
    t = np.arange(int(seconds * sr)) / sr
    noise = np.random.default_rng(seed).normal(0, 0.05, len(t))
    return (0.3 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


def write_utterance(folder: Path, name: str, seconds=0.5, phones=("h#", "aa", "q", "h#"),
                    seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    signal = tone(seconds, seed=seed)
    sf.write(folder / f"{name}.WAV", signal, SR, format="NIST", subtype="PCM_16")
    bounds = np.linspace(0, len(signal), len(phones) + 1).astype(int)
    lines = [f"{a} {b} {p}" for a, b, p in zip(bounds[:-1], bounds[1:], phones, strict=True)]
    (folder / f"{name}.PHN").write_text("\n".join(lines) + "\n")
    return signal


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "TIMIT"
    for k, spk in enumerate(("FAAA0", "MBBB0")):
        write_utterance(root / "TRAIN" / "DR1" / spk, "SI100", seed=k)
        write_utterance(root / "TRAIN" / "DR1" / spk, "SX20", seed=k + 10)
        write_utterance(root / "TRAIN" / "DR1" / spk, "SA1", seed=k + 20)  # excluded
    write_utterance(root / "TEST" / "DR1" / "MDAB0", "SI500", seed=5)  # core test speaker
    write_utterance(root / "TEST" / "dr2" / "mzzz0", "si600", seed=6)  # other speaker, lower case
    return tmp_path


def test_sphere_header_is_what_timit_uses(corpus):
    wav = corpus / "TIMIT/TRAIN/DR1/FAAA0/SI100.WAV"
    assert wav.read_bytes()[:8] == b"NIST_1A\n"
    signal, sr = read_audio(wav)
    assert sr == SR and len(signal) == SR // 2


def test_layout_splits_and_sa_exclusion(corpus):
    train = list_utterances(corpus, "train")
    assert len(train) == 4 and not any(w.stem.startswith("SA") for w, _ in train)
    test = list_utterances(corpus, "test")
    assert [w.parent.name for w, _ in test] == ["MDAB0"]  # the core test set only
    valid = list_utterances(corpus, "valid")
    assert [w.parent.name for w, _ in valid] == ["mzzz0"]


def test_features_and_frame_labels(corpus):
    signal = tone(0.5, seed=0)
    feats, labels = utterance(corpus / "TIMIT/TRAIN/DR1/FAAA0/SI100.WAV",
                              corpus / "TIMIT/TRAIN/DR1/FAAA0/SI100.PHN")
    win, hop = frame_geometry(SR)
    assert feats.shape == (1 + (len(signal) - win) // hop, 39)
    # each frame is labelled with the phone under its centre sample
    centres = np.arange(len(labels)) * hop + win // 2
    seg = len(signal) // 4
    expected = [("h#", "aa", "q", "h#")[min(c // seg, 3)] for c in centres]
    assert [PHONES61[k] for k in labels] == expected


def test_mfcc_matches_a_direct_computation():
    """The 13 cepstra against numpy/scipy: Hamming frames, power spectrum, mel, dB, DCT-II."""
    import librosa

    signal = tone(0.3, seed=3)
    ours = mfcc39(signal, SR)
    win, hop = frame_geometry(SR)
    frames = np.stack([signal[k * hop: k * hop + win] for k in range(len(ours))])
    power = np.abs(np.fft.rfft(frames * get_window("hamming", win), n=win)) ** 2
    mel = power @ librosa.filters.mel(sr=SR, n_fft=win, n_mels=40, fmax=SR / 2).T
    db = 10 * np.log10(np.maximum(mel, 1e-10))
    db = np.maximum(db, db.max() - 80.0)
    cep = dct(db, type=2, norm="ortho", axis=1)[:, :13]
    np.testing.assert_allclose(ours[:, :13], cep, rtol=1e-3, atol=1e-2)
    # deltas of a steady tone are small next to the cepstra themselves
    assert np.abs(ours[:, 13:]).mean() < 0.2 * np.abs(ours[:, :13]).mean()


def test_normalised_with_training_statistics(corpus, monkeypatch, tmp_path):
    monkeypatch.setenv("SPIKEBENCH_CACHE", str(tmp_path / "cache"))
    train = load_timit(corpus, "train", progress=False)
    valid = train.y != IGNORE
    frames = train.x[valid]
    assert torch.allclose(frames.mean(0), torch.zeros(39), atol=1e-4)
    assert torch.allclose(frames.std(0, unbiased=False), torch.ones(39), atol=1e-3)
    assert train.task == "frames" and train.x.shape[0] == 4
    test = load_timit(corpus, "test", progress=False)  # with the training mean and std
    assert not torch.allclose(test.x[test.y != IGNORE].mean(0), torch.zeros(39), atol=1e-3)


def test_folding_61_to_39():
    table = fold_table()
    assert len(PHONES61) == 61 and len(PHONES39) == 39
    assert int(table[PHONES61.index("q")]) == IGNORE
    assert PHONES39[table[PHONES61.index("ao")]] == "aa"
    assert PHONES39[table[PHONES61.index("pcl")]] == "h#"
    assert len(set(table.tolist()) - {IGNORE}) == 39


def test_bad_files_give_clear_errors(corpus, tmp_path):
    bad = tmp_path / "bad.WAV"
    bad.write_bytes(b"NIST_1B\n" + b"\x00" * 2000)
    with pytest.raises(CorruptDataError, match=r"bad\.WAV: cannot read audio"):
        read_audio(bad)
    phn = tmp_path / "x.PHN"
    phn.write_text("0 100 h#\n100 9000 aa\n")
    with pytest.raises(CorruptDataError, match="ends at sample 9000, past the end of the audio"):
        read_phn(phn, 8000)
    phn.write_text("0 100 zz\n")
    with pytest.raises(CorruptDataError, match="not one of TIMIT's 61 phones"):
        read_phn(phn, 8000)
    with pytest.raises(DataNotFoundError, match="LDC"):
        list_utterances(tmp_path / "nowhere", "train")


def test_real_timit_format_sample():
    root = SHARED / "timit-format-sample"
    if not root.is_dir():
        pytest.skip(f"{root} not present (../shared/data is not part of the repository)")
    (wav, phn), = list_utterances(root, "train")
    feats, labels = utterance(wav, phn)
    assert feats.shape == (308, 39)  # 3.095 s at 16 kHz, 25 ms windows every 10 ms
    phones_in_file = {line.split()[2] for line in phn.read_text().splitlines() if line.strip()}
    assert {PHONES61[k] for k in labels if k != IGNORE} == phones_in_file
    last_end = int(phn.read_text().split()[-2])
    win, hop = frame_geometry(16000)
    centres = np.arange(len(labels)) * hop + win // 2
    assert (labels[centres < last_end] != IGNORE).all()  # audio after the last phone: IGNORE
    assert (labels[centres >= last_end] == IGNORE).all()
    with pytest.raises(DataNotFoundError, match="TEST"):
        list_utterances(root, "test")


def write_fsdd(root: Path, speakers=("ann", "bob"), indices=range(0, 8)):
    rec = root / "recordings"
    rec.mkdir(parents=True)
    for d in range(10):
        for s in speakers:
            for i in indices:
                sf.write(rec / f"{d}_{s}_{i}.wav", tone(0.2, 300 + 50 * d, sr=8000, seed=i), 8000)


def test_fsdd_split_and_labels(tmp_path, monkeypatch):
    monkeypatch.setenv("SPIKEBENCH_CACHE", str(tmp_path / "cache"))
    write_fsdd(tmp_path / "fsdd")
    test = list_recordings(tmp_path / "fsdd", "test")
    assert len(test) == 10 * 2 * 5 and all(int(p.name.split("_")[2][0]) < 5 for p, _ in test)
    data = DATASETS.get("fsdd").load("train", tmp_path / "fsdd")
    assert data.task == "sequence" and len(data) == 10 * 2 * 3
    labels = data.y.max(1).values
    assert sorted(set(labels.tolist())) == list(range(10))
    with pytest.raises(DataNotFoundError, match="free-spoken-digit"):
        list_recordings(tmp_path / "none", "train")


def test_real_fsdd_counts():
    root = SHARED / "fsdd"
    if not (root / "recordings").is_dir():
        pytest.skip(f"{root} not present (../shared/data is not part of the repository)")
    assert len(list_recordings(root, "train")) == 2700
    assert len(list_recordings(root, "test")) == 300

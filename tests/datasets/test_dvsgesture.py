"""DVS Gesture: tonic's preprocessed layout (one <class>.npy of [N, 4] x, y, p, t-in-ms
events per gesture, per user/lighting folder), the pooled binning by hand, the errors."""

from pathlib import Path

import numpy as np
import pytest

from spikebench.datasets import DATASETS, CorruptDataError, DataNotFoundError
from spikebench.datasets.dvsgesture import bin_gesture, load_dvsgesture

EVENTS = np.array([
    [0, 0, 1, 1000],     # the first event: t0, bin 0, ON, pixel (0, 0) -> pooled (0, 0)
    [3, 3, 1, 1010],     # same pooled pixel and bin
    [127, 4, 0, 1026],   # OFF, x 127 -> column 31, y 4 -> row 1, bin 1 at 25 ms
    [64, 127, 1, 2499],  # bin 59: the last kept
    [5, 5, 1, 2500],     # 1.5 s after the first event: dropped
], dtype=np.int64)


def write_gestures(root: Path, split: str, files: dict[str, list[tuple[int, np.ndarray]]]):
    for rec, gestures in files.items():
        folder = root / "DVSGesture" / {"train": "ibmGestureTrain", "test": "ibmGestureTest"}[
            split] / rec
        folder.mkdir(parents=True, exist_ok=True)
        for label, ev in gestures:
            np.save(folder / f"{label}.npy", ev)


def test_binning_by_hand():
    frames = bin_gesture(EVENTS, 60, 25.0)
    expected = np.zeros((60, 2, 32, 32), np.uint8)
    expected[0, 1, 0, 0] = expected[1, 0, 1, 31] = expected[59, 1, 31, 16] = 1
    np.testing.assert_array_equal(frames, expected)
    assert bin_gesture(EVENTS, 60, 25.0, counts=True)[0, 1, 0, 0] == 2
    assert bin_gesture(EVENTS[:0], 60, 25.0).sum() == 0


def test_reads_tonics_layout(tmp_path):
    write_gestures(tmp_path, "train", {"user01_fluorescent": [(0, EVENTS), (10, EVENTS[:2])],
                                       "user02_led": [(3, EVENTS[2:])]})
    data = DATASETS.get("dvsgesture").load("train", tmp_path, progress=False)
    assert data.x.shape == (3, 60, 2, 32, 32) and data.classes == 11 and data.sparse
    assert data.y.tolist() == [0, 10, 3]
    assert data.x[1].sum() == 1
    assert data.x[2, 0, 0, 1, 31] == 1  # the third file's first event starts its clock
    short = load_dvsgesture(tmp_path, "train", n_steps=2, dt_ms=100.0, progress=False)
    assert short.x.shape == (3, 2, 2, 32, 32)


def test_errors_name_the_file_and_what_to_do(tmp_path):
    with pytest.raises(DataNotFoundError, match="no ibmGestureTest/ under .*figshare"):
        load_dvsgesture(tmp_path, "test", progress=False)
    write_gestures(tmp_path / "a", "test", {"user24_led": [(11, EVENTS)]})
    with pytest.raises(CorruptDataError, match=r"11\.npy: class 11 outside 0-10"):
        load_dvsgesture(tmp_path / "a", "test", progress=False)
    write_gestures(tmp_path / "b", "test", {"user24_led": [(1, EVENTS[:, :3])]})
    with pytest.raises(CorruptDataError, match=r"1\.npy: expected events \[N, 4\]"):
        load_dvsgesture(tmp_path / "b", "test", progress=False)
    off = EVENTS.copy()
    off[0, 0] = 128
    write_gestures(tmp_path / "c", "test", {"user24_led": [(1, off)]})
    with pytest.raises(CorruptDataError, match="outside the 128 x 128 sensor"):
        load_dvsgesture(tmp_path / "c", "test", progress=False)
    folder = tmp_path / "d" / "ibmGestureTest" / "user24_led"
    folder.mkdir(parents=True)
    (folder / "2.npy").write_text("garbage")
    with pytest.raises(CorruptDataError, match=r"2\.npy: not a \.npy array"):
        load_dvsgesture(tmp_path / "d", "test", progress=False)
    (tmp_path / "e" / "ibmGestureTest").mkdir(parents=True)
    with pytest.raises(DataNotFoundError, match="no <class>.npy files"):
        load_dvsgesture(tmp_path / "e", "test", progress=False)

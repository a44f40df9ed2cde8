"""The N-MNIST file format, binning, and both folder layouts."""

import numpy as np
import pandas as pd
import pytest
import torch
from tonic.functional import to_frame_numpy

from spikebench.datasets import DATASETS, CorruptDataError, DataNotFoundError, list_nmnist
from spikebench.datasets.events import (
    EVENT_DTYPE,
    frames_from_events,
    read_nmnist_bin,
    write_nmnist_bin,
)
from spikebench.datasets.nmnist import frames_data


def random_events(rng, n, t_max=300_000):
    ev = np.empty(n, dtype=EVENT_DTYPE)
    ev["x"] = rng.integers(0, 34, n)
    ev["y"] = rng.integers(0, 34, n)
    ev["t"] = np.sort(rng.integers(0, t_max, n))
    ev["p"] = rng.integers(0, 2, n)
    return ev


def test_round_trip_in_the_exact_format(tmp_path):
    rng = np.random.default_rng(0)
    ev = random_events(rng, 3000, t_max=(1 << 23) - 1)
    path = tmp_path / "00001.bin"
    write_nmnist_bin(path, ev)
    raw = path.read_bytes()
    assert len(raw) == 5 * len(ev)
    # independent decoding of the first event from the byte layout in the data README
    b = raw[:5]
    assert (b[0], b[1], b[2] >> 7) == (ev["x"][0], ev["y"][0], ev["p"][0])
    assert ((b[2] & 0x7F) << 16) | (b[3] << 8) | b[4] == ev["t"][0]
    back = read_nmnist_bin(path)
    for f in ("x", "y", "t", "p"):
        np.testing.assert_array_equal(back[f], ev[f])


def test_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "1.bs2"
    write_nmnist_bin(path, random_events(np.random.default_rng(1), 100))
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(CorruptDataError, match=r"1\.bs2: 498 bytes is not a multiple of 5"):
        read_nmnist_bin(path)


def test_out_of_sensor_coordinates_are_rejected(tmp_path):
    ev = random_events(np.random.default_rng(2), 10)
    ev["x"][3] = 200
    path = tmp_path / "bad.bin"
    write_nmnist_bin(path, ev)
    with pytest.raises(CorruptDataError, match="34x34"):
        read_nmnist_bin(path)


def test_wrong_path_names_the_path(tmp_path):
    with pytest.raises(DataNotFoundError, match="nowhere"):
        read_nmnist_bin(tmp_path / "nowhere.bin")
    with pytest.raises(DataNotFoundError, match=r"nowhere.*garrickorchard"):
        list_nmnist(tmp_path / "nowhere", "train")
    with pytest.raises(DataNotFoundError, match="no N-MNIST train split"):
        list_nmnist(tmp_path, "train")


def test_binning_agrees_with_tonic():
    rng = np.random.default_rng(3)
    evs = [random_events(rng, int(n)) for n in rng.integers(0, 4000, 5)]
    ours = frames_from_events(evs, n_steps=30, dt_us=10_000)
    assert ours.shape == (5, 30, 2, 34, 34)
    for k, ev in enumerate(evs):
        if len(ev) == 0:
            assert ours[k].sum() == 0
            continue
        ref = to_frame_numpy(ev, sensor_size=(34, 34, 2), time_window=10_000,
                             start_time=0, end_time=300_000)
        np.testing.assert_array_equal(ours[k], ref)


def test_events_past_the_window_are_dropped():
    ev = random_events(np.random.default_rng(4), 500, t_max=100_000)
    frames = frames_from_events([ev], n_steps=5, dt_us=10_000)  # 50 ms window
    assert frames.sum() == int((ev["t"] < 50_000).sum())


def make_full_layout(root, per_class=2, seed=0):
    rng = np.random.default_rng(seed)
    for split in ("Train", "Test"):
        for d in range(10):
            folder = root / split / str(d)
            folder.mkdir(parents=True)
            for i in range(per_class):
                write_nmnist_bin(folder / f"{i:05d}.bin", random_events(rng, 200))


def test_full_layout(tmp_path):
    make_full_layout(tmp_path)
    rows = list_nmnist(tmp_path, "test")
    assert len(rows) == 20 and [lab for _, lab in rows] == sorted([d for d in range(10)] * 2)
    data = DATASETS.get("nmnist").load("train", tmp_path, n_steps=10, dt_ms=30.0)
    assert data.x.shape == (20, 10, 2, 34, 34) and set(data.x.unique().tolist()) <= {0, 1}
    assert data.y.tolist() == sorted(list(range(10)) * 2)


def test_bad_subset_table(tmp_path):
    (tmp_path / "train1K.txt").write_text("#sample\t#class\n1\t3\n2\n")
    with pytest.raises(CorruptDataError, match="train1K.txt:3"):
        list_nmnist(tmp_path, "train")


def test_real_subset_loads_with_its_labels(nmnist_small):
    for split, table, n in (("train", "train1K.txt", 1000), ("test", "test100.txt", 100)):
        rows = list_nmnist(nmnist_small, split)
        ref = pd.read_csv(nmnist_small / table, sep=r"\s+")
        assert len(rows) == n == len(ref)
        assert [p.name for p, _ in rows] == [f"{s}.bs2" for s in ref.iloc[:, 0]]
        assert [lab for _, lab in rows] == ref.iloc[:, 1].tolist()
    data = DATASETS.get("nmnist").load("test", nmnist_small, n_steps=30, dt_ms=10.0)
    assert data.x.shape == (100, 30, 2, 34, 34)
    counts = [len(read_nmnist_bin(p)) for p, _ in list_nmnist(nmnist_small, "test")]
    assert 1000 <= min(counts) and max(counts) <= 7152


def test_frames_binary_counts_and_normalised_agree():
    rng = np.random.default_rng(3)
    events = [random_events(rng, 400), random_events(rng, 50)]
    for ev in events:  # a 3 x 3 patch: several events share a pixel and bin
        ev["x"] %= 3
        ev["y"] %= 3
    labels = np.array([1, 2])
    counts = frames_data(events, labels, 6, 20.0, "counts").x
    binary = frames_data(events, labels, 6, 20.0).x
    normalised = frames_data(events, labels, 6, 20.0, "normalised").x
    assert counts.dtype == binary.dtype == torch.uint8 and normalised.dtype == torch.float32
    assert counts.max() > 1  # several events in one bin somewhere
    assert torch.equal(binary, counts.clamp(max=1))
    peak = counts.flatten(1).max(1).values.float()
    assert torch.equal(normalised.flatten(1).max(1).values, torch.ones(2))
    torch.testing.assert_close(normalised * peak[:, None, None, None, None], counts.float())
    with pytest.raises(ValueError, match="unknown frames"):
        frames_data(events, labels, 6, 20.0, "spikes")

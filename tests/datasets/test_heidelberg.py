"""SHD / SSC: the HDF5 layout as distributed (vlen arrays of spike times in seconds and of
units, one label per sample), the field's binning checked by hand, and the errors."""

from pathlib import Path

import h5py
import numpy as np
import pytest

from spikebench.datasets import DATASETS, CorruptDataError, DataNotFoundError
from spikebench.datasets.heidelberg import CHANNELS, bin_spikes, load_heidelberg
from spikebench.errors import ConfigError


def write_h5(path: Path, samples, labels):
    """``samples``: (times s, units) per sample, written as the Zenke lab's files are."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        spikes = f.create_group("spikes")
        t = spikes.create_dataset("times", (len(samples),), dtype=h5py.vlen_dtype(np.float16))
        u = spikes.create_dataset("units", (len(samples),), dtype=h5py.vlen_dtype(np.uint16))
        for i, (times, units) in enumerate(samples):
            t[i] = np.asarray(times, dtype=np.float16)
            u[i] = np.asarray(units, dtype=np.uint16)
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint16))
        f.create_group("extra").create_dataset("speaker", data=np.zeros(len(samples)))


SAMPLES = [
    # a spike in bin 0, two in one bin of one channel, the last channel, one past 1 s
    ([0.0, 0.0125, 0.0175, 0.5, 0.999, 1.25], [3, 7, 7, 699, 0, 5]),
    ([], []),  # a silent sample
    ([0.0301], [10]),
]


@pytest.fixture()
def shd_dir(tmp_path):
    write_h5(tmp_path / "shd_train.h5", SAMPLES, [0, 19, 4])
    write_h5(tmp_path / "shd_test.h5", SAMPLES[:2], [1, 2])
    return tmp_path


def test_binning_by_hand():
    frame = bin_spikes(np.array([0.0, 0.0125, 0.0175, 0.5, 0.999, 1.25]),
                       np.array([3, 7, 7, 699, 0, 5]), 100, 10.0, CHANNELS)
    expected = np.zeros((100, CHANNELS), np.uint8)
    for k, c in ((0, 3), (1, 7), (50, 699), (99, 0)):  # 1.25 s lies past T x dt: dropped
        expected[k, c] = 1
    np.testing.assert_array_equal(frame, expected)
    counts = bin_spikes(np.array([0.0125, 0.0175]), np.array([7, 7]), 100, 10.0, CHANNELS,
                        counts=True)
    assert counts[1, 7] == 2 and counts.sum() == 2


def test_reads_the_distributed_layout(shd_dir):
    data = load_heidelberg(shd_dir, "shd", "train", progress=False)
    assert data.x.shape == (3, 100, CHANNELS) and data.classes == 20 and data.sparse
    assert data.y.tolist() == [0, 19, 4]
    assert data.x[0].sum() == 4 and data.x[1].sum() == 0  # the silent sample stays silent
    assert data.x[2, 3, 10] == 1  # float16 times: 0.0301 s is bin 3 at 10 ms
    coarse = load_heidelberg(shd_dir, "shd", "train", n_steps=20, dt_ms=50.0, progress=False)
    assert coarse.x.shape == (3, 20, CHANNELS) and coarse.x[0, 0, 7] == 1
    counts = load_heidelberg(shd_dir, "shd", "train", frames="counts", progress=False)
    assert counts.x[0, 1, 7] == 2


def test_tonic_folder_and_the_registry(tmp_path):
    write_h5(tmp_path / "SSC" / "ssc_valid.h5", SAMPLES, [0, 34, 1])
    data = DATASETS.get("ssc").load("valid", tmp_path, progress=False)
    assert data.classes == 35 and data.x.shape[1:] == (100, CHANNELS)


def test_errors_name_the_file_and_what_to_do(shd_dir, tmp_path):
    with pytest.raises(DataNotFoundError, match=r"SSC train split not found: .*ssc_train\.h5"
                                                r".*zenkelab"):
        load_heidelberg(shd_dir, "ssc", "train", progress=False)
    (tmp_path / "packed").mkdir()
    (tmp_path / "packed" / "shd_train.h5.gz").write_bytes(b"\x1f\x8b")
    with pytest.raises(DataNotFoundError, match="is there: unpack it"):
        load_heidelberg(tmp_path / "packed", "shd", "train", progress=False)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "shd_train.h5").write_text("not hdf5")
    with pytest.raises(CorruptDataError, match="not an SHD HDF5 file"):
        load_heidelberg(tmp_path / "bad", "shd", "train", progress=False)
    write_h5(tmp_path / "lab" / "shd_train.h5", SAMPLES, [0, 20, 1])
    with pytest.raises(CorruptDataError, match="labels 0..20 outside 0-19"):
        load_heidelberg(tmp_path / "lab", "shd", "train", progress=False)
    write_h5(tmp_path / "unit" / "shd_train.h5", [([0.1], [700])], [0])
    with pytest.raises(CorruptDataError, match="unit outside 0-699"):
        load_heidelberg(tmp_path / "unit", "shd", "train", progress=False)
    write_h5(tmp_path / "len" / "shd_train.h5", [([0.1, 0.2], [1])], [0])
    with pytest.raises(CorruptDataError, match="2 spike times but 1 units"):
        load_heidelberg(tmp_path / "len", "shd", "train", progress=False)
    write_h5(tmp_path / "count" / "shd_train.h5", SAMPLES, [0, 1])
    with pytest.raises(CorruptDataError, match="3 spike trains, 3 unit lists and 2 labels"):
        load_heidelberg(tmp_path / "count", "shd", "train", progress=False)
    with pytest.raises(ConfigError, match="frames must be"):
        load_heidelberg(shd_dir, "shd", "train", frames="rates", progress=False)

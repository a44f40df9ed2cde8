"""Image formats (IDX, CIFAR pickles, SVHN .mat), encoders, and the batching of every task."""

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import savemat

from spikebench.datasets import DATASETS, CorruptDataError, DataNotFoundError, SampleData
from spikebench.datasets.base import IGNORE, time_major_loader
from spikebench.datasets.encoders import Encoder, bernoulli, direct, minmax
from spikebench.datasets.images import load_cifar, load_idx_images, load_svhn, read_idx


def write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, gz):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 7, dtype=np.uint8)
    sfx = ".gz" if gz else ""
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{sfx}", imgs, gz)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{sfx}", labels, gz)
    x, y = load_idx_images(tmp_path, "test")
    assert x.shape == (7, 1, 28, 28) and x.dtype == torch.uint8
    np.testing.assert_array_equal(x[:, 0].numpy(), imgs)
    np.testing.assert_array_equal(y.numpy(), labels)


def test_idx_errors(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    write_idx(path, np.zeros((3, 4, 4), np.uint8), gz=False)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(CorruptDataError, match="truncated or corrupt"):
        read_idx(path)
    path.write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(CorruptDataError, match="not an IDX file"):
        read_idx(path)
    write_idx(path, np.zeros((3, 4, 4), np.uint8), gz=False)
    with pytest.raises(DataNotFoundError, match="train-labels-idx1-ubyte"):
        load_idx_images(tmp_path, "train")


def cifar_batch(n, classes, fine, seed):
    rng = np.random.default_rng(seed)
    key = b"fine_labels" if fine else b"labels"
    return {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            key: rng.integers(0, classes, n).tolist()}


def test_cifar10_and_100(tmp_path):
    c10 = tmp_path / "cifar-10-batches-py"
    c10.mkdir()
    batches = [cifar_batch(4, 10, False, k) for k in range(6)]
    for k in range(5):
        (c10 / f"data_batch_{k + 1}").write_bytes(pickle.dumps(batches[k]))
    (c10 / "test_batch").write_bytes(pickle.dumps(batches[5]))
    x, y = load_cifar(tmp_path, "train")
    assert x.shape == (20, 3, 32, 32)
    # channel-major rows: the first 1024 bytes are the red plane
    np.testing.assert_array_equal(x[0, 0].flatten().numpy(), batches[0][b"data"][0, :1024])
    assert y.tolist() == sum((b[b"labels"] for b in batches[:5]), [])
    c100 = tmp_path / "c100"
    c100.mkdir()
    b = cifar_batch(5, 100, True, 9)
    (c100 / "test").write_bytes(pickle.dumps(b))
    x, y = load_cifar(c100, "test", fine=True)
    assert y.tolist() == b[b"fine_labels"] and x.shape == (5, 3, 32, 32)
    (c100 / "test").write_bytes(b"garbage")
    with pytest.raises(CorruptDataError, match="not a CIFAR python batch"):
        load_cifar(c100, "test", fine=True)


def test_svhn_label_10_is_zero(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.integers(0, 256, (32, 32, 3, 6), dtype=np.uint8)
    savemat(tmp_path / "test_32x32.mat", {"X": X, "y": np.array([[10], [1], [2], [10], [5], [9]])})
    x, y = load_svhn(tmp_path, "test")
    assert y.tolist() == [0, 1, 2, 0, 5, 9]
    np.testing.assert_array_equal(x[2].permute(1, 2, 0).numpy(), X[..., 2])
    with pytest.raises(DataNotFoundError, match="train_32x32.mat"):
        load_svhn(tmp_path, "train")


def test_bernoulli_rate_and_straight_through_gradient():
    torch.manual_seed(0)
    p = torch.tensor([[0.0, 0.1, 0.5, 0.9, 1.0]], requires_grad=True)
    spikes = bernoulli(p, 4000)
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(spikes.mean(0), p.detach(), atol=0.03, rtol=0)
    spikes.sum().backward()
    torch.testing.assert_close(p.grad, torch.full_like(p, 4000.0))
    u8 = torch.tensor([[0, 255]], dtype=torch.uint8)
    assert direct(u8, 3).tolist() == [[[0.0, 1.0]]] * 3
    with pytest.raises(ValueError):
        Encoder("bernoulli", 0)


def test_minmax_per_sample():
    x = torch.tensor([[[1.0, 3.0], [5.0, 2.0]], [[-1.0, -1.0], [-1.0, 7.0]]])
    out = minmax(x)
    assert torch.equal(out.flatten(1).min(1).values, torch.zeros(2))
    assert torch.equal(out.flatten(1).max(1).values, torch.ones(2))
    torch.testing.assert_close(out[0], (x[0] - 1) / 4)


def test_batches_of_every_task():
    enc = SampleData(torch.randint(0, 256, (5, 1, 4, 4), dtype=torch.uint8), torch.arange(5), 10,
                     encode=Encoder("direct", 3))
    x, y = next(iter(time_major_loader(enc, 5)))
    assert x.shape == (3, 5, 1, 4, 4) and y.shape == (5,)
    y_frames = torch.full((2, 6), IGNORE)
    y_frames[0, :4] = 1
    y_frames[1, :2] = 2
    seq = SampleData(torch.randn(2, 6, 3), y_frames, 10, task="sequence")
    x, y = next(iter(time_major_loader(seq, 2)))
    assert x.shape == (4, 2, 3) and y.shape == (4, 2)  # cut after the last labelled frame
    with pytest.raises(ValueError, match="does not fit"):
        SampleData(torch.randn(2, 6, 3), y_frames, 10, task="sample")


def test_mnist5k_embedded():
    data = DATASETS.get("mnist5k").load("test", n_steps=4)
    assert data.x.shape == (1000, 1, 28, 28) and torch.bincount(data.y).tolist() == [100] * 10


def test_fashion_mnist_from_the_debian_package():
    root = Path("/usr/share/datasets/fashion-mnist")
    if not root.is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (make setup installs it "
                    "where apt is available)")
    info = DATASETS.get("fashion-mnist")
    assert len(info.load("train")) == 60000 and len(info.load("test")) == 10000

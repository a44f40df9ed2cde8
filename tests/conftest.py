from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def nmnist_small() -> Path:
    path = SHARED_DATA / "nmnist-small"
    if not (path / "train1K.txt").is_file():
        pytest.skip(f"real N-MNIST subset not found at {path} (../shared/data is not part of "
                    "the repository; see README)")
    return path


@pytest.fixture(autouse=True)
def _torch_threads():
    torch.set_num_threads(2)
    yield

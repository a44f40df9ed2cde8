"""Published figures that reports put beside ours.

Lin, Lu, Bal, Sengupta, "Benchmarking Spiking Neural Network Learning Methods with Varying
Locality", IEEE Access 13 (2025), arXiv 2402.01782. Table II: test accuracy (%).
"""

from __future__ import annotations

PAPER = "Lin et al. 2025, Table II"

# (task, rule, arch) -> accuracy in %
TABLE_II: dict[tuple[str, str, str], float] = {
    ("nmnist", "bptt", "ff"): 97.12,
    ("nmnist", "bptt", "rec"): 97.77,
    ("nmnist", "eprop", "ff"): 96.80,
    ("nmnist", "eprop", "rec"): 96.44,
    ("nmnist", "decolle", "ff"): 93.61,
    ("nmnist", "decolle", "rec"): 90.52,
    ("timit", "bptt", "ff"): 52.31,
    ("timit", "bptt", "rec"): 56.93,
    ("timit", "eprop", "ff"): 51.12,
    ("timit", "eprop", "rec"): 54.99,
    ("timit", "decolle", "ff"): 42.30,
    ("timit", "decolle", "rec"): 45.70,
}

# which published task a data set is compared with
TASK_OF_DATASET = {"nmnist": "nmnist", "nmnist-sim": "nmnist", "timit": "timit"}


def paper_accuracy(dataset: str, rule: str, arch: str) -> float | None:
    task = TASK_OF_DATASET.get(dataset)
    return TABLE_II.get((task, rule, arch)) if task else None

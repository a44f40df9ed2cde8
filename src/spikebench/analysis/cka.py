"""Centred kernel alignment (Kornblith et al. 2019) with the unbiased HSIC estimator
(Song et al. 2012) and its minibatch form (Nguyen, Raghu, Kornblith 2021).

    HSIC_1(K, L) = [tr(K~ L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3))

with K~, L~ the kernel matrices with their diagonals set to zero. The minibatch CKA sums
HSIC_1 over batches and normalises once at the end:

    CKA = sum_b HSIC_1(K_b, L_b) / sqrt(sum_b HSIC_1(K_b, K_b) * sum_b HSIC_1(L_b, L_b))

Spiking representations [T, n, f] are compared with their time steps concatenated along
the features (Li et al. 2023): ``flatten_time`` gives [n, T f].
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

MIN_BATCH = 4  # HSIC_1 divides by n (n - 3)


def flatten_time(x: torch.Tensor) -> torch.Tensor:
    """[T, n, ...] -> [n, T * features] (time steps concatenated along features)."""
    if x.dim() < 2:
        raise ValueError(f"expected [T, n, ...], got shape {tuple(x.shape)}")
    return x.transpose(0, 1).reshape(x.shape[1], -1)


def linear_kernel(x: torch.Tensor) -> torch.Tensor:
    x = x.reshape(x.shape[0], -1).double()
    return x @ x.t()


def rbf_kernel(x: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """Gaussian kernel; ``sigma`` defaults to the median pairwise distance."""
    x = x.reshape(x.shape[0], -1).double()
    d2 = torch.cdist(x, x).pow(2)
    if sigma is None:
        off = d2[~torch.eye(len(x), dtype=torch.bool)]
        sigma = float(off.median().sqrt()) if off.numel() and off.median() > 0 else 1.0
    return torch.exp(-d2 / (2 * sigma**2))


KERNELS = {"linear": linear_kernel, "rbf": rbf_kernel}


def hsic1(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC estimator of two n x n kernel matrices (n >= 4)."""
    n = k.shape[0]
    if n < MIN_BATCH:
        raise ValueError(f"the unbiased HSIC needs at least {MIN_BATCH} samples, got {n}")
    if k.shape != l.shape or k.shape != (n, n):
        raise ValueError(f"kernel matrices must both be n x n, got {k.shape} and {l.shape}")
    k = k.clone().fill_diagonal_(0)
    l = l.clone().fill_diagonal_(0)
    ones = torch.ones(n, dtype=k.dtype, device=k.device)
    kl = k @ l
    term = kl.trace() + (k.sum() * l.sum()) / ((n - 1) * (n - 2)) - 2 / (n - 2) * (ones @ kl @ ones)
    return term / (n * (n - 3))


class MinibatchCKA:
    """Accumulate HSIC_1 over minibatches; ``value()`` normalises once at the end."""

    def __init__(self, kernel: str = "linear") -> None:
        if kernel not in KERNELS:
            raise ValueError(f"unknown kernel {kernel!r}; known: {', '.join(KERNELS)}")
        self.kernel = KERNELS[kernel]
        self.xy = self.xx = self.yy = 0.0
        self.batches = 0

    def update(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """x [n, ...], y [n, ...]: the same n samples seen by two layers/models."""
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} samples, y has {y.shape[0]}")
        if x.shape[0] < MIN_BATCH:
            raise ValueError(f"minibatches must hold at least {MIN_BATCH} samples, "
                             f"got {x.shape[0]}")
        k, l = self.kernel(x), self.kernel(y)
        self.xy += float(hsic1(k, l))
        self.xx += float(hsic1(k, k))
        self.yy += float(hsic1(l, l))
        self.batches += 1

    def value(self) -> float:
        if self.batches == 0:
            raise ValueError("no minibatches were given")
        if self.xx <= 0 or self.yy <= 0:
            raise ValueError(
                f"the unbiased self-HSIC estimates are not positive (x: {self.xx:.3g}, "
                f"y: {self.yy:.3g}), so CKA is undefined: a representation is (nearly) "
                "constant, or the batches are too small; use more or larger batches"
            )
        return self.xy / (self.xx * self.yy) ** 0.5


def cka(x: torch.Tensor, y: torch.Tensor, kernel: str = "linear",
        batch_size: int | None = None) -> float:
    """CKA of two representations of the same samples (full batch, or minibatches)."""
    acc = MinibatchCKA(kernel)
    n = x.shape[0]
    size = batch_size or n
    for start in range(0, n, size):
        acc.update(x[start: start + size], y[start: start + size])
    return acc.value()


def cka_matrix(reps_a: Iterable[torch.Tensor], reps_b: Iterable[torch.Tensor],
               kernel: str = "linear", batch_size: int | None = None) -> torch.Tensor:
    """Layer-by-layer CKA: entry (i, j) compares layer i of model A with layer j of B."""
    reps_a, reps_b = list(reps_a), list(reps_b)
    return torch.tensor([[cka(a, b, kernel, batch_size) for b in reps_b] for a in reps_a])

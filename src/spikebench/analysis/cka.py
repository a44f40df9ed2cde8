"""Centred kernel alignment (Kornblith et al. 2019) with the unbiased HSIC estimator
(Song et al. 2012) and its minibatch form (Nguyen, Raghu, Kornblith 2021).

Song et al. write the estimator term by term,

    HSIC_1(K, L) = [tr(K~ L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3))

(K~, L~: the kernel matrices with zero diagonals). Its terms are large and nearly equal
when a representation has a common offset (a layer firing at almost every step, a readout
with a large bias), and their difference cancels catastrophically. We compute the same
number in a stable form: the U-centring of Szekely & Rizzo (2014),

    U(K)_ij = K~_ij - r_i/(n-2) - r_j/(n-2) + s/((n-1)(n-2))  (i != j),  U(K)_ii = 0,

with r the row sums and s the total of K~, gives HSIC_1(K, L) = <U(K), U(L)> / (n(n-3)),
an inner product; so every HSIC_1(K, K) >= 0 and |CKA| <= 1 by Cauchy-Schwarz, also in
its minibatch form. The linear kernel is formed from features centred first (in float64),
which changes K only by row- and column-constant terms that the U-centring removes, so an
offset never reaches the Gram matrix. The RBF kernel depends on differences only, and its
distances are taken on centred features too. The minibatch CKA sums HSIC_1 over batches
and normalises once at the end:

    CKA = sum_b HSIC_1(K_b, L_b) / sqrt(sum_b HSIC_1(K_b, K_b) * sum_b HSIC_1(L_b, L_b))

Spiking representations [T, n, f] are compared with their time steps concatenated along
the features (Li et al. 2023): ``flatten_time`` gives [n, T f].
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

MIN_BATCH = 4  # HSIC_1 divides by n (n - 3)


class UndefinedCKAError(ValueError):
    """CKA is undefined: a representation is constant over the samples (a silent or
    saturated layer), so its self-HSIC is zero."""


def flatten_time(x: torch.Tensor) -> torch.Tensor:
    """[T, n, ...] -> [n, T * features] (time steps concatenated along features)."""
    if x.dim() < 2:
        raise ValueError(f"expected [T, n, ...], got shape {tuple(x.shape)}")
    return x.transpose(0, 1).reshape(x.shape[1], -1)


def centre_features(x: torch.Tensor) -> torch.Tensor:
    """[n, ...] -> [n, f] float64 with each feature's mean over the samples removed; a
    feature that is constant over the samples becomes exactly zero (not rounding noise)."""
    x = x.reshape(x.shape[0], -1).double()
    centred = x - x.mean(0, keepdim=True)
    constant = (x == x[:1]).all(0)
    return centred.masked_fill_(constant, 0.0)


def linear_kernel(x: torch.Tensor) -> torch.Tensor:
    """Gram matrix of the centred features (equal to x x' up to the row- and column-constant
    terms that HSIC's centring removes)."""
    x = centre_features(x)
    return x @ x.t()


def rbf_kernel(x: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """Gaussian kernel; ``sigma`` defaults to the median pairwise distance."""
    x = centre_features(x)
    d2 = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist").pow(2)
    if sigma is None:
        off = d2[~torch.eye(len(x), dtype=torch.bool)]
        sigma = float(off.median().sqrt()) if off.numel() and off.median() > 0 else 1.0
    return torch.exp(-d2 / (2 * sigma**2))


KERNELS = {"linear": linear_kernel, "rbf": rbf_kernel}


def u_centre(k: torch.Tensor) -> torch.Tensor:
    """The U-centred form of an n x n kernel matrix (n >= 4), in float64: zero diagonal,
    and HSIC_1(K, L) = <U(K), U(L)> / (n (n - 3))."""
    n = k.shape[0]
    if n < MIN_BATCH:
        raise ValueError(f"the unbiased HSIC needs at least {MIN_BATCH} samples, got {n}")
    if k.shape != (n, n):
        raise ValueError(f"a kernel matrix must be n x n, got {tuple(k.shape)}")
    k = k.double().clone().fill_diagonal_(0)
    rows = k.sum(1)
    u = k - rows[:, None] / (n - 2) - rows[None, :] / (n - 2) + rows.sum() / ((n - 1) * (n - 2))
    return u.fill_diagonal_(0)


def hsic1(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC estimator of two n x n kernel matrices (n >= 4), in the stable
    U-centred form (module docstring)."""
    if k.shape != l.shape:
        raise ValueError(f"kernel matrices must both be n x n, got {k.shape} and {l.shape}")
    n = k.shape[0]
    return (u_centre(k) * u_centre(l)).sum() / (n * (n - 3))


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
        n = x.shape[0]
        u, v = self._centred_kernel(x), self._centred_kernel(y)
        self.xy += float((u * v).sum()) / (n * (n - 3))
        self.xx += float((u * u).sum()) / (n * (n - 3))
        self.yy += float((v * v).sum()) / (n * (n - 3))
        self.batches += 1

    def _centred_kernel(self, x: torch.Tensor) -> torch.Tensor:
        """U(K) of a batch; exactly zero where the batch's samples are all equal (any
        kernel of identical points is constant, and the U-centring removes constants)."""
        if bool((x == x[:1]).all()):
            return torch.zeros(x.shape[0], x.shape[0], dtype=torch.float64, device=x.device)
        return u_centre(self.kernel(x))

    def value(self) -> float:
        """The CKA, in [-1, 1]; raises ``UndefinedCKAError`` where a representation is
        constant over every batch (its self-HSIC is exactly zero)."""
        if self.batches == 0:
            raise ValueError("no minibatches were given")
        if self.xx == 0 or self.yy == 0:
            which = " and ".join(w for w, v in (("x", self.xx), ("y", self.yy)) if v == 0)
            raise UndefinedCKAError(
                f"CKA is undefined: representation {which} is constant over the samples "
                "(a silent or saturated layer), so its self-HSIC is zero"
            )
        return self.xy / (self.xx**0.5 * self.yy**0.5)


def cka(x: torch.Tensor, y: torch.Tensor, kernel: str = "linear",
        batch_size: int | None = None) -> float:
    """CKA of two representations of the same samples (full batch, or minibatches)."""
    acc = MinibatchCKA(kernel)
    for idx in batch_slices(x.shape[0], batch_size or x.shape[0]):
        acc.update(x[idx], y[idx])
    return acc.value()


def batch_slices(n: int, size: int) -> list[slice]:
    """Consecutive batches of ``size``; a last batch too small for HSIC_1 (< 4 samples)
    joins the one before it."""
    if size < MIN_BATCH:
        raise ValueError(f"CKA batches must hold at least {MIN_BATCH} samples, got {size}")
    starts = list(range(0, n, size))
    if len(starts) > 1 and n - starts[-1] < MIN_BATCH:
        starts.pop()
    return [slice(a, b) for a, b in zip(starts, [*starts[1:], n], strict=True)]


def cka_matrix(reps_a: Iterable[torch.Tensor], reps_b: Iterable[torch.Tensor],
               kernel: str = "linear", batch_size: int | None = None) -> torch.Tensor:
    """Layer-by-layer CKA: entry (i, j) compares layer i of model A with layer j of B."""
    reps_a, reps_b = list(reps_a), list(reps_b)
    return torch.tensor([[cka(a, b, kernel, batch_size) for b in reps_b] for a in reps_a])


def cka_or_nan(x: torch.Tensor, y: torch.Tensor, kernel: str = "linear",
               batch_size: int | None = None) -> float:
    """``cka``, or NaN where it is undefined (a representation constant over the samples)."""
    try:
        return cka(x, y, kernel, batch_size)
    except UndefinedCKAError:
        return float("nan")


def layer_names(n_hidden: int) -> list[str]:
    """Names of a spiking MLP's representations: h1, h2, ..., out (the readout)."""
    return [f"h{k + 1}" for k in range(n_hidden)] + ["out"]


def mlp_inputs(model, encode=None):
    """Batch-first samples -> a spiking MLP's time-major input: ``encode`` (static images:
    the rate code) or the event frames made time-major."""
    from spikebench.models.mlp import time_major

    return encode if encode is not None else (lambda xb: time_major(xb, model.sizes[0]))


def representations(model, x: torch.Tensor, inputs=None, batch: int = 250,
                    seed: int = 0) -> list[torch.Tensor]:
    """[N, T*f] per layer of any ``Probed`` model (``model.layer_names()``) and for its
    readout (time steps concatenated); ``x`` batch-first, ``inputs(xb)`` the model's input
    of a batch (None: ``xb`` itself; a spiking MLP: ``mlp_inputs``). The same seed gives
    every model the same rate code."""
    parts: list[list[torch.Tensor]] = []
    torch.manual_seed(seed)
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = x[i:i + batch]
            out, layers = model.probe(inputs(xb) if inputs is not None else xb)
            parts.append([flatten_time(s) for s in [*layers, out]])
    return [torch.cat(p) for p in zip(*parts, strict=True)]


def adversarial_cka(model, attack, x: torch.Tensor, y: torch.Tensor, epsilons,
                    inputs=None, batch_size: int = 256, attack_batch: int = 250) -> list[dict]:
    """CKA of each layer between its representations of clean inputs and of perturbed
    ones, ``attack(x, y, eps) -> x_adv`` (e.g. FGSM crafted on the ANN counterpart), per
    epsilon: rows {eps, layer, cka} (cka None where undefined)."""
    clean = representations(model, x, inputs)
    names = [*model.layer_names(), "out"]
    rows = []
    for eps in epsilons:
        adv = torch.cat([attack(x[i:i + attack_batch], y[i:i + attack_batch], eps)
                         for i in range(0, len(x), attack_batch)])
        reps = representations(model, adv, inputs)
        for k, name in enumerate(names):
            value = cka_or_nan(clean[k], reps[k], batch_size=batch_size)
            rows.append({"eps": float(eps), "layer": name,
                         "cka": None if value != value else value})
    return rows

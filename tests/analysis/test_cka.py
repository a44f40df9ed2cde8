"""CKA against its defining properties and a direct U-statistic of Song et al. (2012)."""

from itertools import permutations

import pytest
import torch

from spikebench.analysis.cka import MinibatchCKA, cka, flatten_time, hsic1, linear_kernel


def hsic_u_statistic(k, l):
    """Song et al. (2012), Theorem 2: HSIC_1 as a U-statistic over distinct 4-tuples."""
    n = k.shape[0]
    total, count = 0.0, 0
    for i, j, q, r in permutations(range(n), 4):
        total += (k[i, j] * l[i, j] + k[i, j] * l[q, r] - 2 * k[i, j] * l[i, q]).item()
        count += 1
    return total / count


def test_unbiased_hsic_equals_the_u_statistic():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 3, generator=g, dtype=torch.float64)
    y = torch.randn(7, 5, generator=g, dtype=torch.float64) + x[:, :1]
    k, l = linear_kernel(x), linear_kernel(y)
    assert float(hsic1(k, l)) == pytest.approx(hsic_u_statistic(k, l), rel=1e-10)


def test_cka_identity_orthogonal_and_scale_invariance():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(60, 10, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(10, 10, generator=g, dtype=torch.float64))
    assert cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert cka(x, 3.7 * x @ q) == pytest.approx(1.0, abs=1e-10)
    y = torch.randn(60, 4, generator=g, dtype=torch.float64)
    assert cka(x, y) == pytest.approx(cka(x @ q * 0.2, y), abs=1e-10)
    assert cka(x, y, kernel="rbf") == pytest.approx(cka(x @ q, y, kernel="rbf"), abs=1e-10)


def test_minibatch_estimate_agrees_with_full_batch():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(600, 8, generator=g, dtype=torch.float64)
    y = x @ torch.randn(8, 6, generator=g, dtype=torch.float64) + 0.5 * torch.randn(
        600, 6, generator=g, dtype=torch.float64)
    full = cka(x, y)
    assert cka(x, y, batch_size=600) == full  # one batch is the full-batch estimate
    assert cka(x, y, batch_size=100) == pytest.approx(full, abs=0.03)


def test_bad_input_is_refused_not_nan():
    acc = MinibatchCKA()
    with pytest.raises(ValueError, match="at least 4"):
        acc.update(torch.randn(3, 2), torch.randn(3, 2))
    acc.update(torch.ones(6, 2), torch.randn(6, 2))  # a constant representation
    with pytest.raises(ValueError, match="not positive"):
        acc.value()
    with pytest.raises(ValueError, match="unknown kernel"):
        MinibatchCKA("cosine")


def test_time_steps_are_concatenated_along_features():
    spikes = torch.arange(2 * 3 * 4).reshape(2, 3, 4)  # [T, n, f]
    flat = flatten_time(spikes)
    assert flat.shape == (3, 8) and flat[1].tolist() == spikes[:, 1].flatten().tolist()

"""CKA against its defining properties, a direct U-statistic of Song et al. (2012) and
their term-by-term formula (where that formula is stable), and at large offsets and on
(nearly) constant layers, where the term-by-term formula cancels catastrophically."""

from itertools import permutations

import pytest
import torch

from spikebench.analysis.cka import (
    MinibatchCKA,
    UndefinedCKAError,
    batch_slices,
    cka,
    flatten_time,
    hsic1,
    linear_kernel,
)


def hsic_song(k, l):
    """Song et al. (2012), eq. 5, term by term: the reference where no offset is present."""
    n = k.shape[0]
    k = k.clone().fill_diagonal_(0)
    l = l.clone().fill_diagonal_(0)
    ones = torch.ones(n, dtype=k.dtype)
    kl = k @ l
    term = kl.trace() + k.sum() * l.sum() / ((n - 1) * (n - 2)) - 2 / (n - 2) * (ones @ kl @ ones)
    return float(term / (n * (n - 3)))


def binary(n, f, seed, p=0.3):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, f, generator=g, dtype=torch.float64) < p).double()


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
    # the raw (uncentred) Gram matrices give the same HSIC: centring only drops row- and
    # column-constant terms
    assert float(hsic1(x @ x.t(), y @ y.t())) == pytest.approx(float(hsic1(k, l)), rel=1e-10)


@pytest.mark.parametrize("seed", range(3))
def test_stable_form_equals_song_formula_without_offsets(seed):
    x = torch.randn(50, 6, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    y = x[:, :3] ** 2 + binary(50, 4, seed)[:, :3]
    for k, l in ((x @ x.t(), y @ y.t()), (x @ x.t(), x @ x.t())):
        assert float(hsic1(k, l)) == pytest.approx(hsic_song(k, l), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("offset", [1e3, 1e6, 1e9])
def test_large_offsets_change_nothing(offset):
    """Binary features (a layer firing at almost every step, once shifted) and a readout with
    a large bias: CKA is invariant to translations, so the offset must not change it."""
    x, y = binary(300, 40, 0, p=0.9), binary(300, 30, 1)
    y[:, :10] = x[:, :10]  # related representations
    ref = cka(x, y, batch_size=64)
    assert -1 <= ref <= 1 and ref > 0.1
    assert cka(x + offset, y, batch_size=64) == pytest.approx(ref, abs=1e-12)
    assert cka(x + offset, y - offset, batch_size=64) == pytest.approx(ref, abs=1e-12)
    assert cka(x + offset, x + 2 * offset, batch_size=64) == pytest.approx(1.0, abs=1e-12)
    assert cka(x + offset, y, kernel="rbf") == pytest.approx(cka(x, y, kernel="rbf"), abs=1e-9)
    # with offsets in the Gram matrices themselves, the U-centring still cancels them
    k0, l0 = x @ x.t(), y @ y.t()
    xs = x + 1e3
    assert float(hsic1(xs @ xs.t(), l0)) == pytest.approx(float(hsic1(k0, l0)), rel=1e-7)


@pytest.mark.parametrize("seed", range(5))
def test_cka_never_exceeds_one_in_magnitude(seed):
    """Cauchy-Schwarz in the U-centred inner product, per batch and summed over batches."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(97, 5, generator=g, dtype=torch.float64) * 10.0 ** torch.randint(
        -3, 4, (5,), generator=g) + 500.0
    y = torch.randn(97, 3, generator=g, dtype=torch.float64) + x[:, :1] * 1e-3
    for size in (4, 5, 16, 97):
        assert abs(cka(x, y, batch_size=size)) <= 1 + 1e-12
        assert abs(cka(x, -x[:, :2], batch_size=size)) <= 1 + 1e-12


def test_constant_layers_are_undefined_nearly_constant_ones_are_not():
    y = torch.randn(40, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for constant in (torch.zeros(40, 8), torch.ones(40, 8), torch.full((40, 8), 0.1),
                     torch.full((40, 8), 1e6)):  # silent, saturated, any constant value
        with pytest.raises(UndefinedCKAError, match="constant"):
            cka(constant, y, batch_size=16)
        with pytest.raises(UndefinedCKAError):
            cka(y, constant, kernel="rbf")
    nearly = torch.ones(40, 8, dtype=torch.float64)
    nearly[7, 2] = 0.0  # one sample misses one spike
    value = cka(nearly, y)
    assert -1 <= value <= 1
    assert cka(nearly, nearly + 1e6) == pytest.approx(1.0, abs=1e-12)


def test_batches_too_small_for_hsic_join_the_previous_one():
    assert batch_slices(10, 4) == [slice(0, 4), slice(4, 10)]
    assert batch_slices(12, 4) == [slice(0, 4), slice(4, 8), slice(8, 12)]
    assert batch_slices(3, 256) == [slice(0, 3)]
    x = torch.randn(259, 3, dtype=torch.float64)
    assert abs(cka(x, x[:, :2] ** 3, batch_size=256)) <= 1


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
    with pytest.raises(UndefinedCKAError, match="constant"):
        acc.value()
    with pytest.raises(ValueError, match="unknown kernel"):
        MinibatchCKA("cosine")


def test_time_steps_are_concatenated_along_features():
    spikes = torch.arange(2 * 3 * 4).reshape(2, 3, 4)  # [T, n, f]
    flat = flatten_time(spikes)
    assert flat.shape == (3, 8) and flat[1].tolist() == spikes[:, 1].flatten().tolist()

"""Event-sparse input (spikebench.sparse) against the dense path: batches equal the dense
collate, the first layer's CSR products equal dense GEMMs, and a model's outputs and
gradients on an EventBatch equal those on the same frames dense (float64)."""

import numpy as np
import pytest
import torch

from spikebench import native
from spikebench.datasets import SampleData, time_major_loader
from spikebench.learning_rules import BPTT
from spikebench.models import SpikingMLP
from spikebench.neurons import LIFParams
from spikebench.sparse import EventBatch, SampleEvents, dense, event_linear


def frames(n=9, steps=7, shape=(2, 3, 4), density=0.2, seed=0, counts=False):
    g = torch.Generator().manual_seed(seed)
    on = torch.rand(n, steps, *shape, generator=g) < density
    x = on.to(torch.uint8)
    if counts:
        x = x * torch.randint(1, 5, x.shape, generator=g, dtype=torch.uint8)
    x[2] = 0  # a silent sample
    return x


@pytest.mark.parametrize("counts", [False, True])
def test_batches_equal_the_dense_collate(counts):
    x = frames(counts=counts)
    events = SampleEvents.from_frames(x)
    assert events.offsets[-1] == int((x != 0).sum())
    for index in ([0, 1, 2, 3], [8, 2, 5], [2], list(range(9))):
        batch = events.batch(index)
        want = x[index].float().reshape(len(index), 7, -1).transpose(0, 1)
        assert batch.shape == tuple(want.shape)
        assert torch.equal(batch.dense(), want)
        assert torch.equal(batch.transposed().to_dense(), want.reshape(-1, want.shape[-1]).t())


def test_all_silent_batch():
    x = torch.zeros(3, 5, 6, dtype=torch.uint8)
    batch = SampleEvents.from_frames(x).batch([0, 1, 2])
    assert batch.nnz() == 0 and torch.equal(batch.dense(), torch.zeros(5, 3, 6))
    w = torch.randn(4, 6, requires_grad=True)
    event_linear(batch, w).sum().backward()
    assert torch.equal(w.grad, torch.zeros(4, 6))


@pytest.mark.skipif(native.library() is None, reason="no C compiler: no compiled assembly")
@pytest.mark.parametrize("counts", [False, True])
def test_compiled_assembly_builds_the_numpy_paths_arrays(counts):
    """SampleEvents.batch by counting in C: the same CSR rows and transpose, entry for entry,
    as the numpy path (the reference); bad indices still fail as numpy fails."""
    events = SampleEvents.from_frames(frames(n=12, counts=counts))
    for index in ([3, 0, 11, 2, 2, 7], [2], [], list(range(12))[::-1]):
        got = events.batch(index)
        with native.python_loops():
            want = events.batch(index)
        for a, b in [(got.rows, want.rows), (got.transposed(), want.transposed())]:
            for x, y in [(a.crow_indices(), b.crow_indices()), (a.col_indices(), b.col_indices()),
                         (a.values(), b.values())]:
                assert x.dtype == y.dtype and torch.equal(x, y)
    for bad in ([12], [-1, 4]):  # left to the numpy path, which refuses them
        with pytest.raises((IndexError, ValueError)):
            events.batch(bad)


@pytest.mark.parametrize("density", [0.0, 0.2, 1.0])
def test_a_steps_slice_keeps_its_transpose_as_transposed_would_build_it(density):
    """steps_slice cuts the batch's transpose without a sort: the same CSR as building
    the slice's own transpose, the same frames as slicing the dense ones."""
    x = frames(density=density, counts=True)
    batch = SampleEvents.from_frames(x).batch(np.arange(len(x)))
    for start, stop in [(0, 7), (0, 3), (2, 5), (6, 7), (4, 4)]:
        part = batch.steps_slice(start, stop)
        built = EventBatch(part.rows, part.steps, part.batch).transposed()
        got = part.transposed()
        for a, b in [(got.crow_indices(), built.crow_indices()),
                     (got.col_indices(), built.col_indices()), (got.values(), built.values())]:
            assert torch.equal(a, b)
        want = x.float().transpose(0, 1)[start:stop].reshape(stop - start, len(x), 24)
        assert torch.equal(part.dense(), want)
        assert torch.equal(got.to_dense().t().reshape(want.shape), want)


def test_event_linear_equals_the_dense_product():
    x = frames(counts=True).double().reshape(9, 7, -1).transpose(0, 1)
    batch = EventBatch.from_dense(x)
    g = torch.Generator().manual_seed(1)
    w = torch.randn(5, x.shape[-1], generator=g, dtype=torch.float64)
    up = torch.randn(7, 9, 5, generator=g, dtype=torch.float64)
    wa, wb = w.clone().requires_grad_(), w.clone().requires_grad_()
    ya, yb = event_linear(batch, wa), x @ wb.t()
    torch.testing.assert_close(ya, yb, rtol=1e-13, atol=1e-13)
    (ya * up).sum().backward()
    (yb * up).sum().backward()
    torch.testing.assert_close(wa.grad, wb.grad, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("recurrent", [False, True])
def test_model_on_events_equals_dense_input(recurrent):
    torch.manual_seed(3)
    model = SpikingMLP((24, 10, 8, 3), recurrent=recurrent, weight_scale=6.0,
                       params=LIFParams(alpha=0.8, beta=0.9, threshold=0.5, slope=5.0)).double()
    x = frames(n=6, steps=12, shape=(24,), density=0.3)
    y = torch.randint(0, 3, (6,))
    batch = SampleEvents.from_frames(x).batch(range(6))
    grads = []
    for inp in (batch, dense(batch), batch):
        out = BPTT(fast=inp is not batch or len(grads) < 2).backward(model, inp, y)
        grads.append((out.outputs, {n: p.grad.clone() for n, p in model.named_parameters()}))
    (out_s, g_s), (out_d, g_d), (out_r, g_r) = grads  # sparse, dense, reference on sparse
    assert float(out_s.abs().sum()) > 0
    for out, g in ((out_d, g_d), (out_r, g_r)):
        torch.testing.assert_close(out_s, out, rtol=1e-12, atol=1e-12)
        for name in g:
            torch.testing.assert_close(g_s[name], g[name], rtol=1e-10, atol=1e-12, msg=name)


def test_sparse_loader_keeps_the_order_and_the_frames():
    x = frames(n=11, counts=True)
    data = SampleData(x, torch.arange(11) % 10, classes=10, sparse=True)
    a = list(time_major_loader(data, 4, shuffle=True, seed=5))
    b = list(time_major_loader(data, 4, shuffle=True, seed=5, sparse=True))
    assert len(a) == len(b) == 3
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert isinstance(xb, EventBatch)
        assert torch.equal(ya, yb)
        assert torch.equal(xa.reshape(xb.shape), xb.dense())
    dense_data = SampleData(x, torch.arange(11) % 10, classes=10)  # not marked: dense path
    assert not isinstance(next(iter(time_major_loader(dense_data, 4, sparse=True)))[0],
                          EventBatch)
    assert np.isclose(data.events().density(), float((x != 0).float().mean()))

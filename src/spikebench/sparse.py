r"""Event-sparse input: event frames kept as indices from the data set to the first layer.

N-MNIST frames are ~96 % zeros, and the first layer (2312 inputs) holds most of a step's
FLOPs. ``SampleEvents`` holds the nonzero entries of every sample once (built from the
data set's frames when a loader first asks, then cached with the data); a batch of them
is an ``EventBatch``: the time-major frames [T, B, n] as a CSR matrix [T B, n] with rows
(t, b), assembled from the samples' indices (never by converting a dense batch), and its
transpose [n, T B] for the weight gradient. ``event_linear`` computes the first layer's
input current W x[t] for all T steps as one CSR x dense product, and in its backward
dL/dW = (X^T dL/dcurrent)^T as a second one. Dense input (speech features, images) keeps
the dense GEMM; ``dense(x)`` turns either into a dense [T, B, n] tensor (the reference
path, the online rules, the analyses).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from spikebench import native

# torch marks CSR tensors as beta at every construction; the products used here are stable
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")


class SampleEvents:
    """The nonzero entries of N samples [N, T, ...]: sample s owns entries
    offsets[s]:offsets[s+1] of ``t`` (time step), ``f`` (flat feature index) and ``v``
    (value), sorted by (t, f)."""

    def __init__(self, offsets: np.ndarray, t: np.ndarray, f: np.ndarray, v: np.ndarray,
                 steps: int, features: int) -> None:
        self.offsets, self.t, self.f, self.v = offsets, t, f, v
        self.steps, self.features = steps, features

    @classmethod
    def from_frames(cls, x: torch.Tensor, chunk: int = 256) -> SampleEvents:
        """Indices of the nonzero entries of sample-major frames x [N, T, ...]."""
        n, steps = x.shape[0], x.shape[1]
        features = int(np.prod(x.shape[2:])) if x.dim() > 2 else 1
        counts, ts, fs, vs = [], [], [], []
        for start in range(0, n, chunk):
            part = x[start:start + chunk].reshape(-1, steps, features).numpy()
            s, t, f = np.nonzero(part)  # C order: sorted by (sample, t, f)
            counts.append(np.bincount(s, minlength=len(part)))
            ts.append(t.astype(np.int32))
            fs.append(f.astype(np.int32))
            vs.append(part[s, t, f].astype(np.float32))
        offsets = np.zeros(n + 1, dtype=np.int64)
        if n:
            np.cumsum(np.concatenate(counts), out=offsets[1:])
        cat = (lambda a, dt: np.concatenate(a) if a else np.zeros(0, dt))  # noqa: E731
        return cls(offsets, cat(ts, np.int32), cat(fs, np.int32), cat(vs, np.float32),
                   steps, features)

    def density(self) -> float:
        return len(self.v) / max(1, (len(self.offsets) - 1) * self.steps * self.features)

    def batch(self, index: torch.Tensor | list[int] | np.ndarray) -> EventBatch:
        """The time-major batch of the samples ``index``, with its transpose. No sort of
        the rows: each row (t, b) is one contiguous run of sample b's entries, so the
        time-major order is a permutation of those runs (a counting sort); the transpose
        is a stable radix sort by feature."""
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        batch, steps, features = len(index), self.steps, self.features
        built = (native.event_batch(self.offsets, self.t, self.f, self.v, index, steps,
                                    features) if native.library() is not None else None)
        if built is not None:  # the compiled counting sort: the same arrays as below
            (crow, col, val), (crow_t, row_t, val_t) = built
            return EventBatch(_csr(crow, col, val, (steps * batch, features)), steps, batch,
                              _csr(crow_t, row_t, val_t, (features, steps * batch)))
        start, lengths = self.offsets[index], self.offsets[index + 1] - self.offsets[index]
        total = int(lengths.sum())
        first = np.cumsum(lengths) - lengths  # where each sample's entries start in `take`
        take = np.repeat(start - first, lengths) + np.arange(total)  # sample-major
        b = np.repeat(np.arange(batch), lengths)
        runs = np.bincount(b * steps + self.t[take], minlength=batch * steps)  # [B, T]
        src = (np.cumsum(runs) - runs).reshape(batch, steps).T.reshape(-1)  # run starts
        runs_tm = runs.reshape(batch, steps).T.reshape(-1)  # (t, b) order
        dst = np.cumsum(runs_tm) - runs_tm
        take = take[np.repeat(src - dst, runs_tm) + np.arange(total)]  # time-major
        col, val = self.f[take].astype(np.int64), self.v[take]
        crow = np.zeros(steps * batch + 1, dtype=np.int64)
        np.cumsum(runs_tm, out=crow[1:])
        key = col.astype(np.int16 if features <= np.iinfo(np.int16).max else np.int32)
        order = np.argsort(key, kind="stable")  # rows stay in order within a feature
        row = np.repeat(np.arange(steps * batch), runs_tm)
        crow_t = np.zeros(features + 1, dtype=np.int64)
        np.cumsum(np.bincount(col, minlength=features), out=crow_t[1:])
        rows = _csr(crow, col, val, (steps * batch, features))
        rows_t = _csr(crow_t, row[order], val[order], (features, steps * batch))
        return EventBatch(rows, steps, batch, rows_t)


def _row_ids(crow: torch.Tensor) -> torch.Tensor:
    """The row of every entry of a CSR with row pointers ``crow``."""
    return torch.repeat_interleave(torch.arange(len(crow) - 1, device=crow.device), crow.diff())


def _csr(crow: np.ndarray, col: np.ndarray, val: np.ndarray, size) -> torch.Tensor:
    return torch.sparse_csr_tensor(torch.from_numpy(crow), torch.from_numpy(col),
                                   torch.from_numpy(np.ascontiguousarray(val)), size=size,
                                   device="cpu", check_invariants=False)


class EventBatch:
    """Time-major sparse frames [T, B, n]: ``rows`` is CSR [T B, n] with row t B + b."""

    def __init__(self, rows: torch.Tensor, steps: int, batch: int,
                 rows_t: torch.Tensor | None = None) -> None:
        self.rows, self.steps, self.batch = rows, steps, batch
        self._rows_t = rows_t
        self._before_t: torch.Tensor | None = None  # [n, T + 1] (steps_slice)
        self._entries: tuple[torch.Tensor, torch.Tensor] | None = None  # step, sample
        self._parent: tuple[EventBatch, int, int] | None = None  # (batch, start, stop)

    @classmethod
    def from_dense(cls, x: torch.Tensor) -> EventBatch:
        """From dense time-major frames [T, B, ...] (tests and benchmarks; loaders build
        batches from ``SampleEvents``)."""
        steps, batch = x.shape[:2]
        rows = x.reshape(steps * batch, -1).to_sparse_csr()
        return cls(rows, steps, batch)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.steps, self.batch, self.rows.shape[1])

    @property
    def dtype(self) -> torch.dtype:
        return self.rows.dtype

    @property
    def device(self) -> torch.device:
        return self.rows.device

    def nnz(self) -> int:
        return int(self.rows.values().numel())

    def dense(self) -> torch.Tensor:
        return self.rows.to_dense().view(self.shape)

    def transposed(self) -> torch.Tensor:
        """CSR [n, T B] (for dL/dW), built once per batch; for a ``steps_slice`` of a batch
        whose transpose is built, cut from that one (``_cut_transpose``: no sort)."""
        if self._rows_t is None and self._parent is not None \
                and self._parent[0]._rows_t is not None:
            parent, start, stop = self._parent
            self._rows_t = parent._cut_transpose(start, stop)
        if self._rows_t is None:
            step, sample, col, _ = self.entries()
            row = step * self.batch + sample
            order = torch.argsort(col, stable=True)  # rows stay in order within a column
            features = self.rows.shape[1]
            crow_t = torch.zeros(features + 1, dtype=torch.int64, device=col.device)
            crow_t[1:] = torch.cumsum(torch.bincount(col, minlength=features), 0)
            self._rows_t = torch.sparse_csr_tensor(
                crow_t, row[order], self.rows.values()[order],
                size=(features, self.rows.shape[0]), device=col.device,
                check_invariants=False)
        return self._rows_t

    def steps_slice(self, start: int, stop: int) -> EventBatch:
        """Steps start:stop (a view of the same entries: rows are time-major); its
        transpose, when asked for, is cut from this batch's (``transposed``)."""
        crow = self.rows.crow_indices()
        lo, hi = start * self.batch, stop * self.batch
        a, b = int(crow[lo]), int(crow[hi])
        rows = torch.sparse_csr_tensor(
            crow[lo:hi + 1] - a, self.rows.col_indices()[a:b], self.rows.values()[a:b],
            size=(hi - lo, self.rows.shape[1]), device=crow.device, check_invariants=False)
        part = EventBatch(rows, stop - start, self.batch)
        part._parent = (self, start, stop)
        return part

    def _cut_transpose(self, start: int, stop: int) -> torch.Tensor:
        """The transpose of steps start:stop from this batch's: within each of its rows the
        columns t B + b ascend, so the slice keeps a contiguous run of every row, in the
        order ``transposed()`` would build (no sort; where each run starts comes from
        every row's entry count per step, counted once per batch)."""
        crow_t, col_t = self._rows_t.crow_indices(), self._rows_t.col_indices()
        lo, hi = start * self.batch, stop * self.batch
        if self._before_t is None:  # per input row: its entries before each step
            counts = torch.bincount(_row_ids(crow_t) * self.steps + col_t // self.batch,
                                    minlength=(len(crow_t) - 1) * self.steps)
            self._before_t = torch.zeros(len(crow_t) - 1, self.steps + 1,
                                         dtype=torch.int64, device=col_t.device)
            torch.cumsum(counts.view(-1, self.steps), 1, out=self._before_t[:, 1:])
        first = crow_t[:-1] + self._before_t[:, start]
        counts = self._before_t[:, stop] - self._before_t[:, start]
        crow_s = torch.zeros_like(crow_t)
        torch.cumsum(counts, 0, out=crow_s[1:])
        take = (torch.repeat_interleave(first - crow_s[:-1], counts)
                + torch.arange(int(crow_s[-1]), device=col_t.device))
        return torch.sparse_csr_tensor(  # index_select: a fraction of [take]'s time
            crow_s, col_t.index_select(0, take) - lo, self._rows_t.values().index_select(0, take),
            size=(self._rows_t.shape[0], hi - lo), device=crow_t.device, check_invariants=False)

    def entries(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(step, sample, feature, value) of every entry (computed once per batch: the
        online rules' traces ask for them several times a chunk)."""
        if self._entries is None:
            row = _row_ids(self.rows.crow_indices())
            self._entries = (row // self.batch, row % self.batch)
        return (*self._entries, self.rows.col_indices(), self.rows.values())

    def to(self, dtype: torch.dtype | None = None, device=None) -> EventBatch:
        if (dtype is None or dtype == self.dtype) and (device is None
                                                       or torch.device(device) == self.device):
            return self

        def move(m):
            return m.to(dtype=dtype or self.dtype, device=device or self.device)

        return EventBatch(move(self.rows), self.steps, self.batch,
                          move(self._rows_t) if self._rows_t is not None else None)

    def __repr__(self) -> str:
        return f"EventBatch(shape={self.shape}, nnz={self.nnz()}, dtype={self.dtype})"


class _EventLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight: torch.Tensor, x: EventBatch) -> torch.Tensor:
        ctx.x = x
        return (x.rows @ weight.t()).view(x.steps, x.batch, -1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x = ctx.x
        return weight_product(x, grad.reshape(x.steps * x.batch, -1)), None


def weight_product(x: torch.Tensor | EventBatch, grad: torch.Tensor) -> torch.Tensor:
    """sum_t grad[t]^T x[t], [n_out, n_in], for x [T, B, n_in] (an EventBatch: one CSR x
    dense product with its transpose) and grad [T B, n_out]: dL/dW of ``sequence_linear``."""
    if isinstance(x, EventBatch):
        return (x.transposed() @ grad).t()
    return grad.t() @ x.reshape(-1, x.shape[-1])


def event_linear(x: EventBatch, weight: torch.Tensor) -> torch.Tensor:
    """W x[t] for every step, [T, B, n_out]: one CSR x dense product forward, one backward
    (differentiable in ``weight``; the input is data)."""
    return _EventLinear.apply(weight, x)


def sequence_linear(x: torch.Tensor | EventBatch, weight: torch.Tensor) -> torch.Tensor:
    """W x[t] for all T steps, [T, B, n_out], for x [T, B, n_in]: one CSR x dense product
    for an EventBatch (``event_linear``), else one 2-D GEMM (a 3-D matmul's weight gradient
    is slower)."""
    if isinstance(x, EventBatch):
        return event_linear(x, weight)
    steps, batch = x.shape[:2]
    return (x.reshape(steps * batch, -1) @ weight.t()).view(steps, batch, -1)


def dense(x: torch.Tensor | EventBatch) -> torch.Tensor:
    """A dense [T, B, ...] tensor for either kind of batch."""
    return x.dense() if isinstance(x, EventBatch) else x

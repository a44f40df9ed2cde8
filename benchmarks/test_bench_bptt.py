"""BPTT training step: ours beside the same network built from norse's LIF cells, in one
run, before and after (our dense fast path and the unrolled reference path are kept).

    make bench      (or: pytest benchmarks --benchmark-only)

Workload: N-MNIST sizes 2312-120-84-10, T = 100, batch 128, FF and REC. One "step" =
forward + backward (gradients filled). ``SPIKEBENCH_BENCH_DEVICE=cuda`` runs every step on
the GPU (``make bench-gpu``, benchmarks/gpu.py), each step waiting for its kernels.

- ``bptt-step-{ff,rec}-events``: binary input of density 0.04 (as the event frames). ``ours``
  takes it as the loaders give it, an ``EventBatch`` (CSR first layer), with the compiled
  time loops (spikebench.native); ``ours-python-loops`` the same with the Python loops they
  replaced (before / after); ``ours-dense`` the same frames as a dense tensor;
  ``ours-reference`` autograd through the unrolled step. The peers, each built as its users
  build it, from dense frames: ``norse`` (LIFCell / LIFRecurrentCell, step by step),
  ``snntorch`` (Synaptic / RSynaptic, the same two-state neuron, step by step) and
  ``spikingjelly`` (multi-step LIFNode over [T, B, n], its torch backend; FF only: it has no
  recurrent LIF cell).
- ``bptt-step-ff-dense-input``: real-valued dense input (features, images): ours vs norse,
  and ``gemm``, one [T B, 2312] x [2312, 120] GEMM, the machine's FLOP/s for this shape.
- ``event-batch-T100-B128``: building a batch, from the samples' indices (``SampleEvents``:
  the CSR rows and their transpose) vs the dense collate (stack + transpose of uint8).

``extra_info["flops"]`` holds the matmul FLOPs of the dense step; FLOP/s = flops / time.
"""

import math
import os

import pytest
import snntorch as snn
import torch
from norse.torch import LIFCell, LIFRecurrentCell
from norse.torch.functional.lif import LIFParameters
from spikingjelly.activation_based import functional as sj_functional
from spikingjelly.activation_based import neuron as sj_neuron

from spikebench import native
from spikebench.learning_rules import BPTT, objective
from spikebench.models import SpikingMLP
from spikebench.neurons import LIFParams
from spikebench.sparse import SampleEvents

SIZES = (2312, 120, 84, 10)
T, B = 100, 128
# where the steps run: benchmarks/gpu.py sets cuda (``make bench-gpu``); the default, cpu
DEVICE = torch.device(os.environ.get("SPIKEBENCH_BENCH_DEVICE", "cpu"))


def sync() -> None:
    """Wait for the device (CUDA runs asynchronously: a step's time includes its kernels)."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def frames():
    """Sample-major binary frames [B, T, 2312] as a data set holds them (uint8)."""
    g = torch.Generator().manual_seed(0)
    return (torch.rand(B, T, SIZES[0], generator=g) < 0.04).to(torch.uint8)


def workload(kind: str = "dense"):
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 10, (B,), generator=g).to(DEVICE)
    if kind == "real":  # dense real-valued input
        return torch.rand(T, B, SIZES[0], generator=g).to(DEVICE), y
    if kind == "events":
        return SampleEvents.from_frames(frames()).batch(range(B)).to(device=DEVICE), y
    return frames().float().transpose(0, 1).contiguous().to(DEVICE), y


def step_flops(recurrent: bool) -> int:
    """Matmul FLOPs of one BPTT step: forward + grad-weight (+ grad-input except layer 1)."""
    total = 0
    for k, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:], strict=True)):
        n_mm = 2 if k == 0 else 3
        total += n_mm * 2 * B * a * b
        if recurrent and k < len(SIZES) - 2:
            total += 3 * 2 * B * b * b
    return T * total


class NorseMLP(torch.nn.Module):
    """The same network from norse's cells (reset to zero, Euler constants), same readout."""

    def __init__(self, recurrent: bool):
        super().__init__()
        p = LIFParameters(tau_syn_inv=torch.as_tensor(200.0), tau_mem_inv=torch.as_tensor(100.0),
                          v_th=torch.as_tensor(0.1))
        self.recurrent = recurrent
        hidden = list(zip(SIZES[:-2], SIZES[1:-1], strict=True))
        if recurrent:
            self.cells = torch.nn.ModuleList(LIFRecurrentCell(a, b, p=p) for a, b in hidden)
        else:
            self.linears = torch.nn.ModuleList(torch.nn.Linear(a, b, bias=False) for a, b in hidden)
            self.cells = torch.nn.ModuleList(LIFCell(p=p) for _ in hidden)
        self.readout = torch.nn.Linear(SIZES[-2], SIZES[-1])

    def forward(self, x):
        states = [None] * len(self.cells)
        y = torch.zeros(x.shape[1], SIZES[-1], device=x.device)
        out = []
        for x_t in x:
            h = x_t
            for k, cell in enumerate(self.cells):
                if not self.recurrent:
                    h = self.linears[k](h)
                h, states[k] = cell(h, states[k])
            y = 0.9 * y + self.readout(h)
            out.append(y)
        return torch.stack(out)


def ours(recurrent, kind="events", fast=True, compiled=True):
    params = LIFParams.from_time_constants(5e-3, 1e-2, 1e-3, threshold=0.1, reset="zero")
    model = SpikingMLP(SIZES, recurrent=recurrent, params=params).to(DEVICE)
    rule = BPTT(fast=fast)
    x, y = workload(kind)

    def step():  # events: as a loader gives them
        rule.backward(model, x, y)
        sync()

    if compiled:
        return step

    def python_loops():
        with native.python_loops():
            step()

    return python_loops


class SnnTorchMLP(torch.nn.Module):
    """The same network from snnTorch's two-state (synaptic current + membrane) neurons."""

    def __init__(self, recurrent: bool):
        super().__init__()
        alpha, beta = math.exp(-1e-3 / 5e-3), math.exp(-1e-3 / 1e-2)
        hidden = list(zip(SIZES[:-2], SIZES[1:-1], strict=True))
        self.linears = torch.nn.ModuleList(torch.nn.Linear(a, b, bias=False) for a, b in hidden)
        if recurrent:
            self.cells = torch.nn.ModuleList(
                snn.RSynaptic(alpha, beta, linear_features=b, threshold=0.1,
                              reset_mechanism="zero") for _, b in hidden)
        else:
            self.cells = torch.nn.ModuleList(
                snn.Synaptic(alpha, beta, threshold=0.1, reset_mechanism="zero")
                for _ in hidden)
        self.recurrent = recurrent
        self.readout = torch.nn.Linear(SIZES[-2], SIZES[-1])

    def forward(self, x):
        if self.recurrent:
            states = [cell.init_rsynaptic() for cell in self.cells]
        else:
            states = [cell.init_synaptic() for cell in self.cells]
        y, out = torch.zeros(x.shape[1], SIZES[-1], device=x.device), []
        for x_t in x:
            h = x_t
            for k, cell in enumerate(self.cells):
                if self.recurrent:
                    spk, syn, mem = cell(self.linears[k](h), *states[k])
                    states[k] = (spk, syn, mem)
                else:
                    spk, syn, mem = cell(self.linears[k](h), *states[k])
                    states[k] = (syn, mem)
                h = spk
            y = 0.9 * y + self.readout(h)
            out.append(y)
        return torch.stack(out)


class SpikingJellyMLP(torch.nn.Module):
    """The same layer sizes from SpikingJelly's multi-step LIFNode (one state: its LIF has
    no synaptic current), the whole [T, B, n] sequence per layer."""

    def __init__(self):
        super().__init__()
        hidden = list(zip(SIZES[:-2], SIZES[1:-1], strict=True))
        self.linears = torch.nn.ModuleList(torch.nn.Linear(a, b, bias=False) for a, b in hidden)
        self.nodes = torch.nn.ModuleList(
            sj_neuron.LIFNode(tau=10.0, v_threshold=0.1, step_mode="m") for _ in hidden)
        self.readout = torch.nn.Linear(SIZES[-2], SIZES[-1])

    def forward(self, x):
        sj_functional.reset_net(self)
        h = x
        for linear, node in zip(self.linears, self.nodes, strict=True):
            h = node(linear(h))
        drive = self.readout(h)
        y, out = torch.zeros_like(drive[0]), []
        for d in drive:
            y = 0.9 * y + d
            out.append(y)
        return torch.stack(out)


PEERS = {"norse": NorseMLP, "snntorch": SnnTorchMLP,
         "spikingjelly": lambda recurrent: SpikingJellyMLP()}


def peer(name, recurrent, kind="dense"):
    model = PEERS[name](recurrent).to(DEVICE)
    x, y = workload(kind)

    def step():
        model.zero_grad(set_to_none=True)
        objective(model(x), y).backward()
        sync()

    return step


def gemm():
    """One whole-sequence GEMM of the first layer's shape: this machine's FLOP/s for it."""
    g = torch.Generator().manual_seed(0)
    a, w = torch.rand(T * B, SIZES[0], generator=g), torch.rand(SIZES[0], SIZES[1], generator=g)
    a, w = a.to(DEVICE), w.to(DEVICE)

    def product():
        a @ w
        sync()

    return product


IMPLS = {
    "ours": lambda rec: ours(rec, "events"),
    "ours-python-loops": lambda rec: ours(rec, "events", compiled=False),
    "ours-dense": lambda rec: ours(rec, "dense"),
    "ours-reference": lambda rec: ours(rec, "dense", fast=False),
    "norse": lambda rec: peer("norse", rec),
    "snntorch": lambda rec: peer("snntorch", rec),
    "spikingjelly": lambda rec: peer("spikingjelly", rec),
}


@pytest.mark.parametrize("arch", ["ff", "rec"])
@pytest.mark.parametrize("impl", list(IMPLS))
def test_bptt_step(benchmark, impl, arch):
    recurrent = arch == "rec"
    if impl == "spikingjelly" and recurrent:
        pytest.skip("SpikingJelly has no recurrent LIF cell")
    benchmark.group = f"bptt-step-{arch}-events"
    benchmark.extra_info["flops"] = step_flops(recurrent)
    benchmark.extra_info["peer"] = impl in PEERS
    fn = IMPLS[impl](recurrent)
    fn()  # warm-up
    benchmark.pedantic(fn, rounds=7, iterations=1)


@pytest.mark.parametrize("impl", ["ours", "norse", "gemm"])
def test_bptt_step_dense_input(benchmark, impl):
    benchmark.group = "bptt-step-ff-dense-input"
    if impl == "gemm":
        benchmark.extra_info["flops"] = 2 * T * B * SIZES[0] * SIZES[1]
        fn = gemm()
    else:
        benchmark.extra_info["flops"] = step_flops(False)
        fn = ours(False, "real") if impl == "ours" else peer("norse", False, "real")
        benchmark.extra_info["peer"] = impl == "norse"
    fn()
    benchmark.pedantic(fn, rounds=7, iterations=1)


@pytest.mark.parametrize("impl", ["events", "dense-collate"])
def test_event_batch(benchmark, impl):
    benchmark.group = f"event-batch-T{T}-B{B}"
    x = frames()
    if impl == "events":
        events = SampleEvents.from_frames(x)
        fn = lambda: events.batch(range(B))  # noqa: E731
    else:
        fn = lambda: x.float().transpose(0, 1).contiguous()  # noqa: E731
    benchmark.pedantic(fn, rounds=5, iterations=1, warmup_rounds=1)

"""BPTT training step: ours beside the same network built from norse's LIF cells, and a
plain matmul workload of the same shapes, in one run.

    make bench      (or: pytest benchmarks --benchmark-only)

Workload: N-MNIST sizes 2312-120-84-10, T = 100, batch 128, binary input of density 0.04
(as the event frames), FF and REC. One "step" = forward + backward (gradients filled).
``extra_info`` holds the matmul FLOPs of the step; FLOP/s = flops / mean time.
"""

import pytest
import torch
from norse.torch import LIFCell, LIFRecurrentCell
from norse.torch.functional.lif import LIFParameters

from spikebench.learning_rules import BPTT, objective
from spikebench.models import SpikingMLP
from spikebench.neurons import LIFParams

SIZES = (2312, 120, 84, 10)
T, B = 100, 128


def workload():
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(T, B, SIZES[0], generator=g) < 0.04).float()
    y = torch.randint(0, 10, (B,), generator=g)
    return x, y


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
        y = torch.zeros(x.shape[1], SIZES[-1])
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


def ours(recurrent, fast=True):
    params = LIFParams.from_time_constants(5e-3, 1e-2, 1e-3, threshold=0.1, reset="zero")
    model = SpikingMLP(SIZES, recurrent=recurrent, params=params)
    rule = BPTT(fast=fast)
    x, y = workload()
    return lambda: rule.backward(model, x, y)


def ours_reference(recurrent):
    """Autograd through the unrolled step (the reference path the fast one is tested on)."""
    return ours(recurrent, fast=False)


def norse(recurrent):
    model = NorseMLP(recurrent)
    x, y = workload()

    def step():
        model.zero_grad(set_to_none=True)
        objective(model(x), y).backward()

    return step


def matmul(recurrent):
    """The step's matmuls alone, same shapes, no neuron dynamics and no autograd."""
    g = torch.Generator().manual_seed(0)
    mats = []
    for k, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:], strict=True)):
        mats.append((torch.rand(B, a, generator=g), torch.rand(a, b, generator=g),
                     torch.rand(B, b, generator=g), k > 0))
        if recurrent and k < len(SIZES) - 2:
            mats.append((torch.rand(B, b, generator=g), torch.rand(b, b, generator=g),
                         torch.rand(B, b, generator=g), True))

    def step():
        for _ in range(T):
            for inp, w, grad_out, need_input_grad in mats:
                inp @ w  # forward
                inp.t() @ grad_out  # grad of the weight
                if need_input_grad:
                    grad_out @ w.t()  # grad of the input

    return step


@pytest.mark.parametrize("arch", ["ff", "rec"])
@pytest.mark.parametrize("impl", ["ours", "ours-reference", "norse", "matmul"])
def test_bptt_step(benchmark, impl, arch):
    recurrent = arch == "rec"
    benchmark.group = f"bptt-step-{arch}-T{T}-B{B}"
    benchmark.extra_info["flops"] = step_flops(recurrent)
    fn = {"ours": ours, "ours-reference": ours_reference, "norse": norse,
          "matmul": matmul}[impl](recurrent)
    fn()  # warm-up
    benchmark.pedantic(fn, rounds=5, iterations=1)

"""ParaLIF (parallel in time) against the sequential LIF, in one run: forward + backward of
one layer (n -> n neurons, batch 32) at T = 100, 1000, 5000, n = 128 and 1024, and the
dynamics alone (the input current given).

    pytest benchmarks/test_bench_paralif.py --benchmark-only

``paralif-fft`` and ``paralif-chunked`` are the two membrane methods, ``paralif`` the
default (``membrane="auto"``: chunked from T = 512 on); ``lif`` is our LIF layer (one GEMM,
the fused scan: LIFLayer.forward).
"""

import pytest
import torch

from spikebench.neurons import LIFLayer, LIFParams, ParaLIFLayer, ParaLIFParams
from spikebench.neurons.lif_scan import lif_scan
from spikebench.neurons.paralif import parallel_membrane

BATCH = 32
KINDS = {"paralif": "auto", "paralif-fft": "fft", "paralif-chunked": "chunked", "lif": None}


def make(kind: str, n: int):
    if kind != "lif":
        return ParaLIFLayer(n, n, params=ParaLIFParams(spike_fn="T", threshold=0.05,
                                                        membrane=KINDS[kind]))
    return LIFLayer(n, n, params=LIFParams(threshold=0.5))


def rounds(n, steps):
    return 1 if steps * n >= 5_000_000 else 3


@pytest.mark.parametrize("steps", [100, 1000, 5000])
@pytest.mark.parametrize("n", [128, 1024])
@pytest.mark.parametrize("kind", list(KINDS))
def test_forward_backward(benchmark, kind, n, steps):
    benchmark.group = f"neuron-n{n}-T{steps}"
    torch.manual_seed(0)
    layer = make(kind, n)
    x = (torch.rand(steps, BATCH, n) < 0.1).float()

    def step():
        layer.zero_grad(set_to_none=True)
        layer(x).sum().backward()

    step()  # warm-up
    benchmark.pedantic(step, rounds=rounds(n, steps), iterations=1)


@pytest.mark.parametrize("n", [128, 1024])
@pytest.mark.parametrize("kind", ["paralif-fft", "paralif-chunked", "lif"])
def test_dynamics_alone(benchmark, kind, n):
    """The membrane (ParaLIF) or the fused scan (LIF) from a given current, T = 1000."""
    steps = 1000
    benchmark.group = f"dynamics-n{n}-T{steps}"
    torch.manual_seed(0)
    current = (torch.randn(steps, BATCH, n) * 0.3).requires_grad_()
    decays = torch.tensor([[1.4], [2.2]]).expand(2, n).clone().requires_grad_()
    p = LIFParams(threshold=0.5)

    def step():
        current.grad = decays.grad = None
        if kind == "lif":
            out = lif_scan(current, p)
        else:
            out = parallel_membrane(current, torch.sigmoid(decays[0]), torch.sigmoid(decays[1]),
                                    KINDS[kind])
        out.sum().backward()

    step()
    benchmark.pedantic(step, rounds=rounds(n, steps), iterations=1)

"""ParaLIF (parallel, FFT) against the sequential LIF: forward + backward of one layer
(n -> n neurons, batch 32) at T = 100, 1000, 5000, n = 128 and 1024, in one run.

    pytest benchmarks/test_bench_paralif.py --benchmark-only
"""

import pytest
import torch

from spikebench.neurons import LIFLayer, LIFParams, ParaLIFLayer, ParaLIFParams

BATCH = 32


def make(kind: str, n: int):
    if kind == "paralif":
        return ParaLIFLayer(n, n, params=ParaLIFParams(spike_fn="T", threshold=0.05))
    return LIFLayer(n, n, params=LIFParams(threshold=0.5))


@pytest.mark.parametrize("steps", [100, 1000, 5000])
@pytest.mark.parametrize("n", [128, 1024])
@pytest.mark.parametrize("kind", ["paralif", "lif"])
def test_forward_backward(benchmark, kind, n, steps):
    benchmark.group = f"neuron-n{n}-T{steps}"
    torch.manual_seed(0)
    layer = make(kind, n)
    x = (torch.rand(steps, BATCH, n) < 0.1).float()

    def step():
        layer.zero_grad(set_to_none=True)
        layer(x).sum().backward()

    step()  # warm-up
    benchmark.pedantic(step, rounds=1 if steps * n >= 5_000_000 else 3, iterations=1)

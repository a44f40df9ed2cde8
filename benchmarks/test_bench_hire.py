"""HIRE-SNN's "no additional training time" and AGC's fine-tuning cost, in one run: one
training batch (64 Fashion-MNIST-sized images, 28x28) of the compress-robust suite's conv SNN
(``vgg-small``, LIF, direct input) at T = 2, 4, 8, for

- ``standard``: BPTT on cross-entropy, one optimizer step (the peer every other row is
  compared with: "speed vs peer" in ``summarize.py``);
- ``hire-free``: HIRE-SNN's 2 periods, the noise from each period's own backward pass (the
  suite's default);
- ``hire-updated``: the same with one more pass per period for the input gradient with the
  updated weights (the paper's figure caption);
- ``agc``: AGC fine-tuning at 10x (CE + attention transfer against a teacher, masks
  re-applied after the step).

    pytest benchmarks/test_bench_hire.py --benchmark-only --benchmark-json=hire.json
    python benchmarks/summarize.py hire.json
"""

import pytest
import torch

from spikebench.models import ConvNet
from spikebench.neurons import DLIFParams
from spikebench.training.hire import HireSchedule, hire_step
from spikebench.training.prune import Pruner, guided_loss, layer_densities, prunable

BATCH = 64
IMPLS = ["standard", "hire-free", "hire-updated", "agc"]


def net(steps: int) -> ConvNet:
    params = DLIFParams(leak=0.99, reset="zero", dynamic=False, steps=steps)
    return ConvNet("vgg-small", 1, 28, 10, params, steps=steps)


def make_step(impl: str, steps: int):
    torch.manual_seed(0)
    model = net(steps)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.rand(BATCH, 1, 28, 28), torch.randint(0, 10, (BATCH,))
    if impl.startswith("hire"):
        schedule = HireSchedule(2, 0.05, impl.split("-")[1])
        return lambda: hire_step(model, opt.step, x, y, schedule)
    if impl == "agc":
        teacher = net(steps).eval()
        sizes = [m.weight.numel() for m in prunable(model)]
        pruner = Pruner(model, layer_densities([1.0] * len(sizes), sizes, 0.1))

        def agc():
            opt.zero_grad(set_to_none=True)
            guided_loss(model, teacher, x, y, 10.0)[0].backward()
            opt.step()
            pruner.apply()

        return agc

    def standard():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    return standard


@pytest.mark.parametrize("steps", [2, 4, 8])
@pytest.mark.parametrize("impl", IMPLS)
def test_training_batch(benchmark, impl, steps):
    benchmark.group = f"conv-snn-train-batch-T{steps}"
    benchmark.extra_info["peer"] = impl == "standard"
    step = make_step(impl, steps)
    step()  # warm-up
    benchmark.pedantic(step, rounds=15, iterations=1)

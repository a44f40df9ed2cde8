"""Step-time ratios on a noisy machine: the rules' training steps in turns, best of N each.

    python benchmarks/interleaved.py bptt,fptt,eprop,decolle 300 ff [--rounds 12]

The N-MNIST net 2312-120-84-10, batch 64, event input of density 0.04 at T steps (the
workload of test_bench_rules.py::test_step_time). pytest-benchmark times one rule after the
other, so a spell of load on a shared VM lands on some rules and not others; alternating
them round by round puts each rule under the same conditions. Prints each rule's best time
(ms) and its ratio to the first rule's.
"""

import argparse
import time

import torch

from spikebench.learning_rules import make_rule
from spikebench.models import preset
from spikebench.sparse import SampleEvents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rules", help="comma-separated rule names; the first is the reference")
    parser.add_argument("steps", type=int, help="time steps T")
    parser.add_argument("arch", choices=["ff", "rec"])
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = preset("nmnist", recurrent=args.arch == "rec", weight_scale=3.0)
    frames = (torch.rand(64, args.steps, 2312) < 0.04).to(torch.uint8)
    x = SampleEvents.from_frames(frames).batch(range(64))
    y = torch.randint(0, 10, (64,))
    rules = {name: make_rule(name) for name in args.rules.split(",")}
    for rule in rules.values():
        rule.prepare(model)
        rule.backward(model, x.steps_slice(0, 5), y)  # warm-up
    best = dict.fromkeys(rules, float("inf"))
    for _ in range(args.rounds):
        for name, rule in rules.items():
            start = time.perf_counter()
            rule.backward(model, x, y)
            best[name] = min(best[name], time.perf_counter() - start)
    ref = best[next(iter(rules))]
    for name, seconds in best.items():
        print(f"{args.arch} T={args.steps} {name}: {1e3 * seconds:.1f} ms, "
              f"{seconds / ref:.2f}x")


if __name__ == "__main__":
    main()

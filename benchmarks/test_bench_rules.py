"""Memory and speed of one training step for each learning rule (FF and REC, N-MNIST sizes
2312-120-84-10, batch 64).

    pytest benchmarks/test_bench_rules.py --benchmark-only --benchmark-json=rules.json
    python benchmarks/summarize.py rules.json

- ``test_step_memory``: peak resident memory of one step, measured in a fresh subprocess
  as the peak resident size (VmHWM, reset just before the step through
  /proc/self/clear_refs) minus the resident size just before it, at T = 100, 300, 1000.
  The input (an EventBatch of binary frames, as the loaders give it) is built before, so
  the figure is the rule's own memory, not the data's. e-prop and DECOLLE keep no history
  (flat in T once T exceeds their chunk of K = 100 steps); BPTT stores the unrolled graph
  (linear in T). ``extra_info["peak_mb"]``.
- ``test_step_time``: wall time of one step at T = 100 and 300 (event input of density
  0.04, an EventBatch as the loaders give it). e-prop and DECOLLE chunked (as shipped;
  e-prop's ``carry="auto"`` replays at these T) beside e-prop with the online carried trace
  (``eprop-trace``) and both rules' per-step reference (chunk 1, the algorithms before
  chunking). The rest of the locality spectrum (truncated BPTT, FPTT, OSTL, OTTT, SLTT,
  DRTP) as shipped; ``python benchmarks/summarize.py`` prints each step's ratio to BPTT's.
"""

import json
import os
import subprocess
import sys

import pytest
import torch

from spikebench.learning_rules import make_rule
from spikebench.models import preset
from spikebench.sparse import SampleEvents

# name -> (rule, options): e-prop as shipped (chunked traces) beside its per-step reference
VARIANTS = {"bptt": ("bptt", {}), "eprop": ("eprop", {}),
            "eprop-trace": ("eprop", {"carry": "trace"}),
            "eprop-perstep": ("eprop", {"chunk": 1}), "decolle": ("decolle", {}),
            "decolle-perstep": ("decolle", {"chunk": 1}),
            # the rest of the locality spectrum, as shipped (issue 28)
            "tbptt": ("tbptt", {}), "fptt": ("fptt", {}), "ostl": ("ostl", {}),
            "ottt": ("ottt", {}), "sltt": ("sltt", {}), "drtp": ("drtp", {})}
RULES = list(VARIANTS)
BATCH = 64

MEASURE = r"""
import json, sys, torch
torch.set_num_threads(2)
from spikebench.learning_rules import make_rule
from spikebench.models import preset
from spikebench.sparse import SampleEvents
rule_name, arch, T = sys.argv[1], sys.argv[2], int(sys.argv[3])
options = json.loads(sys.argv[4])
torch.manual_seed(0)
model = preset("nmnist", recurrent=arch == "rec", weight_scale=3.0)
frames = (torch.rand(64, T, 2312) < 0.04).to(torch.uint8)
x = SampleEvents.from_frames(frames).batch(range(64))
del frames
short_x = SampleEvents.from_frames((torch.rand(64, 5, 2312) < 0.04).to(torch.uint8)).batch(
    range(64))
y = torch.randint(0, 10, (64,))
rule = make_rule(rule_name, **options)
rule.prepare(model)
short = make_rule(rule_name, **options); short.prepare(model)
short.backward(model, short_x, y)  # warm-up
def status_kb(key):
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(key))
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # reset the peak resident size (VmHWM) to the current one
before = status_kb("VmRSS")
rule.backward(model, x, y)
peak = status_kb("VmHWM")
print(json.dumps({"peak_mb": (peak - before) / 1024, "rss_before_mb": before / 1024}))
"""


# glibc raises its mmap threshold dynamically once large blocks are freed; the step's
# freed temporaries then stay in the heap and the resident size creeps up with the
# number of steps though nothing is kept. A fixed threshold returns them to the system,
# so the figure is what the rule holds, not what the allocator caches.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_ARENA_MAX": "1"}


def measure(variant: str, arch: str, steps: int) -> dict:
    rule, options = VARIANTS[variant]
    out = subprocess.run([sys.executable, "-c", MEASURE, rule, arch, str(steps),
                          json.dumps(options)],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, **MALLOC_ENV})
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("steps", [100, 300, 1000])
@pytest.mark.parametrize("arch", ["ff", "rec"])
@pytest.mark.parametrize("rule", RULES)
def test_step_memory(benchmark, rule, arch, steps):
    benchmark.group = f"memory-{rule}-{arch}"
    result = {}

    def run():
        result.update(measure(rule, arch, steps))

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(result)


@pytest.mark.parametrize("steps", [100, 300])
@pytest.mark.parametrize("arch", ["ff", "rec"])
@pytest.mark.parametrize("rule", RULES)
def test_step_time(benchmark, rule, arch, steps):
    benchmark.group = f"step-time-T{steps}-{arch}"
    torch.manual_seed(0)
    model = preset("nmnist", recurrent=arch == "rec", weight_scale=3.0)
    x = SampleEvents.from_frames((torch.rand(BATCH, steps, 2312) < 0.04).to(torch.uint8)
                                 ).batch(range(BATCH))
    y = torch.randint(0, 10, (BATCH,))
    name, options = VARIANTS[rule]
    r = make_rule(name, **options)
    r.prepare(model)
    r.backward(model, x.steps_slice(0, 5), y)  # warm-up
    # the batch as a loader gives it (with its transpose, built in the assembly, which
    # benchmarks/test_bench_bptt.py::test_event_batch times)
    benchmark.pedantic(r.backward, args=(model, x, y), rounds=3, iterations=1)

"""What one training step of a trained network costs: its wall time and its peak memory,
measured for several networks in one fresh process, one after the other.

Peak memory is the peak resident size of the process during the step (Linux: VmHWM, reset
just before the step through /proc/self/clear_refs) minus the resident size just before
it: what the rule holds during the step beyond the model, its optimiser-free state and the
batch, which exist before. A fresh process with a fixed mmap threshold (``MALLOC_ENV``)
returns freed blocks to the system, so one network's temporaries do not hide the next
one's (glibc otherwise raises the threshold as large blocks are freed and keeps them).
Where /proc is not there (macOS, Windows) the memory is None: not measured. Step time:
the best of ``repeats`` steps after a warm-up on a 5-step slice.

    step_costs(jobs)   jobs: dicts of model_config, model_state, rule, rule_config,
                       rule_state, x (time-major, dense or an EventBatch), y

A rule registered in this process only (a user's, e.g. through the pytest plugin) reaches
the child by its import path (``rule_path``, ``module:Class``; the child gets this
process's ``sys.path``); one that no fresh process can import (defined in ``__main__`` or
in a function) is measured here instead, its memory then None.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_ARENA_MAX": "1"}
CLEAR_REFS = Path("/proc/self/clear_refs")


def step_costs(jobs: list[dict], repeats: int = 2) -> list[dict]:
    """``{"step_ms", "peak_mb"}`` of each job (``peak_mb`` None where not measurable),
    measured in one child process with this process's thread count."""
    if not jobs:
        return []
    jobs = [{**job, "rule_path": rule_path(job["rule"])} for job in jobs]
    here = {k for k, job in enumerate(jobs) if job["rule_path"] is None}
    if here:  # not importable by a fresh process: timed here, memory not measured
        rest = step_costs([j for k, j in enumerate(jobs) if k not in here], repeats)
        own = {k: _measure(jobs[k], repeats, memory=False) for k in here}
        it = iter(rest)
        return [own[k] if k in here else next(it) for k in range(len(jobs))]
    with tempfile.TemporaryDirectory(prefix="spikebench-stepcost-") as tmp:
        path = Path(tmp) / "jobs.pt"
        torch.save({"jobs": jobs, "threads": torch.get_num_threads(), "repeats": repeats,
                    "sys_path": list(sys.path)}, path)
        out = subprocess.run([sys.executable, "-m", "spikebench.metrics.stepcost", str(path)],
                             capture_output=True, text=True, env={**os.environ, **MALLOC_ENV})
    if out.returncode != 0:  # our bug: its traceback, not a one-line error
        raise RuntimeError(f"measuring the training steps failed:\n{out.stderr}")
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    return [json.loads(line) for line in lines]


def rule_path(name: str) -> str | None:
    """``module:Class`` of the rule registered as ``name``, None where a fresh process could
    not import it."""
    from spikebench.learning_rules import RULES

    cls = RULES.get(name)
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        return None
    return f"{cls.__module__}:{cls.__qualname__}"


def _rule_class(job: dict):
    import importlib

    from spikebench.learning_rules import RULES

    if job["rule"] in RULES:
        return RULES.get(job["rule"])
    module, _, name = job["rule_path"].partition(":")
    cls = getattr(importlib.import_module(module), name)
    RULES.register(job["rule"], cls)
    return cls


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(key))


def _no_update() -> None:
    """The optimiser step a rule that updates within a sequence calls: none here (the
    step's cost is the rule's, the same for every rule)."""


def _measure(job: dict, repeats: int, memory: bool = True) -> dict:
    from spikebench.models import SpikingMLP

    model = SpikingMLP.from_config(job["model_config"])
    model.load_state_dict(job["model_state"])
    model.train()
    rule = _rule_class(job)(**job["rule_config"])
    rule.prepare(model)
    rule.load_state_dict(job["rule_state"])
    x, y = job["x"], job["y"]
    short = min(5, x.shape[0])
    warm = x.steps_slice(0, short) if hasattr(x, "steps_slice") else x[:short]
    y_warm = y[:short] if y.dim() == 2 else y
    rule.backward(model, warm, y_warm, update=_no_update)
    peak = None
    if memory and CLEAR_REFS.exists() and os.access(CLEAR_REFS, os.W_OK):
        CLEAR_REFS.write_text("5")  # the peak resident size restarts from the current one
        before = _status_kb("VmRSS")
        rule.backward(model, x, y, update=_no_update)
        peak = (_status_kb("VmHWM") - before) / 1024
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        rule.backward(model, x, y, update=_no_update)
        times.append(time.perf_counter() - t0)
    return {"step_ms": 1000 * min(times), "peak_mb": peak}


def main(path: str) -> None:
    payload = torch.load(path, weights_only=False)  # our own file, written just before
    torch.set_num_threads(payload["threads"])
    sys.path[:0] = [p for p in payload["sys_path"] if p not in sys.path]
    torch.manual_seed(0)
    for job in payload["jobs"]:
        print(json.dumps(_measure(job, payload["repeats"])), flush=True)  # noqa: T201


if __name__ == "__main__":
    main(sys.argv[1])

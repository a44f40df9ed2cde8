"""The GPU benchmark, ready for the first machine with a CUDA device: one command, a table.

    make bench-gpu            (or: python benchmarks/gpu.py [--out DIR] [--skip-suite])

1. The BPTT step of benchmarks/test_bench_bptt.py on the GPU (``SPIKEBENCH_BENCH_DEVICE=
   cuda``): ours (events as CSR, dense frames, the unrolled reference) beside norse, snnTorch
   and SpikingJelly 2.0 (whose multi-step LIF picks its own fused CUDA kernel where it has
   one), FF and REC, and the dense-input step beside one GEMM of the first layer's shape.
2. One small suite with ``--device cuda``: the default suite (BPTT, e-prop, DECOLLE x FF/REC)
   on the embedded data at 2000 / 500 samples and 2 epochs, timed.

Writes ``DIR/gpu-benchmarks.md`` (the device, torch, the date, both tables, the commands)
beside the raw ``bptt.json`` and the suite's own report. Takes a few minutes on one GPU;
the tests never need one. Without a CUDA device it says so in one line and exits 2.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUITE_ARGS = ["--n-train", "2000", "--n-test", "500", "--epochs", "2", "--device", "cuda"]


def cuda_device() -> str | None:
    """The CUDA device's name, or None where torch sees none."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def run(cmd: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    sys.stdout.write("$ " + " ".join(cmd) + "\n")
    sys.stdout.flush()
    return subprocess.run(cmd, env={**os.environ, **(env or {})}, capture_output=True,
                          text=True)


def report(device: str, torch_version: str, step_table: str, suite: str | None) -> str:
    """The Markdown page (pure: tests check it on made-up tables)."""
    lines = [
        "# GPU benchmark",
        "",
        f"{device}, torch {torch_version}, {datetime.date.today().isoformat()}.",
        "",
        "## BPTT step (2312-120-84-10, T=100, B=128)",
        "",
        "`SPIKEBENCH_BENCH_DEVICE=cuda pytest benchmarks/test_bench_bptt.py -k test_bptt_step "
        "--benchmark-only` (each step waits for its kernels; ratios against the fastest peer "
        "in the same run):",
        "",
        step_table.strip(),
        "",
    ]
    if suite is not None:
        lines += ["## A small suite on the GPU", "", suite.strip(), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("gpu-bench"),
                        help="folder for gpu-benchmarks.md and the raw results")
    parser.add_argument("--skip-suite", action="store_true",
                        help="only the step benchmarks, not the small suite")
    args = parser.parse_args(argv)
    device = cuda_device()
    if device is None:
        sys.stderr.write("error: no CUDA device: torch sees none (torch.cuda.is_available() "
                         "is False); run this on a machine with a GPU and a CUDA torch\n")
        return 2
    import torch

    args.out.mkdir(parents=True, exist_ok=True)
    raw = args.out / "bptt.json"
    done = run([sys.executable, "-m", "pytest", str(HERE / "test_bench_bptt.py"), "-q",
                "-p", "no:cacheprovider", "-k", "test_bptt_step", "--benchmark-only",
                f"--benchmark-json={raw}"], {"SPIKEBENCH_BENCH_DEVICE": "cuda"})
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        return done.returncode
    table = run([sys.executable, str(HERE / "summarize.py"), str(raw)])
    suite = None
    if not args.skip_suite:
        suite_dir = args.out / "suite"
        cmd = [sys.executable, "-m", "spikebench.cli", "run", "--out", str(suite_dir),
               *SUITE_ARGS]
        start = time.perf_counter()
        ran = run(cmd)
        seconds = time.perf_counter() - start
        if ran.returncode != 0:
            sys.stderr.write(ran.stdout[-4000:] + ran.stderr[-4000:])
            return ran.returncode
        suite = (f"`spikebench run {' '.join(SUITE_ARGS)}`: {seconds:.0f} s wall "
                 f"(set-up, 6 runs, report); its report: `{suite_dir / 'report.md'}`.")
    page = args.out / "gpu-benchmarks.md"
    page.write_text(report(device, torch.__version__, table.stdout, suite))
    sys.stdout.write(f"wrote {page}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""benchmarks/gpu.py, the GPU benchmark's one command, on a machine without a GPU: a one-line
error and exit 2 (nothing written); and the page it writes, from made-up tables."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu.py"


def load():
    spec = importlib.util.spec_from_file_location("gpu_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here: it would run")
def test_without_a_gpu_it_says_so_in_one_line_and_exits_2(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "g")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0]
    assert not (tmp_path / "g").exists()


def test_the_page_states_the_device_the_commands_and_both_tables():
    gpu = load()
    step = "| workload | impl | mean ms |\n|---|---|---:|\n| bptt-step-ff-events | ours | 3.1 |"
    page = gpu.report("NVIDIA H200", "2.13.0", step, "`spikebench run ...`: 40 s wall")
    assert page.startswith("# GPU benchmark")
    assert "NVIDIA H200, torch 2.13.0" in page
    assert "SPIKEBENCH_BENCH_DEVICE=cuda" in page and step in page
    assert "## A small suite on the GPU" in page
    assert "small suite" not in gpu.report("x", "y", step, None)
    assert "--device" in gpu.SUITE_ARGS and "cuda" in gpu.SUITE_ARGS

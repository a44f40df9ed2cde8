"""The spikebench pytest plugin: a suite's grid as pytest-benchmark cases, with a user's
own rule on the same grid, and extra_info holding accuracy, memory and efficiency."""

import json
import subprocess
import sys
from pathlib import Path

from tests.datasets.test_events import make_full_layout

ROOT = Path(__file__).resolve().parents[1]


def test_suite_grid_as_benchmark_cases_with_a_users_rule(tmp_path):
    make_full_layout(tmp_path / "nmnist", per_class=3)
    out = tmp_path / "run.json"
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "benchmarks" / "suites"), "-q",
           "-p", "no:cacheprovider", f"--benchmark-json={out}",
           f"--spikebench-data-dir={tmp_path / 'nmnist'}", "--spikebench-n-train=20",
           "--spikebench-n-test=10", "--spikebench-steps=5",
           "--spikebench-rule=tests.test_extending:ReadoutOnly"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    cases = json.loads(out.read_text())["benchmarks"]
    names = {c["param"] for c in cases}
    assert {"bptt-ff-nmnist-s0", "decolle-rec-nmnist-s0", "readout-only-ff-nmnist-s0",
            "readout-only-rec-nmnist-s0"} <= names and len(cases) == 8
    for c in cases:
        info = c["extra_info"]
        assert info["n_train"] == 20 and info["n_test"] == 10 and info["steps"] == 5
        assert 0 <= info["test_acc"] <= 1 and info["epoch_s"] > 0
        assert info["synops_dense"] > 0 and 0 <= info["activation_sparsity"] <= 1
        assert info["peak_rss_mb"] >= 0 and c["stats"]["rounds"] == 1
        assert info["step_ms"] > 0 and "credit_space" in info
    # the user's rule lands in the locality frontier beside ours
    table = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "summarize.py"), str(out)],
                           cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    assert "| readout-only | FF | not stated | not stated |" in table.stdout
    assert "| bptt | REC | exact (backprop through layers) |" in table.stdout


def test_a_bad_rule_path_is_a_clear_error(tmp_path):
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "benchmarks" / "suites"), "-q",
           "-p", "no:cacheprovider", "--spikebench-rule=nowhere:Rule"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "--spikebench-rule 'nowhere:Rule'" in done.stdout + done.stderr

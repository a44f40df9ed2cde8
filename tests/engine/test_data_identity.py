"""A run's identity covers its data: runs on other data are never reused silently, the
report names the data folder and sample counts, and identical runs give identical results."""

import filecmp
import os
import shutil

import pandas as pd

from spikebench.datasets import DATASETS
from spikebench.suites import SuiteOptions, run_suite
from tests.datasets.test_events import make_full_layout


def opts(data_dir, **kw):
    return SuiteOptions(**{"data_dir": str(data_dir), "epochs": 1, "n_steps": 4,
                           "batch_size": 16, "rules": ["bptt"], "archs": ["ff"],
                           "progress": False, **kw})


def test_two_data_folders_into_one_out_train_twice(tmp_path):
    a, b = tmp_path / "A", tmp_path / "B"
    make_full_layout(a, per_class=2, seed=0)
    make_full_layout(b, per_class=3, seed=1)
    out = tmp_path / "X"
    first = run_suite("locality-nmnist", out, opts(a))
    second = run_suite("locality-nmnist", out, opts(b))
    assert not first.runs[0].skipped and not second.runs[0].skipped
    assert first.runs[0].spec.run_id != second.runs[0].spec.run_id
    assert second.runs[0].spec.data_dir == str(b.resolve())
    df = pd.read_csv(out / "results.csv")
    assert df[df.metric == "n_train"].value.tolist() == [30]  # B's 10 x 3 samples
    report = (out / "report.md").read_text()
    assert "## What ran" in report and str(b.resolve()) in report
    assert "| 30 | 30 |" in report  # train and test samples of B
    again = run_suite("locality-nmnist", out, opts(a))  # A again: its own run, reused
    assert again.runs[0].skipped and again.runs[0].spec.run_id == first.runs[0].spec.run_id


def test_a_changed_file_changes_the_identity(tmp_path):
    root = tmp_path / "nm"
    make_full_layout(root, per_class=1)
    info = DATASETS.get("nmnist")
    where, before = info.identity(root)
    assert where == str(root.resolve()) and info.identity(root) == (where, before)
    victim = next((root / "Train" / "4").iterdir())
    st = victim.stat()
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    touched = info.identity(root)[1]
    shutil.copy(victim, victim.with_name("extra.bin"))
    added = info.identity(root)[1]
    assert len({before, touched, added}) == 3
    assert DATASETS.get("nmnist-sim").identity(None) == (None, None)


def test_identical_runs_give_byte_identical_results(tmp_path):
    root = tmp_path / "nm"
    make_full_layout(root, per_class=2)
    run_suite("locality-nmnist", tmp_path / "one", opts(root, archs=["ff", "rec"]))
    run_suite("locality-nmnist", tmp_path / "two", opts(root, archs=["ff", "rec"]))
    assert filecmp.cmp(tmp_path / "one" / "results.csv", tmp_path / "two" / "results.csv",
                       shallow=False)
    timings = pd.read_csv(tmp_path / "one" / "timings.csv")
    assert set(timings.metric) == {"epoch_time_s"} and len(timings) == 2
    assert "epoch_time_s" not in set(pd.read_csv(tmp_path / "one" / "results.csv").metric)


def test_runs_of_version_0_1_on_real_data_are_named_not_reused(tmp_path):
    root = tmp_path / "nm"
    make_full_layout(root, per_class=1)
    first = run_suite("locality-nmnist", tmp_path / "out", opts(root))
    legacy = first.runs[0].spec.without_data_identity().run_id
    shutil.copytree(tmp_path / "out" / "runs" / first.runs[0].spec.run_id,
                    tmp_path / "out" / "runs" / legacy)
    run_suite("locality-nmnist", tmp_path / "out", opts(root))
    report = (tmp_path / "out" / "report.md").read_text()
    assert legacy in report and "not reused" in report

"""The locality frontier: its Pareto fronts on exact cases, and the study end to end on tiny
N-MNIST-format data with a rule registered in the test beside ours (measured in a fresh
process, cached per machine, reused on a rerun)."""

import pandas as pd
import pytest

import spikebench.studies.frontier as frontier_mod
from spikebench.learning_rules import RULES
from spikebench.studies.frontier import frontier_table, pareto
from spikebench.suites import SuiteOptions, run_suite
from tests.datasets.test_events import make_full_layout
from tests.test_extending import ReadoutOnly


def test_pareto_front_exact_cases():
    # cheaper and better wins; a tie in both keeps both; a missing cost is on no front
    assert pareto([1, 2, 3], [0.5, 0.6, 0.4]) == [True, True, False]
    assert pareto([1, 1], [0.5, 0.5]) == [True, True]
    assert pareto([1, None, float("nan")], [0.1, 0.9, 0.9]) == [True, False, False]
    assert pareto([2, 1], [0.5, 0.5]) == [False, True]


def test_frontier_table_means_over_seeds_and_keeps_the_locality_class():
    df = pd.DataFrame([
        {"method": "eprop", "model": "ff", "seed": s, "acc": a, "step_ms": 10.0 + s,
         "peak_mb": float("nan"), "space": "broadcast", "time": "traces"}
        for s, a in ((0, 0.5), (1, 0.7))] + [
        {"method": "bptt", "model": "ff", "seed": 0, "acc": 0.8, "step_ms": 20.0,
         "peak_mb": 5.0, "space": "exact", "time": "exact"}])
    t = frontier_table(df)
    assert list(t.method) == ["bptt", "eprop"]  # locality order
    e = t[t.method == "eprop"].iloc[0]
    assert e.acc == pytest.approx(0.6) and e.step_ms == pytest.approx(10.5) and e.seeds == 2
    assert e.peak_mb != e.peak_mb and not e.front_memory  # not measured: on no front
    assert e.front_time and t[t.method == "bptt"].iloc[0].front_time


@pytest.fixture()
def readout_only():
    RULES.register("readout-only", ReadoutOnly)
    yield
    RULES.unregister("readout-only")


def test_frontier_study_on_a_suite_with_a_users_rule(tmp_path, readout_only, monkeypatch):
    make_full_layout(tmp_path / "nmnist", per_class=3)
    opts = SuiteOptions(data_dir=str(tmp_path / "nmnist"), epochs=1, n_steps=5,
                        batch_size=16, rules=["bptt", "ottt", "readout-only"],
                        archs=["ff"], progress=False)
    run_suite("locality-spectrum", tmp_path / "out", opts, runs_dir=tmp_path / "runs")
    df = pd.read_csv(tmp_path / "out" / "frontier.csv")
    assert sorted(df.method) == ["bptt", "ottt", "readout-only"]
    assert (df.step_ms > 0).all() and df.batch.eq(16).all() and df.steps.eq(5).all()
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Locality frontier" in report and "![Locality frontier](frontier.png)" in report
    assert "| readout-only | FF | not stated | not stated |" in report
    assert "| ottt | FF | backprop through layers at each step |" in report
    assert (tmp_path / "out" / "frontier.png").stat().st_size > 0

    def boom(*a, **k):
        raise AssertionError("measured again")

    monkeypatch.setattr(frontier_mod, "step_costs", boom)  # a rerun reads the cache
    run_suite("locality-spectrum", tmp_path / "out", opts, runs_dir=tmp_path / "runs")

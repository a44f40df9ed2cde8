"""Specs, the training loop, checkpoints, resume, NaN handling and suites."""

import json
from dataclasses import replace

import pandas as pd
import pytest
import torch

import spikebench.engine.train as train_mod
from spikebench.datasets import SampleData
from spikebench.datasets.base import IGNORE
from spikebench.engine import ExperimentSpec, load_trained, train_run
from spikebench.engine.results import COLUMNS
from spikebench.learning_rules import BPTT
from spikebench.registry import UnknownNameError
from spikebench.suites import SuiteOptions, run_suite
from tests.datasets.test_events import make_full_layout

SPEC = ExperimentSpec(epochs=3, batch_size=16, n_steps=8, hidden=(16,), lr=5e-3)


def toy_data(n, seed):
    """Two classes of N-MNIST-shaped spike frames: activity on the left vs right half."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    rate = torch.full((n, 8, 2, 34, 34), 0.01)
    rate[y == 0, :, :, :, :17] = 0.15
    rate[y == 1, :, :, :, 17:] = 0.15
    x = (torch.rand(rate.shape, generator=g) < rate).to(torch.uint8)
    return SampleData(x, y, classes=10, sparse=True)  # event frames, as the loaders mark them


@pytest.fixture(scope="module")
def data():
    return toy_data(96, 0), toy_data(48, 1)


def values(metrics, drop=("epoch_time_s",)):
    return [(m["epoch"], m["metric"], m["value"]) for m in metrics if m["metric"] not in drop]


def test_spec_id_is_stable_and_means_the_experiment():
    a = ExperimentSpec(seed=1)
    assert a.run_id == ExperimentSpec(seed=1).run_id
    assert a.run_id != ExperimentSpec(seed=2).run_id
    assert a.run_id == replace(a, suite="other").run_id
    # the data is part of the identity: folder and fingerprint of its files
    on_disk = replace(a, data_dir="/x", data_fingerprint="f1")
    assert len({a.run_id, on_disk.run_id, replace(on_disk, data_dir="/y").run_id,
                replace(on_disk, data_fingerprint="f2").run_id}) == 4
    # runs on the embedded data keep the ids that spikebench 0.1 gave them
    assert a.run_id == "nmnist-sim-ff-bptt-s1-4dff203225"
    assert ExperimentSpec().run_id == "nmnist-sim-ff-bptt-s0-a7ba9bbb03"
    assert ExperimentSpec.from_dict(json.loads(json.dumps(a.to_dict()))) == a
    with pytest.raises(UnknownNameError, match="known rules"):
        ExperimentSpec(rule="hebb")
    with pytest.raises(ValueError, match="arch"):
        ExperimentSpec(arch="conv")


@pytest.mark.parametrize("rule,arch,options", [
    ("bptt", "ff", {}),
    ("eprop", "rec", {"feedback": "random"}),
    ("decolle", "rec", {}),
])
def test_training_learns_and_checkpoint_reloads(tmp_path, data, rule, arch, options):
    train, test = data
    spec = replace(SPEC, rule=rule, arch=arch, rule_options=options, hidden=(16, 12), epochs=5)
    res = train_run(spec, tmp_path / "run", train, test, progress=False)
    assert res.status == "done"
    acc = [m["value"] for m in res.metrics if m["metric"] == "test_acc"]
    assert len(acc) == 5 and acc[-1] > 0.9  # an easy task: the loop really trains
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ck["epoch"] == 5 and ck["rule"] == rule
    model, loaded_rule, loaded_spec = load_trained(tmp_path / "run")
    assert loaded_spec == spec and loaded_rule.name == rule
    for key, tensor in loaded_rule.state_dict().items():  # fixed feedback / readouts
        assert torch.equal(tensor, ck["rule_state"][key])
    assert train_mod.evaluate(model, test, loaded_spec)["acc"] == pytest.approx(acc[-1])


def test_same_spec_same_result(tmp_path, data):
    a = train_run(SPEC, tmp_path / "a", *data, progress=False)
    b = train_run(SPEC, tmp_path / "b", *data, progress=False)
    assert values(a.metrics) == values(b.metrics)


def test_interrupted_run_resumes_to_the_same_result(tmp_path, data, monkeypatch):
    full = train_run(SPEC, tmp_path / "full", *data, progress=False)
    calls = {"n": 0}
    real_evaluate = train_mod.evaluate

    def interrupt_in_epoch_2(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(train_mod, "evaluate", interrupt_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train_run(SPEC, tmp_path / "cut", *data, progress=False)
    assert not (tmp_path / "cut" / "status.json").exists()
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["epoch"] == 1
    monkeypatch.setattr(train_mod, "evaluate", real_evaluate)
    resumed = train_run(SPEC, tmp_path / "cut", *data, progress=False)
    assert resumed.status == "done" and not resumed.skipped
    assert values(resumed.metrics) == values(full.metrics)  # bit for bit on CPU
    again = train_run(SPEC, tmp_path / "cut", *data, progress=False)
    assert again.skipped and values(again.metrics) == values(resumed.metrics)
    # status.json says when it was resumed; an uninterrupted run says never
    assert json.loads((tmp_path / "cut" / "status.json").read_text())["resumed_after"] == [1]
    assert json.loads((tmp_path / "full" / "status.json").read_text())["resumed_after"] == []


def test_a_run_being_trained_elsewhere_is_waited_for_not_trained_twice(tmp_path, data):
    """Another process holds the run's lock: fit waits, then finds the run ended."""
    import subprocess
    import sys
    import time

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time\n"
         f"f = open({str(run_dir / 'lock')!r}, 'a+'); fcntl.flock(f, fcntl.LOCK_EX)\n"
         "f.write('4242 elsewhere'); f.flush(); print('held', flush=True); time.sleep(1.5)\n"
         f"open({str(run_dir / 'metrics.json')!r}, 'w').write("
         "'[{\"epoch\": 1, \"metric\": \"test_acc\", \"value\": 0.5}]')\n"
         f"open({str(run_dir / 'status.json')!r}, 'w').write("
         "'{\"status\": \"done\", \"version\": 2}')\n"],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    t0 = time.perf_counter()
    result = train_run(SPEC, run_dir, *data, progress=False)
    assert time.perf_counter() - t0 > 0.5  # it waited for the holder
    assert holder.wait() == 0
    assert result.skipped and result.status == "done"  # ended by the holder: not retrained
    assert not (run_dir / "checkpoint.pt").exists()


def test_nan_loss_stops_the_run_and_keeps_the_results(tmp_path, data, monkeypatch):
    real = BPTT.backward
    seen = {"n": 0}
    batches_per_epoch = -(-len(data[0]) // SPEC.batch_size)

    def nan_in_epoch_2(self, model, x, y, **kw):
        seen["n"] += 1
        out = real(self, model, x, y, **kw)
        if seen["n"] == batches_per_epoch + 2:
            out.loss = float("nan")
        return out

    monkeypatch.setattr(BPTT, "backward", nan_in_epoch_2)
    res = train_run(SPEC, tmp_path / "nan", *data, progress=False)
    assert res.status == "diverged"
    assert "loss is nan at epoch 2, batch 2" in res.message
    assert {m["epoch"] for m in res.metrics} == {1}
    status = json.loads((tmp_path / "nan" / "status.json").read_text())
    assert status["status"] == "diverged"
    assert json.loads((tmp_path / "nan" / "metrics.json").read_text()) == res.metrics


def test_suite_writes_tidy_results_and_resumes(tmp_path):
    make_full_layout(tmp_path / "nmnist", per_class=3)
    opts = SuiteOptions(data_dir=str(tmp_path / "nmnist"), epochs=2, n_steps=5, batch_size=8,
                        progress=False)
    out = tmp_path / "out"
    first = run_suite("default", out, opts)
    df = pd.read_csv(out / "results.csv")
    assert list(df.columns[: len(COLUMNS)]) == COLUMNS
    assert set(df["model"]) == {"ff", "rec"} and set(df["dataset"]) == {"nmnist"}
    assert set(df["method"]) == {"bptt", "eprop", "decolle"}
    # rules x archs x (epoch 0's two sample counts + 2 epochs x 13 metrics: train and test
    # loss and accuracy, 5 efficiency workload metrics, 2 per-layer sparsities, 2 static)
    assert len(df) == 3 * 2 * (2 + 2 * 13)
    assert {"test_synops_ac", "test_activation_sparsity", "test_footprint_bytes"} <= set(
        df["metric"])
    report = (out / "report.md").read_text()
    assert "| bptt |" in report and "97.12" in report and "| decolle |" in report
    assert (out / "curves.png").stat().st_size > 0
    assert "## Efficiency (NeuroBench's definitions)" in report
    assert "| bptt | REC |" in report and (out / "efficiency.png").stat().st_size > 0
    second = run_suite("default", out, opts)
    assert all(r.skipped for r in second.runs) and not any(r.skipped for r in first.runs)
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), df)


def test_sequence_decision_averages_over_labelled_frames_only():
    outputs = torch.zeros(4, 2, 3)
    outputs[:2, 0, 1] = 1.0  # sample 0: class 1 over its two labelled frames ...
    outputs[2:, 0, 2] = 5.0  # ... and class 2 on padding, which must not count
    outputs[:, 1, 0] = 1.0  # sample 1: class 0 throughout
    y = torch.tensor([[1, 2], [1, 2], [IGNORE, 2], [IGNORE, 2]])
    assert train_mod.sequence_correct(outputs, y, burn_in=0) == (1, 2)


def test_frame_task_reports_folded_accuracy(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 10, 39, generator=g)
    y = torch.randint(0, 61, (12, 10), generator=g)
    y[:, 8:] = IGNORE
    from spikebench.datasets.timit import fold_table

    data = SampleData(x, y, classes=61, task="frames", fold=fold_table())
    spec = ExperimentSpec(dataset="timit", epochs=1, batch_size=4, hidden=(8,))
    res = train_run(spec, tmp_path / "timit", data, data, progress=False)
    names = {m["metric"] for m in res.metrics}
    assert {"test_acc", "test_acc_folded", "test_loss"} <= names


def test_locality_timit_suite_end_to_end(tmp_path, monkeypatch):
    """The TIMIT suite on a tiny corpus in the exact format: frame-wise training with masks,
    61 -> 39 folded accuracy, the paper's TIMIT column beside ours."""
    from tests.datasets.test_speech import write_utterance

    monkeypatch.setenv("SPIKEBENCH_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "TIMIT"
    for k, spk in enumerate(("FAAA0", "MBBB0")):
        write_utterance(root / "TRAIN" / "DR1" / spk, "SI100", seconds=0.3 + 0.1 * k, seed=k)
    write_utterance(root / "TEST" / "DR1" / "MDAB0", "SI500", seconds=0.4, seed=5)
    opts = SuiteOptions(data_dir=str(tmp_path), epochs=1, batch_size=2, progress=False)
    result = run_suite("locality-timit", tmp_path / "out", opts)
    assert {r.spec.rule for r in result.runs} == {"bptt", "eprop", "decolle"}
    assert all(r.status == "done" for r in result.runs)
    df = result.table
    assert {"test_acc", "test_acc_folded"} <= set(df["metric"])
    report = (tmp_path / "out" / "report.md").read_text()
    assert "timit FF ours" in report and "52.31" in report and "56.93" in report


def test_suite_with_paralif_runs_only_the_rules_that_train_it(tmp_path):
    make_full_layout(tmp_path / "nmnist", per_class=2)
    opts = SuiteOptions(data_dir=str(tmp_path / "nmnist"), epochs=1, n_steps=5, batch_size=8,
                        neuron="paralif", neuron_options={"spike_fn": "GS"}, archs=["ff"],
                        progress=False)
    result = run_suite("locality-nmnist", tmp_path / "out", opts)
    df = pd.read_csv(tmp_path / "out" / "results.csv")
    assert set(df["method"]) == {"bptt"} and set(df["neuron"]) == {"paralif"}
    assert [r.status for r in result.runs] == ["done"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "eprop, decolle cannot train paralif" in report


def test_neuron_options_are_checked_before_training():
    from spikebench.engine.train import build_model

    model = build_model(replace(SPEC, neuron_options={"reset": "zero"}))
    assert all(layer.params.reset == "zero" for layer in model.hidden)
    with pytest.raises(ValueError, match="bad options for neuron 'paralif'"):
        replace(SPEC, neuron="paralif", neuron_options={"resett": "zero"})
    with pytest.raises(ValueError, match="unknown spike_fn"):
        build_model(replace(SPEC, neuron="paralif", neuron_options={"spike_fn": "X"}))

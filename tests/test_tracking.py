"""Experiment tracking (spikebench.tracking, ``run --log``): each run's per-epoch metrics
equal results.csv, the spec is there as parameters, the plots as artefacts, in a local
TensorBoard folder or MLflow file store; a rerun logs nothing twice; a missing package or a
stray --log-dir is a one-line error."""

import builtins

import pandas as pd
import pytest

from spikebench.cli import main
from tests.datasets.test_events import make_full_layout

TINY = ["--epochs", "2", "--steps", "4", "--batch-size", "16", "--rules", "bptt", "--archs",
        "ff", "--no-progress"]


@pytest.fixture(scope="module")
def nmnist(tmp_path_factory):
    root = tmp_path_factory.mktemp("nm")
    make_full_layout(root, per_class=2)
    return root


def run(nmnist, out, *extra):
    return main(["run", "locality-nmnist", "--data-dir", str(nmnist), "--out", str(out),
                 *TINY, *extra])


def expected(out):
    df = pd.read_csv(out / "results.csv")
    acc = df[df.metric == "test_acc"].sort_values("epoch")
    return df.run_id.iloc[0], list(acc.epoch), list(acc.value)


def test_tensorboard_gets_metrics_per_epoch_the_spec_and_the_plots(nmnist, tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "out"
    assert run(nmnist, out, "--log", "tensorboard") == 0
    assert "tensorboard: 1 run(s) logged" in capsys.readouterr().out
    run_id, epochs, values = expected(out)
    ea = EventAccumulator(str(out / "tensorboard" / "locality-nmnist" / run_id))
    ea.Reload()
    got = ea.Scalars("test_acc")
    assert [s.step for s in got] == epochs == [1, 2]
    assert [s.value for s in got] == pytest.approx(values, rel=1e-6)
    assert "spec/text_summary" in ea.Tags()["tensors"]
    plots = EventAccumulator(str(out / "tensorboard" / "locality-nmnist" / "suite"))
    plots.Reload()
    assert "curves" in plots.Tags()["images"]
    assert run(nmnist, out, "--log", "tensorboard") == 0  # nothing new: nothing logged
    assert "tensorboard: 0 run(s) logged" in capsys.readouterr().out


def test_mlflow_gets_metrics_per_epoch_the_spec_and_the_plots(nmnist, tmp_path, capsys):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    out, store = tmp_path / "out", tmp_path / "store"
    assert run(nmnist, out, "--log", "mlflow", "--log-dir", str(store)) == 0
    run_id, epochs, values = expected(out)
    client = MlflowClient(store.as_uri())
    exp = client.get_experiment_by_name("locality-nmnist")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {run_id, "suite"}
    history = client.get_metric_history(runs[run_id].info.run_id, "test_acc")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == epochs
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(values)
    assert runs[run_id].data.params["training.rule"] == "bptt"  # spec.json's sections
    assert runs[run_id].data.tags["spikebench.status"] == "done"
    artefacts = {a.path for a in client.list_artifacts(runs["suite"].info.run_id)}
    assert {"curves.png", "report.md"} <= artefacts
    capsys.readouterr()
    assert run(nmnist, out, "--log", "mlflow", "--log-dir", str(store)) == 0
    assert "mlflow: 0 run(s) logged" in capsys.readouterr().out
    assert len(client.search_runs([exp.experiment_id])) == 2  # not logged twice


def test_a_missing_package_and_a_stray_log_dir_are_one_line_errors(nmnist, tmp_path,
                                                                   monkeypatch, capsys):
    assert run(nmnist, tmp_path / "o", "--log-dir", str(tmp_path / "l")) == 2
    assert "--log-dir is an option of --log" in capsys.readouterr().err
    real = builtins.__import__

    def no_mlflow(name, *a, **k):
        if name == "mlflow" or name.startswith("mlflow."):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_mlflow)
    assert run(nmnist, tmp_path / "o2", "--log", "mlflow") == 2
    err = capsys.readouterr().err
    assert "--log mlflow needs mlflow, which is not installed" in err
    assert "Traceback" not in err and not (tmp_path / "o2").exists()

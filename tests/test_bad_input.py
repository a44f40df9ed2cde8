"""Every bad input is a one-line error that names the file or value and what to do, with
exit code 2, and loses nothing; our own bugs keep their traceback."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spikebench.cli import main
from spikebench.datasets import DATASETS, CorruptDataError
from spikebench.datasets.base import read_cached_npz
from spikebench.engine import ExperimentSpec
from spikebench.errors import SpikebenchError
from spikebench.suites import SuiteOptions, run_suite
from tests.datasets.test_events import make_full_layout

TINY = ["--epochs", "1", "--steps", "4", "--batch-size", "16", "--rules", "bptt", "--archs",
        "ff", "--no-progress"]


@pytest.fixture(scope="module")
def nmnist_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("nmnist")
    make_full_layout(root, per_class=2)
    return root


def run_cli(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.err


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("spikebench: error: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "weights_only=False" not in err
    return lines[0]


@pytest.fixture()
def interrupted(tmp_path, nmnist_dir, capsys):
    """A run folder as an interruption leaves it: checkpoint and metrics, no status."""
    out = tmp_path / "out"
    assert main(["run", "locality-nmnist", "--data-dir", str(nmnist_dir), "--out", str(out),
                 *TINY]) == 0
    capsys.readouterr()
    run_dir = next((out / "runs").iterdir())
    (run_dir / "status.json").unlink()
    return out, run_dir


@pytest.mark.parametrize("damage,expected", [
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "not a readable"),
    (lambda p: p.write_bytes(b"garbage" * 100), "not a readable"),
    (lambda p: __import__("torch").save({"weights": 1}, p), "not a spikebench checkpoint"),
])
def test_damaged_checkpoint_names_the_file_and_what_to_do(interrupted, nmnist_dir, capsys,
                                                          damage, expected):
    out, run_dir = interrupted
    damage(run_dir / "checkpoint.pt")
    before = (run_dir / "checkpoint.pt").read_bytes()
    code, err = run_cli(["run", "locality-nmnist", "--data-dir", str(nmnist_dir), "--out",
                         str(out), *TINY], capsys)
    line = one_line_error(err)
    assert code == 2 and str(run_dir / "checkpoint.pt") in line and expected in line
    assert "delete it" in line
    assert (run_dir / "checkpoint.pt").read_bytes() == before  # nothing is lost


def test_checkpoint_of_another_architecture_is_refused(interrupted, nmnist_dir, capsys,
                                                       tmp_path):
    out, run_dir = interrupted
    rec = tmp_path / "rec"
    assert main(["run", "locality-nmnist", "--data-dir", str(nmnist_dir), "--out", str(rec),
                 *[a if a != "ff" else "rec" for a in TINY]]) == 0
    shutil.copy(next((rec / "runs").iterdir()) / "checkpoint.pt", run_dir / "checkpoint.pt")
    code, err = run_cli(["run", "locality-nmnist", "--data-dir", str(nmnist_dir), "--out",
                         str(out), *TINY], capsys)
    line = one_line_error(err)
    assert code == 2 and "does not fit this run's model" in line and "rec_weight" in line


@pytest.mark.parametrize("name", ["status.json", "metrics.json"])
def test_garbage_run_json_names_the_file(tmp_path, nmnist_dir, capsys, name):
    out = tmp_path / "out"
    argv = ["run", "locality-nmnist", "--data-dir", str(nmnist_dir), "--out", str(out), *TINY]
    assert main(argv) == 0
    run_dir = next((out / "runs").iterdir())
    (run_dir / name).write_text("{not json")
    code, err = run_cli(argv, capsys)
    line = one_line_error(err)
    assert code == 2 and str(run_dir / name) in line and "delete the run folder" in line


def test_out_that_is_a_file_or_not_writable(tmp_path, capsys, monkeypatch):
    target = tmp_path / "a-file"
    target.write_text("keep me")
    code, err = run_cli(["run", "--out", str(target), *TINY], capsys)
    assert code == 2 and f"--out {target} is a file" in one_line_error(err)
    assert target.read_text() == "keep me"

    real = Path.write_text

    def denied(self, *a, **k):  # a read-only folder (root ignores chmod, so simulate it)
        if self.name == ".spikebench-write-test":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "write_text", denied)
    code, err = run_cli(["run", "--out", str(tmp_path / "ro"), *TINY], capsys)
    line = one_line_error(err)
    assert code == 2 and "cannot write there (Permission denied)" in line


def test_truncated_cache_is_rebuilt(tmp_path):
    path = tmp_path / "c.npz"
    with open(path, "wb") as fh:
        np.savez(fh, x=np.arange(1000))
    path.write_bytes(path.read_bytes()[:100])
    assert read_cached_npz(path) is None and not path.exists()  # deleted, to be rebuilt
    assert read_cached_npz(tmp_path / "none.npz") is None


def test_fsdd_cache_sees_replaced_and_deleted_files_and_names_bad_ones(tmp_path, monkeypatch):
    from tests.datasets.test_speech import write_fsdd

    monkeypatch.setenv("SPIKEBENCH_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "fsdd"
    write_fsdd(root, speakers=("ann",), indices=range(0, 7))
    fsdd = DATASETS.get("fsdd")
    assert len(fsdd.load("test", root, progress=False)) == 50
    cached = sorted((tmp_path / "cache").glob("fsdd-*-test.npz"))
    cached[0].write_bytes(b"PK\x03\x04 truncated")  # a corrupt cache is rebuilt
    assert len(fsdd.load("test", root, progress=False)) == 50
    (root / "recordings" / "3_ann_1.wav").unlink()
    assert len(fsdd.load("test", root, progress=False)) == 49
    (root / "recordings" / "4_ann_2.wav").write_text("not audio")
    with pytest.raises(CorruptDataError, match="4_ann_2.wav"):
        fsdd.load("test", root, progress=False)
    import soundfile as sf

    sf.write(root / "recordings" / "4_ann_2.wav", np.zeros(100, dtype=np.float32), 8000)
    with pytest.raises(CorruptDataError, match=r"4_ann_2.wav: 100 samples .* too short"):
        fsdd.load("test", root, progress=False)


def test_empty_event_file_is_an_error(tmp_path):
    make_full_layout(tmp_path, per_class=1)
    bad = next((tmp_path / "Train" / "3").iterdir())
    bad.write_bytes(b"")
    with pytest.raises(CorruptDataError, match=f"{bad.name}: the file is empty"):
        DATASETS.get("nmnist").load("train", tmp_path, progress=False)


@pytest.mark.parametrize("argv,message", [
    (["--seeds", "0", "0"], "seeds lists 0 more than once"),
    (["--lr", "nan"], "--lr (SuiteOptions.lr) must be a finite number"),
    (["--lr", "-1"], "lr must be positive"),
    (["--epochs", "0"], "epochs must be >= 1"),
    (["--neuron", "paralif", "--rules", "eprop"],
     "no runs with the options given: eprop cannot train paralif"),
    (["--neuron-option", "reset=sideways"], "reset must be one of"),
    (["--encoders", "resnet18"], "suite 'default' does not use --encoders; drop it (suites "
     "that use it: hybrid-lenet, hybrid-resnet, hybrid-vit)"),
    (["hybrid-lenet", "--rules", "bptt"], "suite 'hybrid-lenet' does not use --rules"),
    (["fisher", "--weights", "w.pt"], "suite 'fisher' does not use --weights"),
    (["--n-eval", "10"], "suite 'default' does not use --n-eval"),
])
def test_bad_values_from_the_command_line(tmp_path, capsys, argv, message):
    code, err = run_cli(["run", "--out", str(tmp_path / "o"), "--no-progress", *argv], capsys)
    assert code == 2 and message in one_line_error(err)
    assert not (tmp_path / "o").exists()  # refused before any folder is made


@pytest.mark.parametrize("fields,message", [
    ({"seed": 1.5}, "seed must be of type int"),
    ({"lr": float("nan")}, "lr must be a finite number"),
    ({"hidden": (-5,)}, "hidden layer sizes must be integers >= 1"),
    ({"hidden": (2.5,)}, "hidden layer sizes must be integers >= 1"),
    ({"epochs": True}, "epochs must be of type int"),
    ({"n_test": 0}, "n_test must be >= 1"),
    ({"kappa": 1.0}, "kappa"),
    ({"alpha": 1.5}, "alpha must lie in [0, 1]"),
])
def test_specs_refuse_bad_values(fields, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ExperimentSpec(**fields)


@pytest.mark.parametrize("fields,message", [
    ({"rules": ["bptt", "hebb"]}, "unknown rule 'hebb'"),
    ({"rules": "bptt"}, r"--rules \(SuiteOptions.rules\) must be of type list"),
    ({"seeds": [0, 0]}, "more than once"),
    ({"seeds": [0.5]}, r"--seeds \(SuiteOptions.seeds\) must"),
    ({"archs": ["ff", "conv"]}, "unknown arch 'conv'"),
    ({"rules": []}, "rules is empty"),
])
def test_suite_options_refuse_bad_values(fields, message):
    with pytest.raises(SpikebenchError, match=message):
        SuiteOptions(**fields)


def test_a_run_that_diverges_in_epoch_1_keeps_its_row(tmp_path, nmnist_dir, monkeypatch):
    from spikebench.learning_rules import BPTT

    real = BPTT.backward

    def nan_loss(self, *a, **k):
        out = real(self, *a, **k)
        out.loss = float("nan")
        return out

    monkeypatch.setattr(BPTT, "backward", nan_loss)
    opts = SuiteOptions(data_dir=str(nmnist_dir), epochs=1, n_steps=4, batch_size=16,
                        rules=["bptt"], archs=["ff"], progress=False)
    result = run_suite("locality-nmnist", tmp_path / "out", opts)
    assert [r.status for r in result.runs] == ["diverged"]
    df = pd.read_csv(tmp_path / "out" / "results.csv")
    assert set(df.status) == {"diverged"} and set(df.metric) == {"n_train", "n_test"}
    assert "diverged" in (tmp_path / "out" / "report.md").read_text()


def test_our_own_bugs_keep_their_traceback(monkeypatch, tmp_path):
    import spikebench.suites.base as suites

    def bug(*a, **k):
        raise ValueError("an internal inconsistency")

    monkeypatch.setattr(suites, "run_suite", bug)
    with pytest.raises(ValueError, match="internal inconsistency"):
        main(["run", "--out", str(tmp_path / "o"), "--no-progress"])


def test_output_files_honour_the_umask(tmp_path, nmnist_dir):
    old = os.umask(0o022)
    try:
        run_suite("locality-nmnist", tmp_path / "out", SuiteOptions(
            data_dir=str(nmnist_dir), epochs=1, n_steps=4, batch_size=16, rules=["bptt"],
            archs=["ff"], progress=False))
    finally:
        os.umask(old)
    for path in [*(tmp_path / "out").glob("*.*"), *(tmp_path / "out" / "runs").rglob("*.*")]:
        assert path.stat().st_mode & 0o777 == 0o644, path


def test_progress_off_a_terminal_is_plain_lines(tmp_path, nmnist_dir, capfd):
    argv = ["run", "locality-nmnist", "--data-dir", str(nmnist_dir), "--out",
            str(tmp_path / "out"), *[a for a in TINY if a != "--no-progress"]]
    assert main(argv) == 0
    err = capfd.readouterr().err
    assert "\r" not in err
    assert "bptt/ff s0 epoch 1/1: train loss" in err and "run 1/1" in err


def test_status_json_of_another_program_is_refused(tmp_path, nmnist_dir, capsys):
    argv = ["run", "locality-nmnist", "--data-dir", str(nmnist_dir), "--out",
            str(tmp_path / "out"), *TINY]
    assert main(argv) == 0
    run_dir = next((tmp_path / "out" / "runs").iterdir())
    (run_dir / "status.json").write_text(json.dumps(["done"]))
    code, err = run_cli(argv, capsys)
    assert code == 2 and "not a spikebench run status" in one_line_error(err)

"""Hostile input, table-driven: each case is a mistake a user makes (a number, a name, a
file, a damaged run folder, the environment, an export, a data file) given to the command
line as they would. Every one must end with exit code 2 and one error line that names the
value or file (the expected text), within a minute, with no traceback, and the files that
were there before are unchanged (nothing lost). argparse's own refusals keep its usage
line above the one error line (the field's convention)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from spikebench.cli import main
from tests.datasets.test_events import make_full_layout
from tests.test_bad_input import TINY


@dataclass
class Ctx:
    tmp: Path
    nmnist: Path
    trained: Path  # a copy of a finished locality-nmnist --out folder, this case's own

    def run_dir(self) -> Path:
        return next((self.trained / "runs").iterdir())

    def rerun(self) -> list[str]:
        return ["run", "locality-nmnist", "--data-dir", str(self.nmnist), "--out",
                str(self.trained), *TINY]


@dataclass
class Case:
    name: str
    argv: Callable[[Ctx], list[str]]
    expect: str
    setup: Callable[[Ctx], None] | None = None
    env: dict | None = None

    def __str__(self) -> str:
        return self.name


def nm(*extra):
    """A locality-nmnist run on the fake data with ``extra`` options."""
    def argv(c: Ctx) -> list[str]:
        return ["run", "locality-nmnist", "--data-dir", str(c.nmnist), "--out",
                str(c.tmp / "out"), *TINY, *extra]
    return argv


def table(rows: list[str]):
    """An N-MNIST subset folder whose train table holds ``rows`` (bytes or text)."""
    def setup(c: Ctx) -> None:
        folder = c.tmp / "subset"
        folder.mkdir()
        body = b"\n".join(r if isinstance(r, bytes) else r.encode() for r in rows) + b"\n"
        (folder / "train1K.txt").write_bytes(body)
        (folder / "test100.txt").write_bytes(body)
    return setup


def subset(c: Ctx) -> list[str]:
    return ["run", "locality-nmnist", "--data-dir", str(c.tmp / "subset"), "--out",
            str(c.tmp / "out"), *TINY]


def write_metrics(value):
    def setup(c: Ctx) -> None:
        path = c.run_dir() / "metrics.json"
        path.write_text(value if isinstance(value, str) else json.dumps(value))
    return setup


def write_status(value):
    def setup(c: Ctx) -> None:
        (c.run_dir() / "status.json").write_text(value)
    return setup


def remove(name):
    def setup(c: Ctx) -> None:
        (c.run_dir() / name).unlink()
    return setup


def fsdd(rate: int, garbage: bool = False):
    """An FSDD folder of two recordings per split at ``rate`` Hz (or not audio at all)."""
    def setup(c: Ctx) -> None:
        import soundfile as sf

        folder = c.tmp / "fsdd" / "recordings"
        folder.mkdir(parents=True)
        t = np.arange(int(0.3 * rate)) / rate
        for name in ("0_a_0.wav", "1_a_1.wav", "0_a_7.wav", "1_a_9.wav"):
            if garbage:
                (folder / name).write_bytes(b"RIFF....not a wave file" * 4)
            else:
                sf.write(folder / name, 0.1 * np.sin(2 * np.pi * 440 * t), rate)
    return setup


def fsdd_run(c: Ctx) -> list[str]:
    return ["run", "locality-fsdd", "--data-dir", str(c.tmp / "fsdd"), "--out",
            str(c.tmp / "out"), "--epochs", "1", "--rules", "bptt", "--archs", "ff",
            "--no-progress"]


def fake_hybrid_run(c: Ctx) -> None:
    run = c.tmp / "hybrid-run"
    run.mkdir()
    (run / "spec.json").write_text(json.dumps({"suite": "hybrid-lenet", "stage": "head-lif"}))
    torch.save({"model": {}, "optimizer": {}, "epoch": 1}, run / "checkpoint.pt")


def config(text: str):
    def setup(c: Ctx) -> None:
        (c.tmp / "c.toml").write_text(text)
    return setup


def results_csv(text: str):
    def setup(c: Ctx) -> None:
        (c.tmp / "r.csv").write_text(text)
    return setup


def export(*extra):
    def argv(c: Ctx) -> list[str]:
        return ["export", str(c.run_dir()), *extra]
    return argv


CASES = [
    # -- numbers -----------------------------------------------------------------------
    Case("epochs-0", nm("--epochs", "0"), "epochs must be >= 1"),
    Case("epochs-negative", nm("--epochs", "-3"), "epochs must be >= 1"),
    Case("n-train-0", nm("--n-train", "0"), "n_train must be >= 1"),
    Case("batch-0", nm("--batch-size", "0"), "batch_size must be >= 1"),
    Case("steps-0", nm("--steps", "0"), "n_steps must be >= 1"),
    Case("lr-0", nm("--lr", "0"), "lr must be positive"),
    Case("lr-nan", nm("--lr", "nan"), "finite number"),
    Case("lr-inf", nm("--lr", "inf"), "finite number"),
    Case("seed-2**32", nm("--seeds", str(2**32)), "seeds must lie in 0.."),
    Case("seed-2**64", nm("--seeds", str(2**64)), "seeds must lie in 0.."),
    Case("seed-negative", nm("--seeds", "-1"), "seeds must lie in 0.."),
    Case("seed-twice", nm("--seeds", "1", "1"), "more than once"),
    Case("steps-huge", nm("--steps", "100000000"), "more than the"),
    Case("steps-text", nm("--steps", "ten"), "invalid int value: 'ten'"),
    # -- names -------------------------------------------------------------------------
    Case("suite-unknown", lambda c: ["run", "nosuch"], "nosuch"),
    Case("rule-unknown", nm("--rules", "nosuch"), "nosuch"),
    Case("arch-unknown", nm("--archs", "nosuch"), "unknown arch 'nosuch'"),
    Case("neuron-unknown", nm("--neuron", "nosuch"), "nosuch"),
    Case("dataset-unknown", nm("--dataset", "nosuch"), "nosuch"),
    Case("study-unknown", nm("--studies", "nosuch"), "nosuch"),
    Case("device-unknown", nm("--device", "tpu"), "--device"),
    # -- neuron and rule options: type and finiteness ------------------------------------
    Case("threshold-nan", nm("--neuron-option", "threshold=nan"), "threshold must be a finite"),
    Case("threshold-inf", nm("--neuron-option", "threshold=inf"), "threshold must be a finite"),
    Case("threshold-text", nm("--neuron-option", "threshold=high"), "threshold must be a finite"),
    Case("threshold-negative", nm("--neuron-option", "threshold=-1"), "threshold must be positive"),
    Case("alpha-big", nm("--neuron-option", "alpha=1.5"), "alpha must lie in [0, 1]"),
    Case("beta-nan", nm("--neuron-option", "beta=nan"), "beta must be a finite"),
    Case("slope-text", nm("--neuron-option", "slope=steep"), "slope must be a finite"),
    Case("reset-unknown", nm("--neuron-option", "reset=sideways"), "reset must be one of"),
    Case("reset-number", nm("--neuron-option", "reset=1"), "reset must be of type str"),
    Case("surrogate-unknown", nm("--neuron-option", "surrogate=nosuch"), "unknown surrogate"),
    Case("neuron-option-unknown", nm("--neuron-option", "nosuch=1"), "nosuch"),
    Case("neuron-option-no-equals", nm("--neuron-option", "threshold"), "KEY=VALUE"),
    Case("readout-scale-inf", nm("--rules", "decolle", "--rule-option", "readout_scale=inf"),
         "readout_scale must be a finite"),
    Case("readout-scale-nan", nm("--rules", "decolle", "--rule-option", "readout_scale=nan"),
         "readout_scale must be a finite"),
    Case("readout-scale-text", nm("--rules", "decolle", "--rule-option", "readout_scale=big"),
         "readout_scale must be a finite"),
    Case("chunk-text", nm("--rules", "decolle", "--rule-option", "chunk=ten"),
         "chunk must be of type int"),
    Case("online-number", nm("--rules", "decolle", "--rule-option", "online=3"),
         "online must be of type bool"),
    Case("rule-option-unknown", nm("--rule-option", "nosuch=1"), "nosuch"),
    # -- executors -----------------------------------------------------------------------
    Case("cpus-0", nm("--cpus-per-run", "0"), "--cpus-per-run must be >= 1"),
    Case("address-without-ray", nm("--address", "127.0.0.1:6379"), "--executor ray"),
    Case("ray-cpus-0", nm("--executor", "ray", "--cpus-per-run", "0"),
         "--cpus-per-run must be a whole number >= 1"),
    Case("ray-gpus-negative", nm("--executor", "ray", "--gpus-per-run", "-1"),
         "--gpus-per-run must be a finite number >= 0"),
    Case("ray-gpus-inf", nm("--executor", "ray", "--gpus-per-run", "inf"),
         "--gpus-per-run must be a finite number >= 0"),
    Case("ray-address-closed", nm("--executor", "ray", "--address", "127.0.0.1:1"),
         "no Ray cluster answers there"),
    Case("ray-address-garbage", nm("--executor", "ray", "--address", "my cluster"),
         "expected HOST:PORT"),
    Case("ray-address-port", nm("--executor", "ray", "--address", "127.0.0.1:99999"),
         "expected HOST:PORT"),
    # -- files and folders given ---------------------------------------------------------
    Case("data-dir-missing", lambda c: ["run", "locality-nmnist", "--data-dir",
                                        str(c.tmp / "nothing"), "--out", str(c.tmp / "o")],
         "nothing"),
    Case("data-dir-file", lambda c: ["run", "locality-nmnist", "--data-dir",
                                     str(c.tmp / "f.txt"), "--out", str(c.tmp / "o")],
         "f.txt", setup=lambda c: (c.tmp / "f.txt").write_text("x")),
    Case("out-is-file", lambda c: [*nm()(c)[:5], str(c.tmp / "f.txt"), *TINY],
         "is a file, not a folder", setup=lambda c: (c.tmp / "f.txt").write_text("x")),
    Case("out-unwritable", lambda c: [*nm()(c)[:5], "/proc/spikebench-out", *TINY],
         "cannot write there"),
    Case("config-missing", nm("--config", "/nonexistent/c.toml"), "c.toml"),
    Case("config-garbage", lambda c: [*nm()(c), "--config", str(c.tmp / "c.toml")], "c.toml",
         setup=config("epochs = = 3\n[[")),
    Case("config-unknown-key", lambda c: [*nm()(c), "--config", str(c.tmp / "c.toml")],
         "nosuch", setup=config("nosuch = 3\n")),
    Case("config-wrong-type", lambda c: [*nm()(c)[:6], "--config", str(c.tmp / "c.toml")],
         "epochs", setup=config('epochs = "three"\n')),
    # -- data files ----------------------------------------------------------------------
    Case("table-non-integer", subset, "two whole numbers",
         setup=table(["#sample #class", "12a 3"])),
    Case("table-float-class", subset, "two whole numbers",
         setup=table(["#sample #class", "12 3.5"])),
    Case("table-negative-id", subset, "negative", setup=table(["#sample #class", "-4 3"])),
    Case("table-header-only", subset, "no samples", setup=table(["#sample #class"])),
    Case("table-latin-1", subset, "not UTF-8",
         setup=table(["#sample #class", "1 2", "caf\xe9 1".encode("latin-1")])),
    Case("table-class-12", subset, "not a digit 0-9", setup=table(["#sample #class", "1 12"])),
    Case("table-three-columns", subset, "expected '#sample #class'",
         setup=table(["#sample #class", "1 2 3"])),
    Case("fsdd-1kHz", fsdd_run, "recorded at 1000 Hz", setup=fsdd(1000)),
    Case("fsdd-not-audio", fsdd_run, "0_a_", setup=fsdd(8000, garbage=True)),
    Case("fsdd-empty", fsdd_run, "no FSDD",
         setup=lambda c: (c.tmp / "fsdd" / "recordings").mkdir(parents=True)),
    # -- damaged run folders (the same command again) ------------------------------------
    Case("metrics-missing", Ctx.rerun, "missing, but", setup=remove("metrics.json")),
    Case("metrics-empty", Ctx.rerun, "empty, but", setup=write_metrics([])),
    Case("metrics-value-text", Ctx.rerun, "not a spikebench metrics record",
         setup=write_metrics([{"epoch": 1, "metric": "test_acc", "value": "high"}])),
    Case("metrics-value-null", Ctx.rerun, "not a spikebench metrics record",
         setup=write_metrics([{"epoch": 1, "metric": "test_acc", "value": None}])),
    Case("metrics-epoch-0", Ctx.rerun, "not a spikebench metrics record",
         setup=write_metrics([{"epoch": 0, "metric": "test_acc", "value": 0.5}])),
    Case("metrics-epoch-text", Ctx.rerun, "not a spikebench metrics record",
         setup=write_metrics([{"epoch": "one", "metric": "test_acc", "value": 0.5}])),
    Case("metrics-dict", Ctx.rerun, "not a spikebench metrics record",
         setup=write_metrics({"test_acc": 0.5})),
    Case("metrics-garbage", Ctx.rerun, "not valid JSON", setup=write_metrics("[{,")),
    Case("status-garbage", Ctx.rerun, "not valid JSON", setup=write_status("{{")),
    Case("status-unknown", Ctx.rerun, "not a spikebench run status",
         setup=write_status('{"status": "maybe"}')),
    Case("status-list", Ctx.rerun, "not a spikebench run status", setup=write_status("[]")),
    Case("checkpoint-garbage", Ctx.rerun, "not a readable spikebench checkpoint",
         setup=lambda c: (remove("status.json")(c),
                          (c.run_dir() / "checkpoint.pt").write_bytes(b"x" * 64))),
    # -- the environment -----------------------------------------------------------------
    Case("cache-is-file", lambda c: ["run", "--out", str(c.tmp / "o"), *TINY[:6]],
         "a file is in the way", setup=lambda c: (c.tmp / "cachefile").write_text("x"),
         env={"SPIKEBENCH_CACHE": "{tmp}/cachefile"}),
    Case("cache-unmakeable", lambda c: ["run", "--out", str(c.tmp / "o"), *TINY[:6]],
         "cannot be made", env={"SPIKEBENCH_CACHE": "/proc/spikebench-cache"}),
    Case("home-is-file", lambda c: ["run", "--out", str(c.tmp / "o"), *TINY[:6]],
         "a file is in the way", setup=lambda c: (c.tmp / "homefile").write_text("x"),
         env={"HOME": "{tmp}/homefile", "SPIKEBENCH_CACHE": ""}),
    # -- export --------------------------------------------------------------------------
    Case("export-no-run", lambda c: ["export", str(c.tmp), str(c.tmp / "m.nir")],
         "no checkpoint.pt"),
    Case("export-onto-folder", lambda c: export(str(c.tmp))(c), "is a folder"),
    Case("export-missing-parent", lambda c: export(str(c.tmp / "no" / "m.nir"))(c),
         "does not exist"),
    Case("export-dt-0", lambda c: export(str(c.tmp / "m.nir"), "--dt", "0")(c),
         "must be a positive number"),
    Case("export-dt-nan", lambda c: export(str(c.tmp / "m.nir"), "--dt", "nan")(c),
         "must be a positive number"),
    Case("export-snntorch-dt", lambda c: export(str(c.tmp / "m.nir"), "--target", "snntorch",
                                                "--dt", "1e-3")(c), "fixed dt"),
    Case("export-hybrid-run", lambda c: ["export", str(c.tmp / "hybrid-run"),
                                         str(c.tmp / "m.nir")],
         "a hybrid-lenet run (head-lif stage), not a spiking MLP", setup=fake_hybrid_run),
    Case("export-garbage-checkpoint", lambda c: ["export", str(c.tmp / "r"),
                                                 str(c.tmp / "m.nir")],
         "not a readable spikebench checkpoint",
         setup=lambda c: ((c.tmp / "r").mkdir(),
                          (c.tmp / "r" / "checkpoint.pt").write_bytes(b"junk"))),
    Case("export-target-unknown", lambda c: export(str(c.tmp / "m.nir"), "--target", "x")(c),
         "--target"),
    Case("neurobench-hybrid-run", lambda c: ["neurobench", str(c.tmp / "hybrid-run")],
         "a hybrid-lenet run (head-lif stage), not a spiking MLP", setup=fake_hybrid_run),
    Case("neurobench-no-run", lambda c: ["neurobench", str(c.tmp)], "no checkpoint.pt"),
    Case("neurobench-n-0", lambda c: ["neurobench", str(c.run_dir()), "--n", "0"],
         "--n must be >= 1"),
    # -- data and compare ----------------------------------------------------------------
    Case("data-show-steps-0", lambda c: ["data", "show", "nmnist-sim", "--steps", "0"],
         "0 is not >= 1"),
    Case("data-show-steps-text", lambda c: ["data", "show", "nmnist-sim", "--steps", "x"],
         "not a whole number"),
    Case("data-show-unknown", lambda c: ["data", "show", "nosuch"], "nosuch"),
    Case("data-show-no-name", lambda c: ["data", "show"], "needs a data set name"),
    Case("data-show-missing-dir", lambda c: ["data", "show", "nmnist", "--data-dir",
                                             str(c.tmp / "none")], "none"),
    Case("compare-missing", lambda c: ["compare", str(c.tmp / "none.csv")], "none.csv"),
    Case("compare-garbage", lambda c: ["compare", str(c.tmp / "r.csv")], "r.csv",
         setup=results_csv("a,b\n1,2\n")),
    Case("compare-metric-unknown", lambda c: ["compare", str(c.trained / "results.csv"),
                                              "--metric", "nosuch"], "nosuch"),
]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "lock"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    data = tmp_path_factory.mktemp("nmnist")
    make_full_layout(data, per_class=2)
    out = tmp_path_factory.mktemp("trained") / "out"
    assert main(["run", "locality-nmnist", "--data-dir", str(data), "--out", str(out),
                 *TINY]) == 0
    return data, out


def test_the_table_holds_at_least_60_cases_with_distinct_names():
    assert len(CASES) >= 60 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_hostile_input_is_one_clear_line_with_exit_2_and_loses_nothing(
        case, finished, tmp_path, monkeypatch, capsys):
    data, out = finished
    trained = tmp_path / "trained"
    shutil.copytree(out, trained)
    ctx = Ctx(tmp_path, data, trained)
    if case.setup is not None:
        case.setup(ctx)
    for key, value in (case.env or {}).items():
        monkeypatch.setenv(key, value.format(tmp=tmp_path))
    before = snapshot(tmp_path)
    capsys.readouterr()
    t0 = time.perf_counter()
    try:
        code = main(case.argv(ctx))
    except SystemExit as exit_:  # argparse's refusals
        code = exit_.code
    err = capsys.readouterr().err
    assert time.perf_counter() - t0 < 60, f"{case}: took too long"
    assert code == 2, f"{case}: exit {code}\n{err}"
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(lines) == 1, f"{case}: {err}"
    assert "Traceback" not in err, f"{case}: {err}"
    assert case.expect in lines[0], f"{case}: {lines[0]}"
    after = snapshot(tmp_path)
    lost = [p for p, b in before.items() if after.get(p) != b]
    assert not lost, f"{case}: changed or removed {lost}"

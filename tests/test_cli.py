"""The command line, end to end on the embedded data, and its errors."""

import subprocess
import sys

import pandas as pd
import pytest

from spikebench.cli import main
from spikebench.engine.results import COLUMNS


def test_help_explains_the_options():
    out = subprocess.run([sys.executable, "-m", "spikebench.cli", "run", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for opt in ("--data-dir", "--epochs", "--seeds", "--out", "--rules", "--steps"):
        assert opt in out
    assert "resume" in out


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "locality-nmnist" in out and "bptt" in out and "nmnist-sim" in out


@pytest.mark.parametrize("argv,message", [
    (["run", "--rules", "hebb"], "unknown rule 'hebb'; known rules: bptt"),
    (["run", "no-such-suite"], "unknown suite 'no-such-suite'; known suites: "),
    (["run", "--data-dir", "/no/such/folder"], "nmnist not found at /no/such/folder"),
    (["run", "--archs", "conv"], "unknown arch 'conv'"),
    (["run", "--dataset", "mnist-c"], "unknown dataset 'mnist-c'"),
])
def test_bad_input_is_a_clear_error(argv, message, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spikebench: error: ") and message in err


def test_run_on_the_embedded_default(tmp_path, capsys):
    """The main job, scaled down: generates (or reads the cached) simulated N-MNIST."""
    out = tmp_path / "default"
    argv = ["run", "--out", str(out), "--epochs", "2", "--n-train", "400", "--n-test", "200",
            "--no-progress"]
    assert main(argv) == 0
    df = pd.read_csv(out / "results.csv")
    assert list(df.columns) == COLUMNS
    final = df[(df.metric == "test_acc") & (df.epoch == 2)]
    assert len(final) == 6 and set(final.model) == {"ff", "rec"}
    assert set(final.method) == {"bptt", "eprop", "decolle"}
    assert (final[final.method != "decolle"].value > 0.3).all()  # chance is 0.1
    report = (out / "report.md").read_text()
    assert "nmnist-sim FF ours" in report and (out / "curves.png").is_file()
    assert "report:" in capsys.readouterr().out
    # rerun: everything is skipped, nothing is lost
    assert main(argv) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), df)


def test_data_lists_every_data_set(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("SPIKEBENCH_DATA", str(tmp_path / "nothing-here"))
    assert main(["data"]) == 0
    out = capsys.readouterr().out
    for name in ("nmnist-sim", "nmnist", "timit", "fsdd", "mnist5k", "cifar10", "svhn"):
        assert name in out
    assert "MISSING" in out and "LDC" in out  # a missing set says how to obtain it


def test_data_show_writes_a_png(tmp_path, capsys):
    from tests.datasets.test_events import make_full_layout

    make_full_layout(tmp_path / "nm", per_class=1)
    png = tmp_path / "nm.png"
    assert main(["data", "show", "nmnist", "--data-dir", str(tmp_path / "nm"),
                 "--out", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert main(["data", "show", "mnist5k", "--out", str(tmp_path / "m.png")]) == 0
    assert main(["data", "show", "nope"]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err


def test_list_is_cached_and_then_imports_no_torch(tmp_path):
    """`spikebench list` imports the registries (and torch) once, then prints the cached
    text without importing torch; the text equals the live registries'."""
    import os
    import subprocess
    import sys

    from spikebench.cli import list_text

    env = {**os.environ, "SPIKEBENCH_CACHE": str(tmp_path)}
    code = ("import sys; from spikebench.cli import main; main(['list']); "
            "sys.stderr.write('torch' if 'torch' in sys.modules else 'no torch')")
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, check=True)
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, check=True)
    assert first.stderr == "torch" and second.stderr == "no torch"
    assert first.stdout == second.stdout == list_text()
    assert len(list(tmp_path.glob("list-*.txt"))) == 1


def test_list_with_a_read_only_cache_still_lists(tmp_path, monkeypatch, capsys):
    from spikebench.cli import list_text, main

    cache = tmp_path / "cache"
    cache.write_text("a file where the cache folder should be")
    monkeypatch.setenv("SPIKEBENCH_CACHE", str(cache))
    assert main(["list"]) == 0
    assert capsys.readouterr().out == list_text()

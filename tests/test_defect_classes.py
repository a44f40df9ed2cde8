"""One test per class of defect that the hostile probe found (issue 29): a killed run
never loses an epoch's records, the data fingerprint leaves out what spikebench writes
and survives symlink loops, recordings at another sample rate are resampled or refused,
the cache fails loudly only where it must, SIGTERM ends the command cleanly, the pytest
plugin's peak memory is measured per case, figures keep their text, and the report states
the neuron and the epochs that really ran."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import spikebench.engine.executor as executor_mod
from spikebench.cli import build_parser, main
from spikebench.datasets.audio import read_features, resample
from spikebench.datasets.base import (
    CorruptDataError,
    atomic_save_npz,
    fingerprint_tree,
    read_cached_npz,
)
from spikebench.engine import train_run
from spikebench.errors import ConfigError
from spikebench.io import OUTPUT_MARKER, save_figure, subplots, texts_outside
from spikebench.neurons import NEURONS
from spikebench.report.markdown import neuron_in_force, trained_epochs
from tests.engine.test_harness import SPEC, toy_data, values


@pytest.fixture(scope="module")
def data():
    return toy_data(64, 0), toy_data(32, 1)


def test_killed_between_its_two_writes_a_run_retrains_the_epoch_and_loses_nothing(
        tmp_path, data, monkeypatch):
    """metrics.json is written before the checkpoint: a kill between the two leaves
    records one epoch ahead, which the resume drops and trains again."""
    spec = replace(SPEC, epochs=2)
    full = train_run(spec, tmp_path / "full", *data, progress=False)
    real = executor_mod.atomic_write
    calls = {"n": 0}

    def killed_at_second_checkpoint(path, write):
        if Path(path).name == executor_mod.CHECKPOINT:
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt  # after epoch 2's records, before its checkpoint
        return real(path, write)

    monkeypatch.setattr(executor_mod, "atomic_write", killed_at_second_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train_run(spec, tmp_path / "cut", *data, progress=False)
    records = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert max(m["epoch"] for m in records) == 2  # the records ran ahead of the checkpoint
    monkeypatch.setattr(executor_mod, "atomic_write", real)
    resumed = train_run(spec, tmp_path / "cut", *data, progress=False)
    assert values(resumed.metrics) == values(full.metrics)


def test_a_done_run_without_its_records_is_an_error_not_done_with_nothing(tmp_path, data):
    run = tmp_path / "run"
    train_run(replace(SPEC, epochs=1), run, *data, progress=False)
    assert json.loads((run / "status.json").read_text())["epochs"] == 1
    for content in (None, "[]"):
        if content is None:
            (run / "metrics.json").unlink()
        else:
            (run / "metrics.json").write_text(content)
        with pytest.raises(executor_mod.RunFileError, match="says the run is done"):
            executor_mod.ended(run)


def test_the_data_fingerprint_leaves_out_spikebench_outputs_and_ends_symlink_loops(tmp_path):
    data = tmp_path / "data"
    (data / "a").mkdir(parents=True)
    (data / "a" / "x.bin").write_bytes(b"123")
    first = fingerprint_tree(data)
    out = data / "out"  # --out inside --data-dir
    (out / "runs" / "r1").mkdir(parents=True)
    (out / OUTPUT_MARKER).write_text("")
    (out / "runs" / "r1" / "metrics.json").write_text("[]")
    assert fingerprint_tree(data) == first
    (data / "a" / "loop").symlink_to(data)  # a loop back to the root
    assert fingerprint_tree(data) == first  # each real folder once
    (data / "a" / "y.bin").write_bytes(b"4")
    assert fingerprint_tree(data) != first  # real data still counts


def test_out_inside_the_data_folder_reuses_its_runs(tmp_path, capsys):
    from tests.datasets.test_events import make_full_layout

    data = tmp_path / "nm"
    make_full_layout(data, per_class=1)
    argv = ["run", "locality-nmnist", "--data-dir", str(data), "--out", str(data / "out"),
            "--epochs", "1", "--steps", "4", "--rules", "bptt", "--archs", "ff",
            "--no-progress"]
    assert main(argv) == 0
    assert (data / "out" / OUTPUT_MARKER).is_file()
    capsys.readouterr()
    assert main(argv) == 0
    runs = list((data / "out" / "runs").iterdir())
    assert len([r for r in runs if r.is_dir()]) == 1  # the same run, not a second one


def test_audio_at_another_rate_is_resampled_or_refused(tmp_path):
    import soundfile as sf

    t = np.arange(int(0.5 * 16000)) / 16000
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    sf.write(tmp_path / "hi.wav", tone, 16000)
    sf.write(tmp_path / "lo.wav", tone[::16], 1000)
    sig, sr, feats = read_features(tmp_path / "hi.wav", 8000, resample_higher=True)
    assert sr == 8000 and len(sig) == 4000 and feats.shape[1] == 39
    # the independent computation: the tone itself at 8 kHz, featurised directly
    direct = 0.3 * np.sin(2 * np.pi * 440 * np.arange(4000) / 8000)
    np.testing.assert_allclose(sig[200:-200], direct[200:-200], atol=2e-3)
    with pytest.raises(CorruptDataError, match="recorded at 1000 Hz"):
        read_features(tmp_path / "lo.wav", 8000, resample_higher=True)
    with pytest.raises(CorruptDataError, match="alignments count samples"):
        read_features(tmp_path / "hi.wav", 8000)  # TIMIT's way: refuse, never resample
    assert len(resample(np.ones(441), 44100, 8000)) == 80


def test_a_cache_entry_that_is_a_folder_is_named_and_a_failed_write_only_warns(
        tmp_path, caplog):
    (tmp_path / "entry.npz").mkdir()
    with pytest.raises(ConfigError, match="is a folder"):
        read_cached_npz(tmp_path / "entry.npz")
    ro = tmp_path / "ro"
    ro.write_text("a file where the cache folder should be")
    atomic_save_npz(ro / "x.npz", a=np.zeros(2))  # cannot be written: goes on
    assert "could not write the cache file" in caplog.text


def test_sigterm_ends_the_command_cleanly_and_the_rerun_resumes(tmp_path):
    out = tmp_path / "out"
    cmd = [str(Path(sys.executable).parent / "spikebench"), "run", "--out", str(out),
           "--epochs", "3", "--rules", "bptt", "--archs", "ff", "--n-train", "512"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = threading.Timer(240, proc.kill)
    deadline.start()
    try:
        for line in proc.stderr:  # plain progress lines (not a terminal): after epoch 1
            if "epoch 1/3" in line:
                proc.send_signal(signal.SIGTERM)
                break
        _, err = proc.communicate(timeout=120)
    finally:
        deadline.cancel()
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM); rerun the same command to resume" in err
    assert "Traceback" not in err
    again = subprocess.run(cmd + ["--no-progress"], capture_output=True, text=True,
                           timeout=240)
    assert again.returncode == 0, again.stderr
    status = json.loads(next((out / "runs").glob("*/status.json")).read_text())
    assert status["status"] == "done" and status["resumed_after"]  # resumed, not restarted


def test_the_plugin_measures_each_cases_peak_memory():
    from spikebench.pytest_plugin import peak_rss_mb

    def allocate(mb):
        def fn():
            block = np.ones(mb * 2**20 // 8)
            return float(block[0])
        return fn

    first = peak_rss_mb(allocate(200))[1]
    second = peak_rss_mb(allocate(200))[1]  # reuses nothing the first one freed
    assert first > 150 and second > 150


def test_a_figure_whose_text_falls_outside_is_caught_and_the_saved_one_keeps_it(tmp_path):
    fig, ax = subplots(figsize=(4, 3))
    for k, rule in enumerate(("bptt", "eprop", "decolle")):
        ax.plot([0, 1], [k, k + 1], label=f"{rule} FF")
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
    cut = texts_outside(fig, tight=False)
    assert {"bptt FF", "eprop FF", "decolle FF"} <= set(cut)  # beside the axes: cut off
    assert texts_outside(fig) == []  # what save_figure keeps
    save_figure(fig, tmp_path / "f.png")
    import matplotlib.image as mpimg

    assert mpimg.imread(tmp_path / "f.png").shape[1] > 4 * 120  # wider than the canvas


def test_the_report_states_the_neuron_in_force_and_the_epochs_that_ran():
    spec = replace(SPEC, neuron_options={"reset": "zero"}, epochs=5)
    text = neuron_in_force(spec)
    assert "reset zero" in text and "surrogate" in text and text.startswith("lif (")
    df = pd.DataFrame({"run_id": [spec.run_id], "metric": ["test_acc"], "epoch": [1],
                       "value": [0.5]})
    assert trained_epochs([spec], df) == "1 of 5"
    df["epoch"] = 5
    assert trained_epochs([spec], df) == "5"


def test_run_help_names_every_registered_neuron():
    run = build_parser()._subparsers._group_actions[0].choices["run"]
    text = next(a.help for a in run._actions if "--neuron" in a.option_strings)
    assert all(name in text for name in NEURONS.names())


def test_check_field_types_guards_every_neuron_parameter():
    for name in NEURONS.names():
        params = NEURONS.get(name).params
        with pytest.raises(ConfigError, match="finite number"):
            params(threshold=float("nan"))
    with pytest.raises(ConfigError, match="finite number"):
        NEURONS.get("lif").params(slope=float("inf"))

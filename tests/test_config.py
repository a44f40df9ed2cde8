"""Experiment files: the same fields as the flags, flags over the file, the resolved
configuration printed and stated in every report, bad files as one-line errors."""

import pandas as pd
import pytest

from spikebench.cli import main


def write(tmp_path, text: str):
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return path


def test_print_config_resolves_file_and_flags_and_reads_back(tmp_path, capsys):
    path = write(tmp_path, 'suite = "fgsm"\nepochs = 2\nseeds = [0, 1]\nrules = "bptt,eprop"\n'
                 'n_train = 100\n[rule-option]\nfeedback = "random"\n')
    assert main(["run", "--config", str(path), "--epochs", "3", "--print-config"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert 'suite = "fgsm"' in lines and "epochs = 3" in lines  # the flag wins
    assert "seeds = [0, 1]" in lines and 'rules = ["bptt", "eprop"]' in lines
    assert "n-train = 100" in lines and '"feedback" = "random"' in lines
    again = write(tmp_path, out)
    assert main(["run", "--config", str(again), "--print-config"]) == 0
    assert capsys.readouterr().out == out
    assert not (tmp_path / "spikebench-runs").exists()  # printing runs nothing


def test_the_suite_on_the_command_line_overrides_the_files(tmp_path, capsys):
    path = write(tmp_path, 'suite = "fgsm"\n')
    assert main(["run", "cka", "--config", str(path), "--print-config"]) == 0
    assert 'suite = "cka"' in capsys.readouterr().out


@pytest.mark.parametrize("text,message", [
    ("epoch = 3\n", "unknown key 'epoch'; known keys: address, archs"),
    ('epochs = "3"\n', "epochs must be an integer, got '3'"),
    ("seeds = [0, 1.5]\n", "seeds must be a list of integers"),
    ("lr = inf\n", "lr must be a finite number"),
    ('executor = "slurm"\n', "executor must be one of in-process, ray"),
    ('rule-option = "feedback=random"\n', "rule-option must be a table"),
    ("epochs = \n", "is not valid TOML"),
    ("epochs = 0\n", "epochs must be >= 1, got 0"),
])
def test_a_bad_file_is_a_one_line_error(tmp_path, capsys, text, message):
    path = write(tmp_path, text)
    assert main(["run", "--config", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spikebench: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_a_missing_file_names_itself(tmp_path, capsys):
    assert main(["run", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml: no such file" in capsys.readouterr().err


def test_every_report_states_its_configuration(tmp_path):
    path = write(tmp_path, f'rules = ["bptt"]\narchs = ["ff"]\nepochs = 1\nn-train = 100\n'
                 f'n-test = 50\nno-progress = true\nout = "{tmp_path / "out"}"\n')
    assert main(["run", "--config", str(path)]) == 0
    config = (tmp_path / "out" / "config.toml").read_text()
    assert 'rules = ["bptt"]' in config and "epochs = 1" in config
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Configuration" in report and config.strip() in report
    df = pd.read_csv(tmp_path / "out" / "results.csv")
    assert set(df["method"]) == {"bptt"} and set(df["model"]) == {"ff"}

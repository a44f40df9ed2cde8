"""The temporal suites end to end on small files in the data sets' own formats: a missing
folder is one line naming where it looked and how to obtain the data; every rule that is
asked for trains, and the report states the binning and the locality frontier."""

import numpy as np

from spikebench.cli import main
from spikebench.suites import SUITES, SuiteOptions
from tests.datasets.test_dvsgesture import EVENTS, write_gestures
from tests.datasets.test_heidelberg import write_h5
from tests.test_bad_input import one_line_error


def test_every_rule_ff_and_rec_with_the_fields_binning():
    for name, steps, dt in (("locality-shd", 100, 10.0), ("locality-ssc", 100, 10.0),
                            ("locality-dvsgesture", 60, 25.0)):
        specs, _ = SUITES.get(name).specs(SuiteOptions())
        assert {s.rule for s in specs} >= {"bptt", "tbptt", "fptt", "ostl", "eprop", "ottt",
                                           "sltt", "decolle", "drtp"}
        assert {s.arch for s in specs} == {"ff", "rec"}
        assert {(s.n_steps, s.dt_ms) for s in specs} == {(steps, dt)}
        assert SUITES.get(name).studies == ("frontier",)


def test_a_missing_folder_is_one_line(tmp_path, capsys):
    code = main(["run", "locality-shd", "--data-dir", str(tmp_path / "nowhere"),
                 "--out", str(tmp_path / "o"), "--no-progress"])
    err = one_line_error(capsys.readouterr().err)
    assert code == 2 and "nowhere" in err and "zenkelab" in err


def test_shd_trains_and_reports(tmp_path, capsys):
    rng = np.random.default_rng(0)
    samples = [(np.sort(rng.uniform(0, 0.3, 200)), rng.integers(0, 700, 200))
               for _ in range(24)]
    write_h5(tmp_path / "shd" / "shd_train.h5", samples, [i % 20 for i in range(24)])
    write_h5(tmp_path / "shd" / "shd_test.h5", samples[:8], [i % 20 for i in range(8)])
    out = tmp_path / "o"
    code = main(["run", "locality-shd", "--data-dir", str(tmp_path / "shd"), "--out", str(out),
                 "--rules", "eprop,sltt", "--archs", "rec", "--epochs", "1", "--steps", "30",
                 "--batch-size", "8", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    report = (out / "report.md").read_text()
    assert "| shd |" in report and "Locality frontier" in report
    assert report.count("| done |") == 2


def test_dvsgesture_trains(tmp_path, capsys):
    write_gestures(tmp_path, "train", {f"user{u:02d}_led": [(c, EVENTS) for c in range(11)]
                                       for u in (1, 2)})
    write_gestures(tmp_path, "test", {"user24_led": [(c, EVENTS) for c in range(11)]})
    out = tmp_path / "o"
    code = main(["run", "locality-dvsgesture", "--data-dir", str(tmp_path), "--out", str(out),
                 "--rules", "bptt", "--archs", "ff", "--epochs", "1", "--steps", "8",
                 "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert "| dvsgesture |" in (out / "report.md").read_text()
